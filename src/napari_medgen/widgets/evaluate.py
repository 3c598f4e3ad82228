"""Evaluate dock: quality metrics, usefulness under domain shift, resource trade-off and anomaly maps.

Four tabs, each gathering parameters and starting one task through :func:`.runner.run_task`
(tasks/evaluate, domain_shift, quantize, anomaly); results land in one shared table and plot
(exportable as CSV / PNG), anomaly maps as an image layer with the input's geometry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit,
                            QListWidget, QListWidgetItem, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem,
                            QTabWidget, QVBoxLayout, QWidget)

from ..atomic import atomic_write_with
from ..data.phantom import STYLES as PHANTOM_STYLES
from ..tasks import anomaly, domain_shift, evaluate, quantize
from .common import ProgressPanel, add_volume, layer_to_volume_of
from .combos import LayerCombo
from . import warmup
from .runner import TaskHandle, run_task

if TYPE_CHECKING:
    import napari

FOLDER = "Folder..."


class EvaluateWidget(QWidget):
    """Quality / Usefulness / Resources / Anomaly tabs over one progress panel, table and plot."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.handle: TaskHandle | None = None
        self.result: Any = None
        self._write_csv: Any = None  # write_csv of the task module whose result is shown
        tabs = QTabWidget()
        tabs.addTab(self._quality_tab(), "Quality")
        tabs.addTab(self._usefulness_tab(), "Usefulness")
        tabs.addTab(self._resources_tab(), "Resources")
        tabs.addTab(self._anomaly_tab(), "Anomaly")
        self.panel = ProgressPanel(warm=warmup.MODEL_FAMILIES + warmup.OPTIMISER)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["metric", "value"])
        self.canvas = FigureCanvasQTAgg()
        self.canvas.setMinimumHeight(220)
        self.csv_button, self.png_button = QPushButton("Export CSV..."), QPushButton("Export PNG...")
        self.csv_button.clicked.connect(lambda: self._ask_export("csv"))
        self.png_button.clicked.connect(lambda: self._ask_export("png"))
        exports = QHBoxLayout()
        exports.addWidget(self.csv_button)
        exports.addWidget(self.png_button)
        layout = QVBoxLayout(self)
        for w in (tabs, self.panel, self.table, self.canvas):
            layout.addWidget(w)
        layout.addLayout(exports)
        self._set_export_enabled(False)

    # --- tabs -----------------------------------------------------------------------------------
    def _quality_tab(self) -> QWidget:
        self.real_source, self.synthetic_source = (
            LayerCombo(self.viewer, Image, optional=True, none=FOLDER, prefer_layer=True) for _ in range(2))
        self.real_folder, self.synthetic_folder = QLineEdit(), QLineEdit()
        self.extractor = QLineEdit("default")
        self.extractor.setToolTip("'default' (shipped encoder) or a local ResNet/MedicalNet weights file")
        self.threshold = _spin(QDoubleSpinBox(), 0.0, 1.0, 0.03, step=0.005, decimals=3)
        run = QPushButton("Evaluate")
        run.clicked.connect(self.run_quality)
        form = QFormLayout()
        form.addRow("Real", self._source_row(self.real_source, self.real_folder))
        form.addRow("Synthetic", self._source_row(self.synthetic_source, self.synthetic_folder))
        form.addRow("Feature extractor", self.extractor)
        form.addRow("Near-copy threshold", self.threshold)
        form.addRow(run)
        return _page(form)

    def _usefulness_tab(self) -> QWidget:
        """Domain shift (tasks/domain_shift): train on one domain, test on the checked ones, per arm and seed."""
        self.train_domain = QComboBox()
        self.train_domain.setEditable(True)  # a phantom:STYLE or a folder path
        self.train_domain.addItems([f"phantom:{s}" for s in PHANTOM_STYLES])
        self.test_domains = QListWidget()
        self.test_domains.setMaximumHeight(90)
        for s in PHANTOM_STYLES:
            self._add_test_domain(f"phantom:{s}", checked=f"phantom:{s}" in domain_shift.DEFAULT_TESTS)
        add_folder = QPushButton("Add test folder...")
        add_folder.clicked.connect(lambda: self._add_test_domain(QFileDialog.getExistingDirectory(self, "Test folder")))
        train_folder = QPushButton("Training folder...")
        train_folder.clicked.connect(lambda: self.train_domain.setCurrentText(
            QFileDialog.getExistingDirectory(self, "Training folder") or self.train_domain.currentText()))
        self.arm_boxes = {a: QCheckBox(a) for a in domain_shift.ARMS}
        arms = QHBoxLayout()
        for a, box in self.arm_boxes.items():
            box.setChecked(a in domain_shift.DEFAULT_ARMS)
            arms.addWidget(box)
        self.shift_style = QComboBox()
        self.shift_style.addItems(["target", "prior"])
        self.shift_style.setToolTip("target: style from a few unlabelled images of each unseen domain; "
                                    "prior: the synthesis model's style prior")
        self.seeds = _spin(QSpinBox(), 1, 100, 3)
        self.steps = _spin(QSpinBox(), 1, 100_000, 300)
        self.subjects = _spin(QSpinBox(), 1, 10_000, 24)
        self.fraction = _spin(QDoubleSpinBox(), 0.05, 0.95, 0.25, step=0.05, decimals=2)
        self.synth_model = QLineEdit("spade_phantom")
        self.label_map = QLineEdit()
        self.label_map.setPlaceholderText("folders: VALUE=CLASS, e.g. 10=body,70=tumour")
        run = QPushButton("Run experiment")
        run.clicked.connect(self.run_usefulness)
        form = QFormLayout()
        for label, w in (("Train on", self.train_domain), ("", train_folder), ("Test on", self.test_domains),
                         ("", add_folder), ("Arms", _page(arms)), ("Synthetic style", self.shift_style),
                         ("Seeds", self.seeds), ("UNet steps", self.steps), ("Phantom subjects", self.subjects),
                         ("Reduced real fraction", self.fraction), ("Synthesis model", self.synth_model),
                         ("Label map", self.label_map)):
            form.addRow(label, w)
        form.addRow(run)
        return _page(form)

    def _add_test_domain(self, spec: str, checked: bool = True) -> None:
        if spec:
            item = QListWidgetItem(spec)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if checked else Qt.Unchecked)
            self.test_domains.addItem(item)

    def shift_choices(self) -> dict[str, Any]:
        """The usefulness tab's choices as :class:`..tasks.domain_shift.ShiftSettings` keywords."""
        items = [self.test_domains.item(i) for i in range(self.test_domains.count())]
        return dict(train=self.train_domain.currentText().strip(),
                    tests=tuple(i.text() for i in items if i.checkState() == Qt.Checked),
                    arms=tuple(a for a, box in self.arm_boxes.items() if box.isChecked()), seeds=self.seeds.value(),
                    style=self.shift_style.currentText(), model=self.synth_model.text().strip() or "spade_phantom",
                    steps=self.steps.value(), fraction=self.fraction.value(), n_train=self.subjects.value(),
                    label_map=tuple(p for p in [self.label_map.text().strip()] if p))

    def _resources_tab(self) -> QWidget:
        self.quant_model = QLineEdit("spade_phantom")
        self.quant_samples = _spin(QSpinBox(), 1, 256, 8)
        run = QPushButton("Measure fp32 / bf16 / int8")
        run.clicked.connect(self.run_resources)
        form = QFormLayout()
        form.addRow("Model", self.quant_model)
        form.addRow("Samples", self.quant_samples)
        form.addRow(run)
        return _page(form)

    def _anomaly_tab(self) -> QWidget:
        self.anomaly_layer = LayerCombo(self.viewer, Image)
        self.anomaly_model = QLineEdit(str(anomaly.DEFAULT_MODEL))
        self.smoothing = _spin(QDoubleSpinBox(), 0.0, 50.0, 3.0, step=0.5, decimals=1)
        run = QPushButton("Anomaly map")
        run.clicked.connect(self.run_anomaly)
        form = QFormLayout()
        form.addRow("Image layer", self.anomaly_layer)
        form.addRow("Normal-anatomy model", self.anomaly_model)
        form.addRow("Smoothing (mm)", self.smoothing)
        form.addRow(run)
        return _page(form)

    def _source_row(self, combo: LayerCombo, folder: QLineEdit) -> QWidget:
        browse = QPushButton("...")
        browse.setMaximumWidth(30)
        browse.clicked.connect(lambda: folder.setText(QFileDialog.getExistingDirectory(self, "Folder") or folder.text()))
        combo.currentTextChanged.connect(lambda t: folder.setEnabled(t == FOLDER))
        folder.setEnabled(combo.currentText() == FOLDER)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for w in (combo, folder, browse):
            row.addWidget(w)
        return _page(row)

    # --- actions ----------------------------------------------------------------------------------
    def _source(self, combo: LayerCombo, folder: QLineEdit) -> Any:
        """A folder path, or the chosen layer's data as images (n, y, x)."""
        if combo.currentText() == FOLDER:
            return Path(folder.text())
        vol = layer_to_volume_of(combo.layer())
        return np.asarray(vol.data if vol.data.ndim == 3 else vol.data.reshape(-1, *vol.data.shape[-2:]))

    def run_quality(self) -> TaskHandle:
        real = self._source(self.real_source, self.real_folder)
        syn = self._source(self.synthetic_source, self.synthetic_folder)
        ext, thr = self.extractor.text().strip() or "default", self.threshold.value()
        return self._start("quality", lambda c: evaluate.evaluate(real, syn, extractor=ext, threshold=thr, cancel=c),
                           self._show_quality)

    def run_usefulness(self) -> TaskHandle:
        kw = self.shift_choices()  # read on the Qt thread; checked in the task, where the runner shows refusals
        return self._start("usefulness", lambda c: domain_shift.experiment(domain_shift.ShiftSettings(**kw), cancel=c),
                           lambda r: self._show_rows(r, r.rows, domain_shift, domain_shift.figure(r)))

    def run_resources(self) -> TaskHandle:
        from ..models.store import resolve_model

        model, n = resolve_model(self.quant_model.text().strip()), self.quant_samples.value()
        return self._start("resources", lambda c: quantize.quantize(model, n_samples=n, cancel=c),
                           lambda r: self._show_rows(r, r.rows, quantize, quantize.figure(r)))

    def run_anomaly(self) -> TaskHandle | None:
        layer = self.anomaly_layer.layer()
        if layer is None:
            show_error("Choose an image layer for the anomaly map.")
            return None
        vol, model, mm = layer_to_volume_of(layer), self.anomaly_model.text().strip(), self.smoothing.value()
        name = f"{layer.name} anomaly"
        return self._start("anomaly map", lambda c: anomaly.anomaly_map(vol, model, smoothing_mm=mm, cancel=c),
                           lambda heat: add_volume(self.viewer, heat, name, colormap="inferno", opacity=0.6,
                                                   blending="additive"))

    def _start(self, name: str, make_task: Any, on_result: Any) -> TaskHandle:
        if self.handle is not None and self.handle.running:
            self.handle.cancel()
        self.handle = run_task(self.viewer, make_task, name=name, on_result=on_result, panel=self.panel)
        return self.handle

    # --- results ----------------------------------------------------------------------------------
    def _show_quality(self, result: evaluate.EvaluationResult) -> None:
        self._fill(evaluate.table_rows(result))
        self._show(result, evaluate, evaluate.figure(result, self.threshold.value()))

    def _show_rows(self, result: Any, rows: list[dict[str, Any]], module: Any, fig: Any) -> None:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        self.table.setColumnCount(len(keys))
        self.table.setHorizontalHeaderLabels(keys)
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            for j, k in enumerate(keys):
                v = r.get(k, "")
                self.table.setItem(i, j, QTableWidgetItem(f"{v:.4g}" if isinstance(v, float) else str(v)))
        self._show(result, module, fig)

    def _fill(self, rows: list[tuple[str, str]]) -> None:
        self.table.setColumnCount(2)
        self.table.setHorizontalHeaderLabels(["metric", "value"])
        self.table.setRowCount(len(rows))
        for i, (k, v) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(k))
            self.table.setItem(i, 1, QTableWidgetItem(v))

    def _show(self, result: Any, module: Any, fig: Any) -> None:
        self.result, self._write_csv = result, module.write_csv
        self.canvas.figure = fig
        fig.set_canvas(self.canvas)
        self.canvas.draw_idle()
        self._set_export_enabled(True)

    def _set_export_enabled(self, on: bool) -> None:
        self.csv_button.setEnabled(on)
        self.png_button.setEnabled(on)

    def export_csv(self, path: str | Path) -> None:
        self._write_csv(self.result, path)

    def export_png(self, path: str | Path) -> None:
        fig = self.canvas.figure
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")

    def _ask_export(self, kind: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, f"Export {kind.upper()}", f"evaluation.{kind}", f"*.{kind}")
        if path:
            (self.export_csv if kind == "csv" else self.export_png)(path)


def _spin(w: Any, lo: float, hi: float, value: float, step: float = 1, decimals: int | None = None) -> Any:
    w.setRange(lo, hi)
    if decimals is not None:
        w.setDecimals(decimals)
    w.setSingleStep(step)
    w.setValue(value)
    return w


def _page(layout: Any) -> QWidget:
    page = QWidget()
    page.setLayout(layout)
    if isinstance(layout, QHBoxLayout):
        layout.setContentsMargins(0, 0, 0, 0)
    return page
