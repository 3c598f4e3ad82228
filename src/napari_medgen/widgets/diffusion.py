"""The "Diffusion" dock: choose a model (shipped, a model file or a MONAI bundle folder), a sampler,
steps, seed, number of samples and optionally a labels layer or conditioning values; Sample shows
the x0 estimate as it forms (tasks.sample does the work) with the samples stacked on the layer's
leading axis."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Labels
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..models.diffusion import DEFAULT_STEPS, SAMPLERS
from ..tasks.sample import MAX_SAMPLES, placeholder, sample, shipped_models
from .common import ProgressPanel, add_volume, layer_to_volume_of, show_placeholder
from . import warmup
from .runner import TaskHandle, run_task

if TYPE_CHECKING:
    import napari

AUTO = "auto (model's default)"
BROWSE_FILE = "Browse model file..."
BROWSE_BUNDLE = "Browse MONAI bundle folder..."
NO_MASK = "(none)"
OUTPUT = "diffusion sample"


class DiffusionWidget(QWidget):
    """Dock widget; ``sample()`` starts sampling and returns the task handle (tests call it directly)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.models: dict[str, Path] = shipped_models()
        self.model = QComboBox()
        self.model.addItems([*self.models, BROWSE_FILE, BROWSE_BUNDLE])
        self.model.activated.connect(self._maybe_browse)
        self.sampler = QComboBox()
        self.sampler.addItems([AUTO, *SAMPLERS])
        self.sampler.currentTextChanged.connect(self._sampler_changed)
        self.steps = _spin(0, 1000, 0, "0 = the sampler's default (DDIM 50, rectified flow 30, DDPM 1000)")
        self.seed = _spin(0, 2**31 - 1, 0)
        self.n = _spin(1, MAX_SAMPLES, 4)
        self.preview_every = _spin(1, 1000, 5, "show the current estimate of the clean image every k steps")
        self.mask = QComboBox()
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed):
            ev.connect(self._refresh_masks)
        self._refresh_masks()
        self.condition = QLineEdit()
        self.condition.setPlaceholderText("e.g. 0.5,0.1,0.2,0.4")
        self.condition.setToolTip("conditioning values of a conditioned model (e.g. a latent MONAI bundle), "
                                  "comma-separated; empty for other models")
        self.run_button = QPushButton("Sample")
        self.run_button.clicked.connect(self.sample)
        self.panel = ProgressPanel(warm=warmup.MODEL_FAMILIES)
        form = QFormLayout()
        for label, w in (("model", self.model), ("sampler", self.sampler), ("steps", self.steps), ("seed", self.seed),
                         ("samples", self.n), ("preview every", self.preview_every), ("mask (labels)", self.mask),
                         ("condition", self.condition)):
            form.addRow(label, w)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.panel)
        layout.addStretch(1)
        self.handle: TaskHandle | None = None

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

    def _sampler_changed(self, name: str) -> None:
        self.steps.setValue(DEFAULT_STEPS.get(name, 0))

    def _refresh_masks(self, *_: Any) -> None:
        current = self.mask.currentText()
        self.mask.clear()
        self.mask.addItems([NO_MASK] + [layer.name for layer in self.viewer.layers if isinstance(layer, Labels)])
        self.mask.setCurrentText(current or NO_MASK)

    def sample(self) -> TaskHandle | None:
        """Start sampling with the dock's settings; the output layer updates with every preview."""
        path = self.models.get(self.model.currentText())
        if path is None or self.panel.busy:
            return None
        mask_name = self.mask.currentText()
        mask = layer_to_volume_of(self.viewer.layers[mask_name]) if mask_name in self.viewer.layers else None
        sampler = None if self.sampler.currentText() == AUTO else self.sampler.currentText()
        settings = dict(sampler=sampler, steps=self.steps.value() or None, n=self.n.value(), seed=self.seed.value(),
                        mask=mask, preview_every=self.preview_every.value(),
                        condition=self.condition.text().strip() or None)
        empty = placeholder(path, self.n.value(), mask)  # shown before the job loads the CPU
        prepare = None if empty is None else partial(show_placeholder, self.viewer, empty, OUTPUT)
        self.handle = run_task(self.viewer, lambda cancel: sample(path, cancel=cancel, **settings),
                               name="Diffusion sampling", on_result=self._show, on_preview=self._show,
                               panel=self.panel, prepare=prepare)
        return self.handle

    def _show(self, vol: Any) -> None:
        add_volume(self.viewer, vol, OUTPUT)


def _spin(low: int, high: int, value: int, tip: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setToolTip(tip)
    return box
