"""The first view of a viewer the demo filled: one image with its labels over it, the whole slice in
view, and the Synthesize dock in front with that label map and the model made for it."""

from __future__ import annotations

from typing import Any

from napari.layers import Image, Labels
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QTabBar

FRONT_DOCK = "Synthesize"


def show_first_view(viewer: Any, focus: str = "phantom", model: str = "spade_phantom") -> None:
    """Arrange ``viewer``: labels layers above every image; only the layers named ``focus...``
    visible (the others stay in the list, hidden); the focus labels selected; the Synthesize dock
    raised with them and ``model``; dock tab titles shown in full; the camera fitted to the data
    (again once the window has its size)."""
    for layer in [lyr for lyr in viewer.layers if isinstance(lyr, Labels)]:
        viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))
    for layer in viewer.layers:
        layer.visible = layer.name.startswith(focus)
    labels = next((lyr for lyr in viewer.layers if isinstance(lyr, Labels) and lyr.visible), None)
    if labels is not None:
        viewer.layers.selection.active = labels
    widget = front_dock(viewer)
    if widget is not None and labels is not None:
        widget.labels_combo.setCurrentText(labels.name)
        if widget.model_combo.findText(model) >= 0:
            widget.model_combo.setCurrentText(model)
    _untruncate_tabs(viewer)
    _fit(viewer)
    QTimer.singleShot(0, lambda: _fit(viewer))  # after the window is laid out


def front_dock(viewer: Any) -> Any:
    """The Synthesize dock's widget, raised in front of its tabbed siblings (None if not docked)."""
    for dock in viewer.window._qt_window.findChildren(QDockWidget):
        if dock.windowTitle().split(" (")[0] == FRONT_DOCK or dock.objectName() == FRONT_DOCK:
            dock.show()
            dock.raise_()
            inner = dock.widget()
            from .synthesize import SynthesizeWidget

            found = inner if isinstance(inner, SynthesizeWidget) else inner.findChild(SynthesizeWidget)
            return found
    return None


def _untruncate_tabs(viewer: Any) -> None:
    """Tabbed docks: full titles, scroll buttons instead of eliding."""
    for bar in viewer.window._qt_window.findChildren(QTabBar):
        bar.setElideMode(Qt.TextElideMode.ElideNone)
        bar.setUsesScrollButtons(True)
        bar.setExpanding(False)


def _fit(viewer: Any) -> None:
    if any(isinstance(layer, (Image, Labels)) for layer in viewer.layers):
        viewer.reset_view()
