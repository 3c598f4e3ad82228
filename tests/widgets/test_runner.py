"""run_task: results, previews, cancel within one step, errors as notifications (napari under Xvfb)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_medgen.errors import ReadError
from napari_medgen.io.volume import Volume
from napari_medgen.progress import CancelToken, Progress
from napari_medgen.widgets.common import ProgressPanel
from napari_medgen.widgets.runner import run_task

pytestmark = pytest.mark.gui


def counting_task(n: int, delay: float = 0.0, steps_done: list[int] | None = None):
    """make_task for a task of n steps, each yielding a (4, 8, 8) preview; returns the sum of steps."""

    def make(cancel: CancelToken):
        total = 0
        for i in range(1, n + 1):
            cancel.check()
            time.sleep(delay)
            total += i
            if steps_done is not None:
                steps_done.append(i)
            preview = Volume(np.full((4, 8, 8), i, np.float32), spacing=(2.0, 2.0, 3.0))
            yield Progress(i, n, f"step {i}", preview=preview)
        return total

    return make


def test_fifty_steps_with_previews_deliver_result(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    results, previews, steps = [], [], []
    panel = ProgressPanel()
    qtbot.addWidget(panel)
    handle = run_task(viewer, counting_task(50), name="count", on_result=results.append,
                      on_preview=previews.append, on_progress=lambda p: steps.append(p.step), panel=panel)
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    assert handle.status == "done"
    assert results == [sum(range(1, 51))]
    assert steps == list(range(1, 51))
    firsts = [float(p.data[0, 0, 0]) for p in previews]
    assert firsts == sorted(set(firsts)) and firsts[-1] == 50  # in order, none stale, the last one shown
    assert panel.bar.value() == panel.bar.maximum() == 1
    assert "done" in panel.status.text()
    assert not panel.cancel_button.isEnabled()


def test_cancel_stops_within_one_step(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    done: list[int] = []
    results: list = []
    finished: list[str] = []
    panel = ProgressPanel()
    qtbot.addWidget(panel)
    handle = run_task(viewer, counting_task(1000, delay=0.01, steps_done=done), name="slow",
                      on_result=results.append, on_finished=finished.append, panel=panel)
    qtbot.waitUntil(lambda: len(done) >= 5, timeout=10000)
    assert panel.cancel_button.isEnabled()
    panel.cancel_button.click()
    at_cancel = len(done)
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    assert handle.status == "cancelled" and finished == ["cancelled"]
    assert results == []  # the task raised Cancelled, so no result
    assert len(done) <= at_cancel + 1
    assert "cancelled" in panel.status.text()


def test_activity_bar_is_built_after_the_starting_call_returns_and_closed_at_the_end(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    done: list[int] = []
    handle = run_task(viewer, counting_task(40, delay=0.02, steps_done=done), name="bar", on_result=lambda r: None)
    assert handle._bar is None  # not in the click's own event-loop turn
    qtbot.waitUntil(lambda: handle._bar is not None and handle._bar.n > 0, timeout=10000)
    assert handle._bar.total == 40
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    assert handle._bar is None and handle.status == "done"
    quick = run_task(viewer, counting_task(1), name="quick", on_result=lambda r: None)
    qtbot.waitUntil(lambda: not quick.running, timeout=10000)
    qtbot.wait(50)
    assert quick._bar is None  # ended before its bar was due: none is left behind


def test_read_error_becomes_notification_and_viewer_survives(make_napari_viewer, qtbot):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    viewer = make_napari_viewer()
    before = len(notification_manager.records)

    def failing(cancel: CancelToken):
        yield Progress(0, 2, "opening")
        raise ReadError("/data/broken.nii.gz", "the file is truncated")

    handle = run_task(viewer, failing, name="open", on_result=lambda r: None)
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    assert handle.status == "error" and isinstance(handle.error, ReadError)
    shown = [n for n in notification_manager.records[before:] if n.severity == NotificationSeverity.ERROR]
    assert len(shown) == 1
    assert "broken.nii.gz" in shown[0].message and "truncated" in shown[0].message
    assert shown[0].message.startswith("open: The file is truncated")  # what is wrong first, then the file
    assert "Traceback" not in shown[0].message
    layer = viewer.add_image(np.zeros((3, 3)))  # the viewer still works
    assert layer in viewer.layers


def test_failure_removes_the_layer_prepare_made_and_the_panel_says_why(make_napari_viewer, qtbot):
    from napari_medgen.widgets.common import add_volume

    viewer = make_napari_viewer()
    viewer.add_image(np.ones((3, 3)), name="scan")
    panel = ProgressPanel()
    qtbot.addWidget(panel)

    def failing(cancel: CancelToken):
        yield Progress(0, 2, "sampling")
        raise ReadError("/data/mask.nii.gz", "the mask is empty")

    handle = run_task(viewer, failing, name="sample", on_result=lambda r: None, panel=panel,
                      prepare=lambda: add_volume(viewer, Volume(np.zeros((2, 4, 4), np.float32)), "output"))
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    assert handle.status == "error"
    assert [layer.name for layer in viewer.layers] == ["scan"]  # no empty placeholder is left
    assert panel.status.text().startswith("sample: error: The mask is empty")


def test_a_result_keeps_the_layer_prepare_made(make_napari_viewer, qtbot):
    from napari_medgen.widgets.common import add_volume

    viewer = make_napari_viewer()
    handle = run_task(viewer, counting_task(3), name="count", on_result=lambda r: None,
                      prepare=lambda: add_volume(viewer, Volume(np.zeros((2, 4, 4), np.float32)), "output"))
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    assert handle.status == "done" and [layer.name for layer in viewer.layers] == ["output"]


def test_unexpected_error_is_reported_briefly(make_napari_viewer, qtbot, monkeypatch, caplog):
    import napari_medgen.widgets.runner as runner

    shown: list[str] = []
    monkeypatch.setattr(runner, "show_error", shown.append)
    viewer = make_napari_viewer()

    def buggy(cancel: CancelToken):
        yield Progress(0, 1)
        raise ZeroDivisionError("oops")

    handle = run_task(viewer, buggy, name="buggy", on_result=lambda r: None)
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    assert handle.status == "error"
    assert len(shown) == 1 and "ZeroDivisionError" in shown[0]
    assert any(r.exc_info for r in caplog.records if "buggy" in r.getMessage())


def test_preview_updates_a_layer(make_napari_viewer, qtbot):
    from napari_medgen.widgets.common import add_volume

    viewer = make_napari_viewer()
    seen: list[float] = []

    def show(preview: Volume) -> None:
        layer = add_volume(viewer, preview, "preview")
        seen.append(float(layer.data.max()))

    handle = run_task(viewer, counting_task(5), name="preview", on_result=lambda r: None, on_preview=show)
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    assert seen == sorted(set(seen)) and seen[-1] == 5.0  # previews shown in order, never a stale one last
    assert [layer.name for layer in viewer.layers] == ["preview"]
    assert float(viewer.layers["preview"].data.max()) == 5.0
    assert tuple(viewer.layers["preview"].scale) == (3.0, 2.0, 2.0)


def test_previews_are_rate_limited_and_the_last_one_is_drawn(make_napari_viewer, qtbot):
    """Previews arriving faster than PREVIEW_INTERVAL_S: the newest is drawn at most once per
    interval, and the final one is drawn before the result."""
    from napari_medgen.widgets import runner

    viewer = make_napari_viewer()
    drawn: list[tuple[float, float]] = []
    events: list[str] = []
    handle = run_task(viewer, counting_task(40, delay=0.02), name="fast previews",
                      on_result=lambda r: events.append("result"),
                      on_preview=lambda p: (drawn.append((time.monotonic(), float(p.data[0, 0, 0]))), events.append("p")))
    qtbot.waitUntil(lambda: not handle.running, timeout=20000)
    times = [t for t, _ in drawn[:-1]]  # the last one is drawn with the result, whenever that comes
    assert 3 <= len(drawn) < 40  # 40 previews over ~0.8 s: most are skipped
    assert min(b - a for a, b in zip(times, times[1:])) >= runner.PREVIEW_INTERVAL_S - 0.02
    assert drawn[-1][1] == 40 and events[-2:] == ["p", "result"]


def test_worker_thread_runs_below_normal_priority(make_napari_viewer, qtbot):
    import os
    import sys
    import threading

    from napari_medgen.widgets import runner

    if not sys.platform.startswith("linux"):
        pytest.skip("per-thread nice is Linux-only")
    viewer = make_napari_viewer()
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[int] = []

    def task(cancel: CancelToken):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        yield Progress(1, 1)
        return None

    handle = run_task(viewer, task, name="nice", on_result=lambda r: None)
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    assert seen == [min(19, base + runner.WORKER_NICE)]


def test_closing_the_dock_cancels_its_task_and_calls_none_of_its_callbacks(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    panel = ProgressPanel()
    called: list[str] = []
    handle = run_task(viewer, counting_task(10_000, delay=0.01), name="count",
                      on_result=lambda r: called.append("result"), on_preview=lambda v: called.append("preview"),
                      on_finished=lambda s: called.append("finished"), panel=panel)
    qtbot.waitUntil(lambda: handle.last is not None, timeout=10000)
    called.clear()
    panel.deleteLater()
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    assert handle.status == "cancelled"
    assert called == []
