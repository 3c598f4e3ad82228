"""The "Train" dock: train a registered model family in the background, watch its loss and previews.

Gathers the parameters, runs :func:`napari_medgen.tasks.train.train_model` in a child process
(:func:`napari_medgen.tasks.train_process.train_in_child`: training never holds the viewer's GIL)
through :func:`.runner.run_task`, draws the loss history on a matplotlib canvas and shows the
trainer's preview as the image layer "training preview". Start begins a fresh run in the work folder
(its old checkpoints are deleted); Resume continues from the newest good checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                            QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from ..io.volume import Volume
from ..progress import Progress
from ..tasks.train import TrainJob, TrainOutcome
from ..tasks.train_process import train_in_child
from ..training.history import LossHistory, draw_losses
from ..training.registry import TrainConfig, trainers
from ..training.source import TrainingSource
from .common import ProgressPanel, add_volume
from . import warmup
from .runner import TaskHandle, run_task

if TYPE_CHECKING:
    import napari

PREVIEW_LAYER = "training preview"
SOURCES = {"Sample: brain MRI": "brain", "Sample: thorax phantom": "phantom", "Image + label folders": None}
PLOT_INTERVAL_S = 0.5  # redraw the loss plot at most this often while training


class TrainWidget(QWidget):
    """Family, data, steps, intervals, work folder, output model; Start / Resume; loss plot; status."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.handle: TaskHandle | None = None
        self.outcome: TrainOutcome | None = None
        self.records: list[dict[str, float]] = []
        self._plotted_at = 0.0

        self.family = QComboBox()
        for family, spec in trainers().items():
            self.family.addItem(family)
            self.family.setItemData(self.family.count() - 1, spec.help, Qt.ItemDataRole.ToolTipRole)
        self.source = QComboBox()
        self.source.addItems(list(SOURCES))
        self.images, images_row = _folder_row(self, "images folder")
        self.labels, labels_row = _folder_row(self, "label maps folder (matched by file name)")
        self.steps = _spin(1, 1_000_000, 500)
        self.checkpoint_every = _spin(1, 1_000_000, 50)
        self.preview_every = _spin(0, 1_000_000, 25)
        self.seed = _spin(0, 2**31 - 1, 0)
        self.batch_size = _spin(1, 4096, 4)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(1e-3)
        self.workdir, workdir_row = _folder_row(self, "work folder: checkpoints and loss history")
        self.workdir.setText(str(Path.home() / "medgen-runs" / "run"))
        self.out = QLineEdit()
        self.out.setPlaceholderText("model path without extension (empty: WORKDIR/model)")
        self.overwrite = QCheckBox("replace an existing model there (as a whole, when training ends)")
        self.start_button = QPushButton("Start")
        self.resume_button = QPushButton("Resume")
        self.start_button.clicked.connect(lambda: self.start(resume=False))
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.source.currentTextChanged.connect(self._source_changed)

        form = QFormLayout()
        for label, field in (("family", self.family), ("data", self.source), ("images", images_row),
                             ("labels", labels_row), ("steps", self.steps), ("checkpoint every", self.checkpoint_every),
                             ("preview every", self.preview_every), ("seed", self.seed),
                             ("batch size", self.batch_size), ("learning rate", self.lr),
                             ("work folder", workdir_row), ("output model", self.out), ("", self.overwrite)):
            form.addRow(label, field)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.resume_button)
        self.figure = Figure(figsize=(4, 2.5), dpi=80)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.axes = self.figure.add_subplot(1, 1, 1)
        self.panel = ProgressPanel(warm=warmup.TRAINING_PARENT)
        self.result_line = QLabel("")
        self.result_line.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.panel)
        layout.addWidget(self.canvas)
        layout.addWidget(self.result_line)
        self._source_changed(self.source.currentText())

    def _source_changed(self, text: str) -> None:
        folders = SOURCES[text] is None
        for widget in (self.images, self.labels):
            widget.setEnabled(folders)

    def job(self, resume: bool) -> TrainJob:
        """The TrainJob the current settings describe."""
        sample = SOURCES[self.source.currentText()]
        workdir = self.workdir_path()
        config = TrainConfig(images=None if sample else Path(self.images.text()).expanduser(),
                             labels=None if sample else Path(self.labels.text()).expanduser(),
                             seed=self.seed.value(), steps=self.steps.value(), batch_size=self.batch_size.value(),
                             lr=self.lr.value(), sample=sample)
        out = Path(self.out.text()).expanduser() if self.out.text().strip() else workdir / "model"
        family = self.family.currentText()
        return TrainJob(family, config, workdir=workdir, out=out, checkpoint_every=self.checkpoint_every.value(),
                        preview_every=self.preview_every.value(), resume=resume,
                        overwrite=self.overwrite.isChecked(),
                        command=f"napari Train dock: {family}, {TrainingSource.of(config).describe()}, "
                                f"steps={config.steps}, seed={config.seed}, lr={config.lr}, "
                                f"batch_size={config.batch_size}, resume={resume}")

    def start(self, resume: bool = False) -> TaskHandle | None:
        """Start (fresh) or resume training in the background; returns the task handle."""
        if self.handle is not None and self.handle.running:
            show_info("Training is already running: cancel it first.")
            return None
        if not self.family.currentText():
            show_error("No trainable model family is registered.")
            return None
        job = self.job(resume)
        self.records, self.outcome = [], None
        self.result_line.setText("")
        self._set_running(True)
        self.handle = run_task(self.viewer, lambda cancel: train_in_child(job, cancel), name=f"train {job.family}",
                               on_result=self._on_result, on_preview=self._on_preview,
                               on_progress=self._on_progress, on_finished=lambda _: self._set_running(False),
                               panel=self.panel)
        return self.handle

    def cancel(self) -> None:
        """Stop after the current step (a checkpoint is saved)."""
        self.panel.cancel()

    def _set_running(self, running: bool) -> None:
        for widget in (self.start_button, self.resume_button, self.family, self.source):
            widget.setEnabled(not running)

    def _on_progress(self, p: Progress) -> None:
        if not self.records and p.step > 0 and not p.metrics:  # resumed: show the history so far
            self.records = list(LossHistory(self.workdir_path()).records)
        if p.metrics:
            self.records.append({"step": p.step, **p.metrics})
        if time.monotonic() - self._plotted_at > PLOT_INTERVAL_S:
            self.draw_plot()

    def _on_preview(self, preview: Volume) -> None:
        add_volume(self.viewer, preview.with_data(np.asarray(preview.data, dtype=np.float32)), PREVIEW_LAYER,
                   colormap="gray")

    def _on_result(self, outcome: TrainOutcome) -> None:
        self.outcome = outcome
        result = outcome.result
        self.records = list(result.history)
        self.draw_plot()
        text = result.message
        if outcome.model is not None:
            text += f" Model written to '{outcome.model}' (+ .json card, .loss.png)."
        self.result_line.setText(text)
        (show_error if result.status == "diverged" else show_info)(text)

    def workdir_path(self) -> Path:
        return Path(self.workdir.text()).expanduser()

    def draw_plot(self) -> None:
        draw_losses(self.axes, self.records)
        self.figure.tight_layout()
        self.canvas.draw_idle()
        self._plotted_at = time.monotonic()


def _spin(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box


def _folder_row(parent: QWidget, title: str) -> tuple[QLineEdit, QWidget]:
    """A path line edit with a Browse button that picks a folder."""
    edit = QLineEdit()
    edit.setPlaceholderText(title)
    button = QPushButton("Browse")

    def browse() -> None:
        folder = QFileDialog.getExistingDirectory(parent, title, edit.text())
        if folder:
            edit.setText(folder)

    button.clicked.connect(browse)
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    layout.addWidget(button)
    return edit, row
