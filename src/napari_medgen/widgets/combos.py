"""Combo boxes the docks share: layers of one kind, and models (shipped + Browse...)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QComboBox, QFileDialog

BROWSE = "Browse..."


NONE = "(none)"


class LayerCombo(QComboBox):
    """Names of the viewer's layers of one kind (and, with ``accept``, only those it accepts), kept up to date;
    ``optional`` adds ``none`` (NONE unless named) after them, or with ``none_first`` before them (then the
    default choice, unless ``prefer_layer``: a new or lost choice then falls on the first layer if any, and so
    does the choice of a list that had no layer yet, "none" being then no choice of the user's)."""

    def __init__(self, viewer: Any, kind: type, optional: bool = False, none_first: bool = False,
                 accept: Callable[[Any], bool] | None = None, none: str = NONE, prefer_layer: bool = False):
        super().__init__()
        self.viewer, self.kind, self.optional, self.none_first = viewer, kind, optional, none_first
        self.accept, self.none, self.prefer_layer = accept, none, prefer_layer
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            ev.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Rebuild the list, keeping the choice; the change signals fire only when the choice really changed
        (a rebuild passing through "no layer" made the docks forget what the user set for that layer)."""
        current = self.currentText()
        had_layers = self.count() > int(self.none_first or self.optional)
        self.blockSignals(True)
        try:
            self.clear()
            names = [layer.name for layer in self.viewer.layers
                     if isinstance(layer, self.kind) and (self.accept is None or self.accept(layer))]
            self.addItems([self.none, *names] if self.none_first else names + ([self.none] if self.optional else []))
            if current:
                self.setCurrentText(current)
            if self.prefer_layer and names and (self.currentText() != current or not had_layers):
                self.setCurrentText(names[0])
        finally:
            self.blockSignals(False)
        if self.currentText() != current:
            self.currentIndexChanged.emit(self.currentIndex())
            self.currentTextChanged.emit(self.currentText())

    def layer(self) -> Any:
        """The chosen layer, or None for the "none" entry (even beside a layer of the same name)."""
        index, name = self.currentIndex(), self.currentText()
        none_at = 0 if self.none_first else self.count() - 1 if self.optional else -1
        if index == none_at:
            return None
        return self.viewer.layers[name] if name in self.viewer.layers else None


class ModelCombo(QComboBox):
    """Shipped models ({name: path}) plus "Browse..." to add a model file."""

    def __init__(self, shipped: dict[str, Path]):
        super().__init__()
        self.paths = dict(shipped)
        self.addItems([*self.paths, BROWSE])
        self.activated.connect(self._maybe_browse)

    def _maybe_browse(self, *_: Any) -> None:
        if self.currentText() == BROWSE:
            path, _ = QFileDialog.getOpenFileName(self, "Model card or weights", "", "Models (*.json *.safetensors)")
            if path:
                self.add_path(Path(path))

    def add_path(self, path: Path) -> None:
        path = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
        self.paths[path.name] = path
        if self.findText(path.name) < 0:
            self.insertItem(self.count() - 1, path.name)
        self.setCurrentText(path.name)

    def path(self) -> Path | None:
        return self.paths.get(self.currentText())
