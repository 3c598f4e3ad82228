"""collector: no full garbage collection of the whole heap while jobs run or after; removed layers still freed."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from napari_medgen.progress import Progress
from napari_medgen.widgets import collector
from napari_medgen.widgets.runner import run_task

pytestmark = pytest.mark.gui


def test_objects_stay_set_aside_after_the_job_and_the_next_job_collects_the_new_garbage():
    assert not collector.held() and not collector.set_aside()
    collector.hold()
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # the objects that existed are set aside
    collector.hold()
    collector.release()
    assert collector.held() and gc.get_freeze_count() == frozen
    collector.release()
    # the job ended: still set aside, so CPython's next full collection walks only the new objects
    assert not collector.held() and collector.set_aside() and gc.get_freeze_count() == frozen
    with pytest.raises(RuntimeError):
        collector.release()
    cycle = {"data": np.zeros(1000, np.float32)}
    cycle["self"] = cycle
    alive = weakref.ref(cycle["data"])
    del cycle  # garbage made between two jobs, in a reference cycle
    collector.hold()  # the next job collects it before setting the rest aside
    try:
        assert alive() is None
    finally:
        collector.release()
    collector.give_back()
    assert not collector.set_aside() and gc.get_freeze_count() == 0


def test_give_back_while_held_is_refused():
    collector.hold()
    try:
        with pytest.raises(RuntimeError):
            collector.give_back()
    finally:
        collector.release()


@pytest.mark.parametrize("during_job", [True, False])
def test_a_removed_layer_is_freed_at_once(make_napari_viewer, qtbot, during_job):
    """During a job and after it: the layer was set aside when the job started."""
    viewer = make_napari_viewer()
    data = np.zeros((4, 32, 32), np.float32)
    alive = weakref.ref(data)
    viewer.add_image(data, name="scan")
    del data
    collector.hold(viewer)
    if not during_job:
        collector.release()
    try:
        viewer.layers.remove("scan")
        qtbot.waitUntil(lambda: alive() is None, timeout=2000)  # napari layers live in reference cycles
        assert gc.get_freeze_count() > 0  # and the rest is set aside again afterwards
    finally:
        if during_job:
            collector.release()


def test_run_task_holds_the_collector_from_prepare_to_the_end(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    seen: dict[str, bool] = {}

    def task(cancel):
        seen["in task"] = collector.held()
        yield Progress(1, 1)
        return 1

    handle = run_task(viewer, task, name="held", on_result=lambda r: None,
                      prepare=lambda: seen.setdefault("in prepare", collector.held()))
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    assert seen == {"in prepare": True, "in task": True}
    assert not collector.held() and collector.set_aside()


def test_a_failing_prepare_releases_the_collector_and_starts_nothing(make_napari_viewer):
    viewer = make_napari_viewer()
    started: list[bool] = []

    def task(cancel):
        started.append(True)
        yield Progress(1, 1)

    def prepare():
        raise OSError("no room for the output layer")

    with pytest.raises(OSError):
        run_task(viewer, task, name="never", on_result=lambda r: None, prepare=prepare)
    assert not collector.held() and not started


def test_a_worker_that_cannot_be_made_releases_the_collector(make_napari_viewer, monkeypatch):
    from napari_medgen.widgets import runner

    viewer = make_napari_viewer()

    def no_worker(*args, **kwargs):
        raise RuntimeError("no thread for the worker")

    monkeypatch.setattr(runner, "create_worker", no_worker)
    with pytest.raises(RuntimeError):
        run_task(viewer, lambda cancel: iter(()), name="never", on_result=lambda r: None)
    assert not collector.held()
