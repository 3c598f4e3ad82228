"""A small table from the user's label values to a model's classes (the rules are in
:mod:`..data.label_mapping`): one row per value in the labels layer or named by it, its name when
the layer or file has one, and a class chooser pre-set to the class of the same meaning, or
"(choose)". "Same numbers" confirms that the layer's values are the model's class numbers, also
for values painted later."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ..data import label_mapping
from ..data.label_mapping import LabelMapping
from ..errors import InputError

CHOOSE = "(choose)"


def layer_label_names(layer: Any) -> dict[int, str]:
    """{value: name} of a napari Labels layer: its metadata's ``label_names`` (from the file), else its features."""
    features = getattr(layer, "features", None)
    columns = features.to_dict("list") if features is not None and len(features) else None
    return label_mapping.user_label_names(layer.metadata, columns)


class LabelMapTable(QWidget):
    """Rows: user value | name | model class. ``changed`` fires when the user picks a class."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["value", "name", "model class"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.same_button = QPushButton("Same numbers")
        self.same_button.setToolTip("Confirm that unchosen values are the model's class numbers")
        self.same_button.clicked.connect(self.confirm_same_numbers)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addStretch(1)
        row.addWidget(self.same_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(row)
        self.values: list[int] = []
        self.user_names: dict[int, str] = {}
        self.model_names: dict[int, str] = {}
        self.n_classes = 0
        self._chosen: dict[int, int] = {}  # the user's own picks, kept while the model and layer stay the same
        self.identity = False  # the user confirmed "same numbers"
        self._key: object = None  # which layer the picks are for

    def set_model(self, model_names: Mapping[int, str], n_classes: int) -> None:
        if dict(model_names) != self.model_names or n_classes != self.n_classes:
            self._chosen, self.identity = {}, False
        self.model_names, self.n_classes = dict(model_names), int(n_classes)
        self._rebuild()

    def set_labels(self, data: np.ndarray | None, user_names: Mapping[int, str], key: object = None) -> None:
        """The layer's values (np.unique of ``data``; None: no layer) and names; ``key`` names the
        layer (another key forgets the user's picks)."""
        if key != self._key:
            self._chosen, self.identity, self._key = {}, False, key
        try:
            present = set() if data is None else {int(v) for v in label_mapping.label_values(data)}
        except InputError:
            present = set()  # not a label map: Synthesize reports it
        self.user_names = dict(user_names)
        self.values = sorted(present | (set(self.user_names) if data is not None else set()))
        self._rebuild()

    def _rebuild(self) -> None:
        proposal = label_mapping.propose(self.values, self.user_names, self.model_names)
        items = [CHOOSE] + [f"{c} {self.model_names.get(c, '')}".strip() for c in range(self.n_classes)]
        self.table.setRowCount(len(self.values))
        for r, v in enumerate(self.values):
            for col, text in ((0, str(v)), (1, self.user_names.get(v, ""))):
                item = QTableWidgetItem(text)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(r, col, item)
            combo = QComboBox()
            combo.addItems(items)
            chosen = self._chosen.get(v, proposal[v])
            combo.setCurrentIndex(0 if chosen is None else chosen + 1)
            combo.activated.connect(lambda index, value=v: self._pick(value, index))
            self.table.setCellWidget(r, 2, combo)
        self.table.resizeColumnsToContents()

    def _pick(self, value: int, index: int) -> None:
        if index == 0:
            self._chosen.pop(value, None)
        else:
            self._chosen[value] = index - 1
        self.changed.emit()

    def choose(self, value: int, cls: int | None) -> None:
        """Set ``value``'s class as the user would (None: back to "(choose)")."""
        self._chosen.pop(value, None)
        if cls is not None:
            self._chosen[value] = int(cls)
        self._rebuild()
        self.changed.emit()

    def confirm_same_numbers(self) -> None:
        """The user confirms: each value still "(choose)", and each painted later, is the model class
        of the same number."""
        self.identity = True
        for v in self.values:
            if self.selected(v) is None and v < self.n_classes and v not in self.user_names:
                self._chosen[v] = v
        self._rebuild()
        self.changed.emit()

    def selected(self, value: int) -> int | None:
        """The class shown for ``value`` (None: "(choose)" or no such row)."""
        if value not in self.values:
            return None
        index = self.table.cellWidget(self.values.index(value), 2).currentIndex()
        return None if index <= 0 else index - 1

    def mapping(self, what: str = "The labels layer", model: str = "the model") -> LabelMapping:
        """The table's mapping; InputError naming both sides when a value is still "(choose)"."""
        shown = {v: c for v in self.values if (c := self.selected(v)) is not None}
        return label_mapping.resolve(self.values, self.user_names, self.model_names, self.n_classes,
                                     explicit=shown, identity=self.identity, what=what, model=model)
