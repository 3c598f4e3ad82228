"""Longitudinal dock: synthetic follow-ups of a baseline as a 4D layer, difference map, side-by-side view, volume plot.

Default: the real-scan path (no model, any modality): the user picks the lesion's label, the volume
law and the months. A learned "temporal" model can be chosen instead for scans like its training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..data.progression import DEFAULT_RATE, RATE_UNIT, Law, Progression, schedule
from ..errors import MedgenError
from ..models.store import load_card, shipped_models
from ..tasks.followup import FollowUps, export_series, label_values, propose_tracked, simulate_followups
from ..tasks.longitudinal import METHODS, predict_followups
from . import warmup
from .combos import LayerCombo
from .common import ProgressPanel, layer_to_volume_of
from .followup_layers import AT_T, OUTPUT, PreparedFollowUps, prepared, result_steps, show_at_t, show_difference, \
    show_in_turns
from .runner import run_task

if TYPE_CHECKING:
    import napari

NO_MODEL = "none: real-scan progression (any modality)"
MODEL_TIME = ("A learned model steps in its own time unit (its card's time_step, e.g. one follow-up of the phantom "
              "protocol), not in months: months, progression and rate apply to the real-scan path only.")


class LongitudinalWidget(QWidget):
    """Pick a baseline, its labels and the lesion to follow, a progression and months; Predict; inspect; Export."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.result: FollowUps | None = None
        self.prepared: PreparedFollowUps | None = None
        self._tracked_source: Labels | None = None
        self.image_layer = LayerCombo(viewer, Image, accept=_input_3d)
        # the first label map is the default rather than none (none stays once the user chose it among maps)
        self.labels_layer = LayerCombo(viewer, Labels, none_first=True, accept=_input_3d, prefer_layer=True)
        self.tracked = QComboBox()
        self.model, self.method, self.law = QComboBox(), QComboBox(), QComboBox()
        self.model.addItem(NO_MODEL, None)
        # "name (tracked structure)"; tumour-regression models first, then the others
        cards = {path: load_card(path) for path in shipped_models("temporal").values()}
        for path, card in sorted(cards.items(), key=lambda item: (item[1].get("series", "tumour") != "tumour", item[0].stem)):
            tracked = card.get("label_names", {}).get(str(card.get("tracked_label")), "tracked structure")
            self.model.addItem(f"{path.stem} ({tracked})", str(path))
        self.method.addItems(METHODS)
        self.law.addItems([law.value for law in Law])
        self.rate = QDoubleSpinBox()
        self.rate.setRange(-99.0, 1000.0)
        self.rate.setDecimals(2)
        self.law.currentTextChanged.connect(self._law_changed)
        self._law_changed(self.law.currentText())
        self.model.currentIndexChanged.connect(lambda _: self._model_changed())
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        self.steps = QSpinBox()
        self.steps.setRange(1, 20)
        self.steps.setValue(5)
        self.interval = QDoubleSpinBox()
        self.interval.setRange(0.1, 120.0)
        self.interval.setValue(3.0)
        self.interval.setSuffix(" months")
        self.predict_button = QPushButton("Predict")
        self.predict_button.clicked.connect(self.predict)
        self.time_point = QSpinBox()
        self.time_point.setRange(0, 5)
        self.time_point.valueChanged.connect(lambda _: self.show_time_point())
        self.side_by_side = QCheckBox("Side by side (grid, linked contrast)")
        self.side_by_side.toggled.connect(self.set_grid)
        self.single_file = QCheckBox("one 4D file")
        self.export_button = QPushButton("Export...")
        self.export_button.clicked.connect(self._ask_export)
        self.panel = ProgressPanel(warm=warmup.MODEL_FAMILIES + warmup.OPTIMISER)
        self.figure = Figure(figsize=(4, 2.2), dpi=80)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.axes = self.figure.add_subplot(1, 1, 1)
        self.figure.subplots_adjust(left=0.17, right=0.97, bottom=0.22, top=0.95)  # fixed: tight_layout took ~0.3 s

        form = QFormLayout()
        form.addRow("Baseline", self.image_layer)
        form.addRow("Labels", self.labels_layer)
        form.addRow("Follow label", self.tracked)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(browse)
        form.addRow("Model", model_row)
        form.addRow("Method (model)", self.method)
        form.addRow("Progression", self.law)
        form.addRow("Rate", self.rate)
        form.addRow("Follow-ups", self.steps)
        form.addRow("Every", self.interval)
        form.addRow(self.predict_button)
        form.addRow("Time point", self.time_point)
        form.addRow(self.side_by_side)
        export_row = QHBoxLayout()
        export_row.addWidget(self.single_file)
        export_row.addWidget(self.export_button)
        form.addRow(export_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.panel)
        layout.addWidget(self.canvas)
        self.labels_layer.currentTextChanged.connect(lambda _: self._refresh_tracked())
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._refresh_tracked)  # after the lists' own refresh: a label map painted since
        self._refresh_tracked()
        self._model_changed()

    def _model_changed(self) -> None:
        """Months, law and rate drive the real-scan path only; the method, the model path only."""
        real = self.model.currentData() is None
        for field in (self.law, self.rate, self.interval):
            field.setEnabled(real)
            field.setToolTip("" if real else MODEL_TIME)
        self.method.setEnabled(not real)

    def _law_changed(self, law: str) -> None:
        self.rate.setValue(DEFAULT_RATE[Law(law)])
        self.rate.setSuffix(f" {RATE_UNIT[Law(law)]}")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Temporal model card", "", "Model card (*.json)")
        if path:
            self.model.addItem(Path(path).stem, path)
            self.model.setCurrentIndex(self.model.count() - 1)

    def predict(self) -> None:
        """Run the chosen path on the chosen layers; the result arrives in :meth:`show_result`."""
        image, label_map, model = self.image_layer.layer(), self.labels_layer.layer(), self.model.currentData()
        if image is None:
            show_error("Choose a baseline image layer.")
            return
        if model is None and label_map is None:
            show_error("Choose the baseline's label map: the real-scan path follows a lesion in it.")
            return
        tracked = self.tracked.currentData()
        try:
            if model is None:
                months = schedule(self.steps.value(), self.interval.value())
                law = Progression(self.law.currentText(), self.rate.value())
            baseline = layer_to_volume_of(image)
            labels = None if label_map is None else layer_to_volume_of(label_map)
        except MedgenError as exc:
            show_error(str(exc))
            return
        if model is None:
            make = lambda cancel: simulate_followups(baseline, labels, tracked, months, law, cancel=cancel)  # noqa: E731
        else:
            method, steps = self.method.currentText(), self.steps.value()
            make = lambda cancel: predict_followups(baseline, model, labels=labels, steps=steps,  # noqa: E731
                                                    time_spacing=1.0, time_unit="model steps", method=method,
                                                    tracked=tracked, cancel=cancel)
        contrast = self._baseline_contrast()  # the new layers are built in the worker with this window
        run_task(self.viewer, lambda cancel: prepared(make(cancel), contrast), name="Predict follow-ups",
                 on_result=self.show_result, panel=self.panel)

    def show_result(self, result: PreparedFollowUps) -> None:
        """The result's layers (:func:`.followup_layers.result_steps`), then the volume plot, one step per
        event-loop turn; ``self.result`` is set in the last turn."""
        show_in_turns(self.viewer, [*result_steps(self.viewer, result, self._baseline_contrast()),
                                    lambda: self._show_series(result)])

    def _show_series(self, prepared_result: PreparedFollowUps) -> None:
        self.prepared, result = prepared_result, prepared_result.result
        self.result = result
        self.time_point.blockSignals(True)
        self.time_point.setRange(0, result.image.data.shape[0] - 1)
        self.time_point.setValue(result.image.data.shape[0] - 1)
        self.time_point.blockSignals(False)
        if self.side_by_side.isChecked():
            self.set_grid(True)
        self._plot(result)

    def show_time_point(self) -> None:
        """Difference map (follow-up t minus baseline, diverging, centred at 0) and the follow-up at t."""
        if self.prepared is None:
            return
        t = self.time_point.value()
        show_difference(self.viewer, self.prepared, t)
        show_at_t(self.viewer, self.prepared, t, self._baseline_contrast())
        if self.side_by_side.isChecked():
            self.set_grid(True)

    def _baseline_contrast(self) -> tuple[float, float] | None:
        layer = self.image_layer.layer()
        return tuple(layer.contrast_limits) if isinstance(layer, Image) else None

    def _link_contrast(self, event: Any = None) -> None:
        """The follow-ups follow the baseline's contrast limits (one window for every time point)."""
        limits = self._baseline_contrast()
        for name in (OUTPUT, AT_T):
            if limits is not None and name in self.viewer.layers:
                self.viewer.layers[name].contrast_limits = limits

    def set_grid(self, on: bool) -> None:
        """Side by side: only the baseline and the follow-up at t, in a 1 x 2 grid (one camera, linked contrast)."""
        keep = {self.image_layer.currentText(), AT_T}
        for layer in self.viewer.layers:
            layer.visible = (layer.name in keep) if on else True
        self.viewer.canvas.grid.shape = (1, 2) if on else (-1, -1)
        self.viewer.canvas.grid.enabled = on
        base = self.image_layer.layer()
        if isinstance(base, Image) and on:
            base.events.contrast_limits.connect(self._link_contrast)
            self._link_contrast()
        elif isinstance(base, Image):
            base.events.contrast_limits.disconnect(self._link_contrast)

    def _plot(self, result: FollowUps) -> None:
        ax = self.axes
        ax.clear()
        ax.plot(result.times, result.tracked_ml, "o-")
        ax.set_xlabel(f"time ({result.image.metadata.get('time_unit', '')})")
        ax.set_ylabel("lesion volume (ml)")
        self.canvas.draw_idle()

    def _ask_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export follow-ups to folder")
        if folder:
            self.export(folder)

    def export(self, folder: str | Path) -> list[Path]:
        """Write the series (one 4D file, or one file per time point), the difference series and volumes.csv."""
        if self.result is None:
            show_error("Predict follow-ups first.")
            return []
        try:
            paths = export_series(self.result, folder, single_file=self.single_file.isChecked())
        except MedgenError as exc:
            show_error(str(exc))
            return []
        show_info(f"Wrote {len(paths)} files to {folder}")
        return paths

    def _refresh_tracked(self) -> None:
        """The label values of the chosen label map, named where it names them; the lesion pre-selected."""
        layer = self.labels_layer.layer()
        if self._tracked_source is layer and self.tracked.count():
            return  # the same label map: no need to count its values again (a large map takes a while)
        self._tracked_source = layer
        self.tracked.clear()
        if not isinstance(layer, Labels):
            return
        vol = layer_to_volume_of(layer)
        names = {int(k): str(v) for k, v in vol.metadata.get("label_names", {}).items()}
        for value in label_values(vol):
            self.tracked.addItem(f"{value}" + (f" ({names[value]})" if value in names else ""), value)
        proposed = propose_tracked(vol)  # none proposed: nothing chosen (a model follows its own label)
        self.tracked.setCurrentIndex(-1 if proposed is None else self.tracked.findData(proposed))


def _input_3d(layer: Any) -> bool:
    """A 3D layer that is not one of this dock's results (the baseline and its label map are 3D)."""
    return layer.ndim == 3 and not layer.name.startswith(OUTPUT)
