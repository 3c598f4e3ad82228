"""Progress reports and cancellation, shared by every long-running task and training job.

A task is a generator that yields :class:`Progress` and *returns* its result
(``StopIteration.value``). It calls ``cancel.check()`` between steps; the widget runs it in a
napari ``thread_worker`` and the CLI drives it with :func:`run_with_bar`.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from .errors import Cancelled

if TYPE_CHECKING:
    from .io.volume import Volume

T = TypeVar("T")


@dataclass
class Progress:
    """One progress report.

    step/total: steps done and planned (total 0 = unknown). message: short text for a status
    line. preview: optional intermediate result as a Volume (same geometry as the final result)
    the GUI may show. metrics: optional numbers (e.g. losses) for plots.
    """

    step: int
    total: int
    message: str = ""
    preview: Volume | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0


class CancelToken:
    """Thread-safe cancellation flag: the GUI sets it, the task checks it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


Task = Generator[Progress, None, T]


def run_to_completion(task: Task[T]) -> T:
    """Drive a task generator silently and return its result."""
    while True:
        try:
            next(task)
        except StopIteration as stop:
            return stop.value


def collect(task: Task[T]) -> tuple[list[Progress], T]:
    """Drive a task generator silently; return every Progress it yielded, in order, and its result."""
    seen: list[Progress] = []
    while True:
        try:
            seen.append(next(task))
        except StopIteration as stop:
            return seen, stop.value


def run_with_bar(task: Task[T], desc: str = "", disable: bool = False) -> T:
    """Drive a task generator with a tqdm text progress bar (the CLI's face) and return its result."""
    from tqdm import tqdm

    with tqdm(desc=desc, disable=disable, dynamic_ncols=True) as bar:
        while True:
            try:
                p = next(task)
            except StopIteration as stop:
                return stop.value
            if p.total and bar.total != p.total:
                bar.total = p.total
            bar.n = p.step
            post = p.message
            if p.metrics:
                post += " " + " ".join(f"{k}={v:.4g}" for k, v in p.metrics.items())
            bar.set_postfix_str(post.strip(), refresh=False)
            bar.refresh()
