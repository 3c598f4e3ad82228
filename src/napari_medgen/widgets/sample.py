"""The "Sample (diffusion)" dock: choose a model (shipped, a model file or a MONAI model-zoo bundle folder), a
sampler (only those the model's training objective allows), steps, seed, number of samples, a
labels layer of any size (resampled to the model's grid; a 2D model takes the viewer's current
slice) and the conditioning values the model defines, as named fields with the bundle's defaults
and ranges; Sample shows the x0 estimate as it forms (tasks.sample does the work) with the samples
stacked on the layer's leading axis.

A mask's values are the model's classes as the Synthesize dock's label table says (:class:`.label_map.LabelMapTable`,
the rules of :mod:`..data.label_mapping`), for a model card with classes; for a MONAI bundle (MAISI) the
"label map" field takes the same ``VALUE=CLASS`` / ``identity`` specs as ``medgen sample --map``."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Labels
from napari.utils.notifications import show_error
import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..data.label_mapping import LabelMapping
from ..errors import MedgenError
from ..models.bundle_config import ConditionField
from ..models.diffusion import DEFAULT_STEPS, SAMPLERS
from ..models.store import shipped_models
from ..tasks.sample import MAX_SAMPLES, model_options, sample
from ..tasks.sample_inputs import placeholder
from .combos import LayerCombo
from .common import ProgressPanel, add_volume, layer_to_volume_of, show_placeholder
from .label_map import LabelMapTable, layer_label_names
from . import warmup
from .runner import TaskHandle, run_task

if TYPE_CHECKING:
    import napari

AUTO = "auto (model's default)"
BROWSE_FILE = "Browse model file..."
BROWSE_BUNDLE = "Browse MONAI bundle folder..."
OUTPUT = "diffusion sample"


class SampleWidget(QWidget):
    """Dock widget; ``sample()`` starts sampling and returns the task handle (tests call it directly)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.models: dict[str, Path] = shipped_models("diffusion")
        self.model = QComboBox()
        self.model.addItems([*self.models, BROWSE_FILE, BROWSE_BUNDLE])
        self.model.activated.connect(self._maybe_browse)
        self.sampler = QComboBox()
        self.sampler.currentTextChanged.connect(self._sampler_changed)
        self.steps = _spin(0, 1000, 0,
                           "0 = the model's default (its card's, else DDIM 50, rectified flow 30, DDPM 1000)")
        self.seed = _spin(0, 2**31 - 1, 0)
        self.n = _spin(1, MAX_SAMPLES, 4)
        self.preview_every = _spin(1, 1000, 5, "show the current estimate of the clean image every k steps")
        self.mask = LayerCombo(viewer, Labels, none_first=True)
        self.label_table = LabelMapTable()  # a model card's classes for the mask's values
        self.mask.currentTextChanged.connect(self.refresh_label_table)
        self.refresh_label_table()
        self.label_map = QLineEdit()
        self.label_map.setPlaceholderText("bundles: VALUE=CLASS, e.g. 1=liver (or identity)")
        self.conditions = QFormLayout()  # one named field per conditioning value the model defines
        self.condition_inputs: dict[str, QComboBox | QDoubleSpinBox] = {}
        self.run_button = QPushButton("Sample")
        self.run_button.clicked.connect(self.sample)
        self.panel = ProgressPanel(warm=warmup.MODEL_FAMILIES)
        form = QFormLayout()
        for label, w in (("model", self.model), ("sampler", self.sampler), ("steps", self.steps), ("seed", self.seed),
                         ("samples", self.n), ("preview every", self.preview_every), ("mask (labels)", self.mask),
                         ("label -> class", self.label_table), ("label map", self.label_map)):
            form.addRow(label, w)
        self.form = form
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(self.conditions)
        layout.addWidget(self.run_button)
        layout.addWidget(self.panel)
        layout.addStretch(1)
        self.handle: TaskHandle | None = None
        self.model.currentTextChanged.connect(self._model_changed)
        self._model_changed()

    def add_model(self, path: str | Path) -> None:
        """Add a model file/bundle folder to the list and select it."""
        path = Path(path)
        name = path.name if path.is_dir() else path.with_suffix("").name
        self.models[name] = path
        if self.model.findText(name) < 0:
            self.model.insertItem(self.model.count() - 2, name)
        self.model.setCurrentText(name)

    def _maybe_browse(self, *_: Any) -> None:
        choice = self.model.currentText()
        if choice == BROWSE_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Diffusion model", "", "Model card (*.json)")
        elif choice == BROWSE_BUNDLE:
            path = QFileDialog.getExistingDirectory(self, "MONAI bundle folder")
        else:
            return
        if path:
            self.add_model(path)
        elif self.models:
            self.model.setCurrentIndex(0)

    def _model_changed(self, *_: Any) -> None:
        """Offer the samplers the model allows and one field per conditioning value it defines."""
        path = self.models.get(self.model.currentText())
        try:
            samplers, fields, classes = model_options(path) if path is not None else (SAMPLERS, (), ({}, 0))
        except MedgenError as exc:  # the run reports it in full
            samplers, fields, classes = SAMPLERS, (), ({}, 0)
            self.model.setToolTip(str(exc))
        self.label_table.set_model(*classes)
        bundle = path is not None and Path(path).is_dir()
        for w, shown in ((self.label_table, classes[1] > 0), (self.label_map, bundle)):
            w.setVisible(shown)
            self.form.labelForField(w).setVisible(shown)
        self.sampler.clear()
        self.sampler.addItems([AUTO, *samplers])
        while self.conditions.rowCount():
            self.conditions.removeRow(0)
        self.condition_inputs = {f.key: _field_input(f) for f in fields}
        for f in fields:
            self.conditions.addRow(f.label, self.condition_inputs[f.key])

    def condition(self) -> dict[str, float | str] | None:
        """The named conditioning values as set in the dock (None when the model defines none)."""
        if not self.condition_inputs:
            return None
        return {k: w.currentText() if isinstance(w, QComboBox) else w.value() for k, w in self.condition_inputs.items()}

    def _sampler_changed(self, name: str) -> None:
        self.steps.setValue(DEFAULT_STEPS.get(name, 0))

    def refresh_label_table(self, *_: Any) -> None:
        """Show the chosen mask layer's values and names in the label table."""
        layer = self.mask.layer()
        self.label_table.set_labels(None if layer is None else np.asarray(layer.data),
                                    {} if layer is None else layer_label_names(layer), key=layer)

    def label_map_specs(self, layer: Labels | None) -> list[str]:
        """The mask's values as the model's classes, as ``--map`` specs: the label table's for a model card with
        classes (InputError, naming both sides, while a value is "(choose)"), else the "label map" field's."""
        if layer is None or not self.label_table.n_classes:
            return [t for t in [self.label_map.text().strip()] if t and not self.label_map.isHidden()]
        self.refresh_label_table()  # values painted since
        mapping = self.label_table.mapping(f"Labels layer '{layer.name}'", f"model '{self.model.currentText()}'")
        return _specs(mapping)

    def sample(self) -> TaskHandle | None:
        """Start sampling with the dock's settings; the output layer updates with every preview."""
        path = self.models.get(self.model.currentText())
        if path is None or self.panel.busy:
            return None
        layer = self.mask.layer()
        try:
            label_map = self.label_map_specs(layer)
        except MedgenError as exc:
            show_error(f"Sample: {exc}")
            return None
        mask = layer_to_volume_of(layer) if layer is not None else None
        if mask is not None:
            mask.metadata["label_names"] = layer_label_names(layer)  # names from the layer's features too
        index = self._current_slice(layer, mask)
        sampler = None if self.sampler.currentText() == AUTO else self.sampler.currentText()
        settings = dict(sampler=sampler, steps=self.steps.value() or None, n=self.n.value(), seed=self.seed.value(),
                        mask=mask, preview_every=self.preview_every.value(), condition=self.condition(),
                        slice_index=index, label_map=label_map)
        empty = placeholder(path, self.n.value(), mask, index)  # shown before the job loads the CPU
        prepare = None if empty is None else partial(show_placeholder, self.viewer, empty, OUTPUT)
        self.handle = run_task(self.viewer, lambda cancel: sample(path, cancel=cancel, **settings),
                               name="Sample", on_result=self._show_result, on_preview=self._show,
                               panel=self.panel, prepare=prepare)
        return self.handle

    def _current_slice(self, layer: Any, mask: Any) -> int | None:
        """The mask's z index under the viewer's current position (what a 2D model samples)."""
        if layer is None or mask is None or mask.is_time_series or mask.spatial_shape[0] < 2:
            return None
        z = layer.world_to_data(self.viewer.dims.point)[-3]
        return int(np.clip(round(float(z)), 0, mask.spatial_shape[0] - 1))

    def _show(self, vol: Any) -> None:
        add_volume(self.viewer, vol, OUTPUT)

    def _show_result(self, vol: Any) -> None:
        self._show(vol)
        if vol.metadata.get("label_map") is not None:  # MAISI's label map generated from anatomy sizes
            add_volume(self.viewer, vol.metadata["label_map"], f"{OUTPUT} labels")


