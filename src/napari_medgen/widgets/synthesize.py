"""The "Synthesize" dock: labels layer + spade model + style -> an aligned image layer, optionally
regenerated live while the user paints (tasks.synthesize does the work; Live is
:class:`.live_painting.LivePainting` over tasks.live_synthesis).

The label table (:class:`.label_map.LabelMapTable`) says which model class each of the layer's
values is; Synthesize and Live refuse while a value is still "(choose)"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QPushButton, QSlider, QSpinBox,
                            QVBoxLayout, QWidget)

from ..errors import MedgenError
from ..io.volume import Volume
from ..models import spade
from ..models.store import shipped_models
from ..models.synthesizer import Synthesizer
from ..tasks.live_synthesis import StyleSource, style_vector
from ..tasks.synthesize import synthesize
from .combos import LayerCombo, ModelCombo
from .common import ProgressPanel, add_volume, layer_to_volume_of
from .label_map import LabelMapTable, layer_label_names
from .live_painting import LivePainting, hide_brush_box, shown_index
from . import warmup
from .runner import run_task

if TYPE_CHECKING:
    import napari


class SynthesizeWidget(QWidget):
    """Dock widget: Synthesize (current slice / whole volume) and Live regeneration while painting."""

    STYLE_KINDS = ("random", "mean", "like image")

    def __init__(self, viewer: napari.viewer.Viewer):  # this annotation makes napari pass its viewer
        super().__init__()
        self.viewer = viewer
        hide_brush_box(viewer)
        self._synths: dict[str, Synthesizer] = {}
        self.painting: LivePainting | None = None  # the Live session, while Live is on
        self.labels_combo = LayerCombo(viewer, Labels)
        self.model_combo = ModelCombo(shipped_models("spade"))
        self.scope = QComboBox()
        self.scope.addItems(["whole volume", "current slice"])
        self.style_a, self.style_b = QComboBox(), QComboBox()
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.reference = LayerCombo(viewer, Image, optional=True)
        self.blend = QSlider(Qt.Orientation.Horizontal)
        self.blend.setRange(0, 100)
        self.label_table = LabelMapTable()
        self.run_button = QPushButton("Synthesize")
        self.live_box = QCheckBox("Live (regenerate while painting)")
        self.panel = ProgressPanel(warm=warmup.MODEL_FAMILIES)
        form = QFormLayout()
        for label, w in (("labels", self.labels_combo), ("model", self.model_combo), ("scope", self.scope),
                         ("style", self.style_a), ("blend with", self.style_b), ("blend", self.blend),
                         ("seed", self.seed), ("reference image", self.reference), ("label -> class", self.label_table)):
            form.addRow(label, w)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for w in (self.run_button, self.live_box, self.panel):
            layout.addWidget(w)
        layout.addStretch(1)
        self.model_combo.currentTextChanged.connect(self._fill_styles)
        self.labels_combo.currentTextChanged.connect(self.refresh_label_table)
        self.label_table.changed.connect(self._on_mapping_changed)
        self.run_button.clicked.connect(self.synthesize)
        self.live_box.toggled.connect(self.set_live)
        self._fill_styles()
        self.refresh_label_table()

    # --- parameters ---------------------------------------------------------------------------
    def synthesizer(self) -> Synthesizer:
        path = self.model_combo.path()
        if path is None:
            raise MedgenError("Pick a synthesis model first (or Browse... for a model file).")
        if str(path) not in self._synths:
            self._synths[str(path)] = Synthesizer(path, device="auto")
        return self._synths[str(path)]

    def _fill_styles(self, *_: Any) -> None:
        try:
            synth = self.synthesizer()
            vendors = [f"vendor:{k}" for k in synth.named_styles()]
            self.label_table.set_model(synth.label_names, synth.n_classes)
        except MedgenError:
            vendors = []
            self.label_table.set_model({}, 0)
        for combo in (self.style_a, self.style_b):
            current = combo.currentText()
            combo.clear()
            combo.addItems([*self.STYLE_KINDS, *vendors])
            combo.setCurrentText(current)

    def _source(self, text: str, seed: int) -> StyleSource:
        if text.startswith("vendor:"):
            return StyleSource("vendor", name=text.split(":", 1)[1])
        if text == "like image":
            ref = self.reference.layer()
            return StyleSource("like", image=layer_to_volume_of(ref) if ref is not None else None)
        return StyleSource(text, seed=seed)

    def style_args(self) -> tuple[StyleSource, StyleSource, float]:
        """The style choice as (source A, source B, blend t); B's random seed is A's + 1."""
        seed = self.seed.value()
        return (self._source(self.style_a.currentText(), seed), self._source(self.style_b.currentText(), seed + 1),
                self.blend.value() / 100.0)

    def refresh_label_table(self, *_: Any) -> None:
        """Show the chosen labels layer's values and names in the label table."""
        layer = self.labels_combo.layer()
        self.label_table.set_labels(None if layer is None else np.asarray(layer.data),
                                    {} if layer is None else layer_label_names(layer), key=layer)

    def mapping(self, layer: Labels, synth: Synthesizer) -> Any:
        """The layer's label values -> the model's classes (table shown up to date); InputError if one has none."""
        self.refresh_label_table()
        return self.label_table.mapping(f"Labels layer '{layer.name}'", f"model '{synth.name}'")

    def _on_mapping_changed(self) -> None:
        if self.painting is not None:  # the live image follows the new meaning of the labels
            self.set_live(True)

    def labels_layer(self) -> Labels:
        layer = self.labels_combo.layer()
        if layer is None:
            raise MedgenError("Pick a labels layer first.")
        return layer

    def output_name(self, layer: Labels) -> str:
        return f"{layer.name} synthetic"

    # --- Synthesize button --------------------------------------------------------------------
    def synthesize(self) -> Any:
        """Start synthesis of the chosen scope; returns the task handle (None on bad input)."""
        try:
            layer, synth = self.labels_layer(), self.synthesizer()
            vol, styles, mapping = layer_to_volume_of(layer), self.style_args(), self.mapping(layer, synth)
            slices = None
            if self.scope.currentText() == "current slice":
                slices = [shown_index(self.viewer, layer, synth.plan_slices(vol).axis)]
        except MedgenError as exc:
            show_error(f"Synthesize: {exc}")
            return None

        def task(cancel):
            style = style_vector(synth, *styles)
            return (yield from synthesize(vol, synth, style=style, slices=slices, mapping=mapping, cancel=cancel))

        return run_task(self.viewer, task, name="Synthesize", panel=self.panel,
                        on_result=lambda out: self._show(layer, out, slices))

    def _show(self, layer: Labels, out: Volume, slices: list[int] | None) -> None:
        name = self.output_name(layer)
        old = self.viewer.layers[name] if name in self.viewer.layers else None
        if slices is not None and isinstance(old, Image) and old.data.shape == out.data.shape:
            axis = out.metadata["synthesis"]["slice_axis"]
            spade.cut(old.data, axis)[slices] = spade.cut(out.data, axis)[slices]
            old.refresh()
        else:
            add_volume(self.viewer, out, name)

    # --- Live ---------------------------------------------------------------------------------
    def set_live(self, on: bool) -> None:
        """Start or stop live regeneration of edited slices (errors are shown, Live is unticked)."""
        self.stop_live()
        if not on:
            return
        try:
            layer, synth = self.labels_layer(), self.synthesizer()
            self.painting = LivePainting(self.viewer, layer, synth, self.mapping(layer, synth), self.style_args(),
                                         self.output_name(layer), self._live_error,
                                         lambda: self.set_live(self.live_box.isChecked()))
        except MedgenError as exc:
            show_error(f"Live synthesis: {exc}")
            self.live_box.setChecked(False)

    def stop_live(self) -> None:
        painting, self.painting = self.painting, None
        if painting is not None:
            painting.stop()

    def _live_error(self, exc: MedgenError) -> None:
        show_error(f"Live synthesis: {exc}")
        self.refresh_label_table()  # a newly painted value gets its row

    def closeEvent(self, event: Any) -> None:  # noqa: N802  (Qt name)
        self.stop_live()
        super().closeEvent(event)
