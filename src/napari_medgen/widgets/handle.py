"""A running background task as the widgets see it: its name, state, last report and Cancel."""

from __future__ import annotations

from typing import Any

from napari.utils import progress as napari_progress

from ..progress import CancelToken, Progress

DONE, CANCELLED, FAILED = "done", "cancelled", "error"


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