def _specs(mapping: LabelMapping) -> list[str]:
    """A label mapping as ``--map`` specs: "VALUE=CLASS" per value, and "identity" when confirmed."""
    return [f"{v}={c}" for v, c in sorted(mapping.table.items())] + (["identity"] if mapping.same_below else [])


def _field_input(f: ConditionField) -> QComboBox | QDoubleSpinBox:
    """A combo box of the field's choices (editable for a number besides its special words), or a spin box
    over its range, set to its default."""
    if f.choices or f.special:
        box = QComboBox()
        box.setEditable(bool(f.special))
        box.addItems(list(f.choices or f.special))
        box.setCurrentText(str(f.default))
        box.setToolTip(f"{f.key}: {f.low} .. {f.high} or {', '.join(f.special)}" if f.special else f.key)
        return box
    spin = QDoubleSpinBox()
    spin.setDecimals(3)
    spin.setSingleStep(0.05 if f.high is not None and f.low is not None and f.high - f.low <= 1 else 0.1)
    spin.setRange(-1e6 if f.low is None else f.low, 1e6 if f.high is None else f.high)
    spin.setValue(float(f.default))
    spin.setToolTip(f"{f.key}: {f.low} .. {f.high}, bundle default {f.default}")
    return spin


def _spin(low: int, high: int, value: int, tip: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setToolTip(tip)
    return box
