"""Run any task generator in the background of napari: the one place widgets start long work.

A task is ``make_task(cancel) -> Generator[Progress, None, result]`` (see :mod:`..progress`).
:func:`run_task` starts a :class:`TaskRun`, which drives it in a napari ``thread_worker`` so the viewer never blocks: every
yielded :class:`Progress` moves a bar in napari's activity dock (and an optional
:class:`~.common.ProgressPanel`), previews and the result are handed to callbacks on the Qt
thread, and errors become napari notifications (and the panel's status line) instead of
tracebacks; layers that ``prepare`` made for a result that never came are removed. ``handle.cancel()`` sets
the task's :class:`CancelToken`, so the task stops at its next ``cancel.check()`` (within one step).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Generator
from functools import partial
from typing import TYPE_CHECKING, Any

from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from ..device import lower_thread_priority, restore_thread_priority
from ..errors import Cancelled, MedgenError
from ..io.volume import Volume
from ..progress import CancelToken, Progress
from . import collector
from .handle import CANCELLED, DONE, FAILED, TaskHandle
from .turns import next_turn

if TYPE_CHECKING:
    from .common import ProgressPanel

log = logging.getLogger(__name__)

# runs, kept alive until they finish (Qt connections hold no strong references)
_RUNNING: set[TaskRun] = set()

# Each redraw costs the Qt thread 10-100 ms under load (software GL, workers busy), so the
# progress bar is redrawn at most every PROGRESS_INTERVAL_S and a preview drawn at most every
# PREVIEW_INTERVAL_S (the newest one; the last one is always drawn before the result).
PROGRESS_INTERVAL_S = 0.1
PREVIEW_INTERVAL_S = 0.3
# Worker threads run this much below normal OS priority: when jobs and the viewer compete for
# the cores, the viewer wins; when the viewer is idle, the jobs get all of it.
WORKER_NICE = 10
def run_task(
    viewer: Any,
    make_task: Callable[[CancelToken], Generator[Progress, None, Any]],
    *,
    name: str,
    on_result: Callable[[Any], None],
    on_preview: Callable[[Volume], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_finished: Callable[[str], None] | None = None,
    panel: ProgressPanel | None = None,
    prepare: Callable[[], None] | None = None,
) -> TaskHandle:
    """Start ``make_task(token)`` in a worker thread and return its :class:`TaskHandle`.

    viewer: the napari viewer the task belongs to (its status bar gets the final status; may be
    None: progress and notifications are global). name: shown on the progress bar and in
    messages. on_result(result): called on the Qt thread with the generator's return value (also
    when the task itself returns after a cancel).
    on_preview(volume): called with ``Progress.preview`` when it is not None, at most once per
    PREVIEW_INTERVAL_S with the newest preview (older ones are skipped, so slow drawing never lags
    behind); the last one is drawn before on_result. on_progress(p):
    every Progress, in order. on_finished(status): once at the end, with "done", "cancelled" or
    "error"; ``handle.status`` is set after it.
    panel: a ProgressPanel to drive (its Cancel button cancels this task).
    prepare(): called on the Qt thread just before the worker starts, e.g. to make the output layer
    while the CPU is still free; the layers it adds are removed again when the task fails, or
    stops without a result before any preview reached them.
    From ``prepare`` to the end, the task holds the cyclic garbage collector (:mod:`.collector`), so
    no full collection of the whole heap pauses the viewer while it runs.
    """
    return TaskRun(viewer, make_task, name, on_result, on_preview, on_progress, on_finished, panel).start(prepare)


class TaskRun:
    """One task driven in a napari worker: each method handles one signal of the worker or one
    piece of what the viewer shows (see :func:`run_task` for the arguments)."""

    def __init__(self, viewer: Any, make_task: Callable[[CancelToken], Generator[Progress, None, Any]], name: str,
                 on_result: Callable[[Any], None] | None, on_preview: Callable[[Volume], None] | None,
                 on_progress: Callable[[Progress], None] | None, on_finished: Callable[[str], None] | None,
                 panel: ProgressPanel | None) -> None:
        self.viewer = viewer
        self.make_task = make_task
        self.name = name
        self.on_result = on_result
        self.on_preview = on_preview
        self.on_progress = on_progress
        self.on_finished = on_finished
        self.panel = panel
        self.handle = TaskHandle(name)
        self.progress_shown_at = -math.inf  # monotonic time the bar/panel was last drawn
        self.preview_shown_at = -math.inf  # ... and a preview
        self.pending: list[Volume] = []  # a preview held back by PREVIEW_INTERVAL_S
        self.previewed = False
        self.made_layers: list[str] = []  # what prepare() added to the viewer
        # Callbacks may let Qt process events (napari does when layers change), which would deliver the
        # next signal inside the current callback, out of order. So signals are queued and handled one
        # at a time, in order; a preview already superseded by a newer queued one is skipped.
        self.queue: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self.busy = False

    def start(self, prepare: Callable[[], None] | None = None) -> TaskHandle:
        """Run ``prepare`` and start the worker; the collector is held from here to :meth:`finished`."""
        collector.hold(self.viewer)
        try:  # until the worker runs, a failure must give the hold back (nothing else would)
            self.prepare(prepare)
            worker = create_worker(self.drive, _start_thread=False, _ignore_errors=True)
            for signal, slot in ((worker.yielded, self.yielded), (worker.returned, self.returned),
                                 (worker.errored, self.errored), (worker.aborted, self.aborted),
                                 (worker.finished, self.finished)):
                signal.connect(partial(self.dispatch, slot))
        except BaseException:
            collector.release()
            raise
        self.handle.worker = worker
        _RUNNING.add(self)
        if self.panel is not None:
            self.panel.attach(self.handle)
            self.panel.destroyed.connect(self.owner_closed)
        next_turn(self.make_bar)
        worker.start()
        return self.handle

    def prepare(self, prepare: Callable[[], None] | None) -> None:
        """Call ``prepare`` and note the layers it added."""
        if prepare is None:
            return
        before = set() if self.viewer is None else {layer.name for layer in self.viewer.layers}
        prepare()
        if self.viewer is not None:
            self.made_layers = [layer.name for layer in self.viewer.layers if layer.name not in before]

    def drive(self) -> Generator[Progress, None, Any]:
        """The worker thread's generator: the task, at lowered OS priority."""
        old = lower_thread_priority(WORKER_NICE)
        try:
            return (yield from self.make_task(self.handle.token))
        finally:
            restore_thread_priority(old)

    def owner_closed(self) -> None:
        """The dock that started the task was closed: cancel the task (a training saves a checkpoint) and
        call none of the dock's callbacks again (its widgets are gone)."""
        self.panel = None
        self.on_result = self.on_preview = self.on_progress = self.on_finished = None
        self.handle.cancel()

    def dispatch(self, fn: Callable[..., None], *args: Any) -> None:
        """Handle worker signals one at a time, in order; draw a yielded preview unless a newer one waits."""
        self.queue.append((fn, args))
        if self.busy:
            return
        self.busy = True
        try:
            while self.queue:
                fn, args = self.queue.popleft()
                fn(*args)
                if fn == self.yielded and self.on_preview is not None and args[0].preview is not None:
                    newer = any(f == self.yielded and a[0].preview is not None for f, a in self.queue)
                    if not newer:
                        self.preview(args[0].preview)
        finally:
            self.busy = False

    def yielded(self, p: Progress) -> None:
        self.handle.last = p
        if self.on_progress is not None:
            self.on_progress(p)
        if time.monotonic() - self.progress_shown_at >= PROGRESS_INTERVAL_S or p.total and p.step >= p.total:
            self.progress_shown_at = time.monotonic()
            self.show_progress(p)

    def show_progress(self, p: Progress) -> None:
        """Move the activity-dock bar and the panel to ``p``."""
        bar = self.handle._bar
        if bar is not None:
            if p.total and bar.total != p.total:
                bar.total = p.total
            bar.n = p.step
            bar.update(0)
            if p.message:
                bar.set_description(f"{self.name}: {p.message}")
        if self.panel is not None:
            self.panel.show_progress(p)

    def preview(self, volume: Volume) -> None:
        """Draw ``volume`` now, or hold it until PREVIEW_INTERVAL_S has passed since the last one."""
        wait = self.preview_shown_at + PREVIEW_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self.pending.clear()
            self.preview_shown_at = time.monotonic()
            self.draw_preview(volume)
            return
        if not self.pending:
            QTimer.singleShot(int(1000 * wait) + 1, self.flush_preview)
        self.pending[:] = [volume]

    def flush_preview(self) -> None:
        if self.pending and self.handle._outcome is None:
            self.dispatch(self.preview, self.pending.pop())

    def draw_preview(self, volume: Volume) -> None:
        self.previewed = True
        if self.on_preview is not None:
            self.on_preview(volume)

    def returned(self, result: Any) -> None:
        self.handle._outcome = CANCELLED if self.handle.token.cancelled else DONE
        if self.pending and self.on_preview is not None:
            self.draw_preview(self.pending.pop())
        if self.on_result is not None:
            self.on_result(result)

    def errored(self, exc: BaseException) -> None:
        self.handle.error = exc
        if isinstance(exc, Cancelled):
            self.handle._outcome = CANCELLED
            show_info(f"{self.name}: cancelled")
        elif isinstance(exc, MedgenError):
            self.handle._outcome = FAILED
            show_error(f"{self.name}: {exc.headline()}")
        else:
            self.handle._outcome = FAILED
            log.error("%s failed", self.name, exc_info=(type(exc), exc, exc.__traceback__))
            show_error(f"{self.name} failed unexpectedly ({type(exc).__name__}: {exc}); details are in the log.")
        if self.handle._outcome == FAILED or not self.previewed:
            self.remove_made_layers()

    def aborted(self) -> None:  # napari's own activity-dock cancel calls worker.quit()
        self.handle._outcome = CANCELLED

    def finished(self) -> None:
        handle = self.handle
        status = handle._outcome or (CANCELLED if handle.token.cancelled else DONE)
        handle._close_bar()
        _RUNNING.discard(self)
        collector.release()
        if self.panel is not None:
            self.panel.finish(status, self.detail(status))
        if self.viewer is not None:
            self.viewer.status = f"{self.name}: {status}"
        if self.on_finished is not None:
            self.on_finished(status)
        handle.status = status

    def detail(self, status: str) -> str:
        """What the panel says after the status: the error's headline, when the task failed."""
        exc = self.handle.error
        if status != FAILED or exc is None:
            return ""
        return exc.headline() if isinstance(exc, MedgenError) else f"unexpected {type(exc).__name__}: {exc}"

    def remove_made_layers(self) -> None:
        """Remove the layers ``prepare`` made for a result that will not come."""
        for name in self.made_layers:
            if self.viewer is not None and name in self.viewer.layers:
                self.viewer.layers.remove(name)

    def make_bar(self) -> None:
        """napari's activity-dock bar: built in its own event-loop turn (a new bar widget costs tens of ms
        on a slow machine), after the click that started the task has returned; not at all if it ended."""
        handle = self.handle
        if handle.status is not None or handle._outcome is not None:
            return
        bar = napari_progress(total=0, desc=self.name)  # may process events: the task can end meanwhile
        if handle.status is not None or handle._outcome is not None:
            bar.close()
            return
        handle._bar = bar
        if handle.last is not None:
            self.show_progress(handle.last)
