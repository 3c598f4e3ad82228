"""Run any task generator in the background of napari: the one place widgets start long work.

A task is ``make_task(cancel) -> Generator[Progress, None, result]`` (see :mod:`..progress`).
:func:`run_task` drives it in a napari ``thread_worker`` so the viewer never blocks: every
yielded :class:`Progress` moves a bar in napari's activity dock (and an optional
:class:`~.common.ProgressPanel`), previews and the result are handed to callbacks on the Qt
thread, and errors become napari notifications instead of tracebacks. ``handle.cancel()`` sets
the task's :class:`CancelToken`, so the task stops at its next ``cancel.check()`` (within one step).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from functools import partial
from typing import TYPE_CHECKING, Any

from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from ..errors import Cancelled, MedgenError
from ..progress import CancelToken, Progress
from . import collector
from .turns import next_turn

if TYPE_CHECKING:
    from .common import ProgressPanel

log = logging.getLogger(__name__)

# handles of running tasks, kept alive until they finish (Qt connections hold no strong references)
_RUNNING: set[TaskHandle] = set()

DONE, CANCELLED, FAILED = "done", "cancelled", "error"
# Each redraw costs the Qt thread 10-100 ms under load (software GL, workers busy), so the
# progress bar is redrawn at most every PROGRESS_INTERVAL_S and a preview drawn at most every
# PREVIEW_INTERVAL_S (the newest one; the last one is always drawn before the result).
PROGRESS_INTERVAL_S = 0.1
PREVIEW_INTERVAL_S = 0.3
# Worker threads run this much below normal OS priority: when jobs and the viewer compete for
# the cores, the viewer wins; when the viewer is idle, the jobs get all of it.
WORKER_NICE = 10


class TaskHandle:
    """A running task: ``cancel()`` asks it to stop; ``status`` is None while it runs, then
    "done", "cancelled" or "error"; ``last`` is the last Progress seen; ``error`` the exception."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.token = CancelToken()
        self.status: str | None = None
        self.last: Progress | None = None
        self.error: BaseException | None = None
        self.worker: Any = None
        self._outcome: str | None = None  # known before the end-of-task callbacks have run
        self._bar: napari_progress | None = None

    @property
    def running(self) -> bool:
        return self.status is None

    def cancel(self) -> None:
        """Request cancellation; the task stops at its next ``cancel.check()``."""
        self.token.cancel()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _lower_priority() -> int | None:
    """Lower the calling worker thread's OS priority by WORKER_NICE (Linux, where nice is per
    thread), so the Qt thread gets a core first; returns the previous nice value (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    try:
        old = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, old + WORKER_NICE))
    except OSError:
        return None
    return old


def _restore_priority(old: int | None) -> None:
    """Give the pooled thread back its nice value; unprivileged users may not raise priority again,
    in which case the thread stays lowered until Qt retires it (30 s idle)."""
    if old is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), old)
        except OSError:
            pass


def run_task(
    viewer: Any,
    make_task: Callable[[CancelToken], Generator[Progress, None, Any]],
    *,
    name: str,
    on_result: Callable[[Any], None],
    on_preview: Callable[[Any], None] | None = None,
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
    on_preview(preview): called with ``Progress.preview`` when it is not None, at most once per
    PREVIEW_INTERVAL_S with the newest preview (older ones are skipped, so slow drawing never lags
    behind); the last one is drawn before on_result. on_progress(p):
    every Progress, in order. on_finished(status): once at the end, with "done", "cancelled" or
    "error"; ``handle.status`` is set after it.
    panel: a ProgressPanel to drive (its Cancel button cancels this task).
    prepare(): called on the Qt thread just before the worker starts, e.g. to make the output layer
    while the CPU is still free.
    From ``prepare`` to the end, the task holds the cyclic garbage collector (:mod:`.collector`), so
    no full collection of the whole heap pauses the viewer while it runs.
    """
    handle = TaskHandle(name)

    def drive() -> Generator[Progress, None, Any]:
        old = _lower_priority()
        try:
            return (yield from make_task(handle.token))
        finally:
            _restore_priority(old)

    shown_at = [-math.inf, -math.inf]  # monotonic time the bar/panel, and a preview, were last drawn
    pending: list[Any] = []  # a preview held back by PREVIEW_INTERVAL_S

    def yielded(p: Progress) -> None:
        handle.last = p
        if on_progress is not None:
            on_progress(p)
        if time.monotonic() - shown_at[0] >= PROGRESS_INTERVAL_S or p.total and p.step >= p.total:
            shown_at[0] = time.monotonic()
            show_progress(p)

    def show_progress(p: Progress) -> None:
        bar = handle._bar
        if bar is not None:
            if p.total and bar.total != p.total:
                bar.total = p.total
            bar.n = p.step
            bar.update(0)
            if p.message:
                bar.set_description(f"{name}: {p.message}")
        if panel is not None:
            panel.show_progress(p)

    def preview(image: Any) -> None:
        """Draw ``image`` now, or hold it until PREVIEW_INTERVAL_S has passed since the last one."""
        wait = shown_at[1] + PREVIEW_INTERVAL_S - time.monotonic()
        if wait <= 0:
            pending.clear()
            shown_at[1] = time.monotonic()
            on_preview(image)
            return
        if not pending:
            QTimer.singleShot(int(1000 * wait) + 1, flush_preview)
        pending[:] = [image]

    def flush_preview() -> None:
        if pending and handle._outcome is None:
            dispatch(preview, pending.pop())

    def returned(result: Any) -> None:
        handle._outcome = CANCELLED if handle.token.cancelled else DONE
        if pending and on_preview is not None:
            on_preview(pending.pop())
        on_result(result)

    def errored(exc: BaseException) -> None:
        handle.error = exc
        if isinstance(exc, Cancelled):
            handle._outcome = CANCELLED
            show_info(f"{name}: cancelled")
        elif isinstance(exc, MedgenError):
            handle._outcome = FAILED
            show_error(f"{name}: {exc}")
        else:
            handle._outcome = FAILED
            log.error("%s failed", name, exc_info=(type(exc), exc, exc.__traceback__))
            show_error(f"{name} failed unexpectedly ({type(exc).__name__}: {exc}); details are in the log.")

    def aborted() -> None:  # napari's own activity-dock cancel calls worker.quit()
        handle._outcome = CANCELLED

    def finished() -> None:
        status = handle._outcome or (CANCELLED if handle.token.cancelled else DONE)
        handle._close_bar()
        _RUNNING.discard(handle)
        collector.release()
        if panel is not None:
            panel.finish(status)
        if viewer is not None:
            viewer.status = f"{name}: {status}"
        if on_finished is not None:
            on_finished(status)
        handle.status = status

    # Callbacks may let Qt process events (napari does when layers change), which would deliver the
    # next signal inside the current callback, out of order. So signals are queued and handled one
    # at a time, in order; a preview already superseded by a newer queued one is skipped.
    queue: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
    busy = [False]

    def dispatch(fn: Callable[..., None], *args: Any) -> None:
        queue.append((fn, args))
        if busy[0]:
            return
        busy[0] = True
        try:
            while queue:
                fn, args = queue.popleft()
                fn(*args)
                if fn is yielded and on_preview is not None and args[0].preview is not None:
                    newer = any(f is yielded and a[0].preview is not None for f, a in queue)
                    if not newer:
                        preview(args[0].preview)
        finally:
            busy[0] = False

    def make_bar() -> None:
        """napari's activity-dock bar: built in its own event-loop turn (a new bar widget costs tens of ms
        on a slow machine), after the click that started the task has returned; not at all if it ended."""
        if handle.status is not None or handle._outcome is not None:
            return
        bar = napari_progress(total=0, desc=name)  # may process events: the task can end meanwhile
        if handle.status is not None or handle._outcome is not None:
            bar.close()
            return
        handle._bar = bar
        if handle.last is not None:
            show_progress(handle.last)

    collector.hold(viewer)
    try:  # until the worker runs, a failure must give the hold back (nothing else would)
        if prepare is not None:
            prepare()
        worker = create_worker(drive, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(partial(dispatch, yielded))
        worker.returned.connect(partial(dispatch, returned))
        worker.errored.connect(partial(dispatch, errored))
        worker.aborted.connect(partial(dispatch, aborted))
        worker.finished.connect(partial(dispatch, finished))
    except BaseException:
        collector.release()
        raise
    handle.worker = worker
    _RUNNING.add(handle)
    if panel is not None:
        panel.attach(handle)
    next_turn(make_bar)
    worker.start()
    return handle
