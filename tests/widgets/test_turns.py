"""next_turn runs its callback after the timers that were already due (a 0 ms timer would not)."""

from __future__ import annotations

import time

import pytest
from qtpy.QtCore import QTimer

from napari_medgen.widgets.turns import next_turn

pytestmark = pytest.mark.gui


def test_next_turn_lets_an_overdue_timer_run_first(qtbot):
    order: list[str] = []
    overdue = QTimer()
    overdue.setSingleShot(True)
    overdue.timeout.connect(lambda: order.append("overdue timer"))

    def long_callback() -> None:
        overdue.start(5)
        time.sleep(0.05)  # a 50 ms Qt-thread job: the 5 ms timer is overdue when it returns
        next_turn(lambda: order.append("next turn"))

    QTimer.singleShot(0, long_callback)
    qtbot.waitUntil(lambda: len(order) == 2, timeout=2000)
    assert order == ["overdue timer", "next turn"]
