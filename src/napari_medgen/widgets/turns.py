"""Run a piece of Qt-thread work in a later event-loop turn, after what is already waiting.

Splitting a long Qt-thread job into turns only keeps the viewer responsive if the event loop
handles what is waiting (input, repaints, due timers) between the turns. A 0 ms timer does not
allow that for timers: Qt runs it before the timers that were already due, so the two turns add up
to one stall (measured: a 150 ms callback that starts a 0 ms timer of 100 ms stalled a 10 ms
heartbeat timer for 250 ms; with a 1 ms timer, for 150 ms and then 100 ms).
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QTimer

NEXT_TURN_MS = 1


def next_turn(fn: Callable[[], object]) -> None:
    """Call ``fn()`` on the Qt thread in a later event-loop turn, after the events already waiting."""
    QTimer.singleShot(NEXT_TURN_MS, fn)
