"""Latent directions dock: discover directions of a VAE/GAN, edit a sample or a real slice with sliders."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                            QPushButton, QScrollArea, QSlider, QSpinBox, QVBoxLayout, QWidget)

from ..errors import MedgenError
from ..io.volume import Volume
from ..tasks.directions import METHODS, discover
from ..tasks.latent_editor import LatentEditor
from ..models.store import shipped_models
from .combos import LayerCombo
from .common import ProgressPanel, add_volume, layer_to_volume_of
from . import warmup
from .runner import run_task

if TYPE_CHECKING:
    import napari

SLIDER_STEPS = 30  # slider integer units per standard deviation / 10 -> range -3..3 std in 0.1 steps
WALK_ALPHAS = np.linspace(-3, 3, 5)
OUTPUT = "latent edit"
AUTO_MASK = "(automatic)"  # brain models: find the brain in the slice (data.brain_slices.auto_brain_mask)


class DirectionsWidget(QWidget):
    """Pick a model and a method, Discover, then move sliders; the "latent edit" layer follows."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.editor: LatentEditor | None = None
        self._geometry: Volume | None = None  # where the edited slice lives (a 1-slice volume)
        self._shown_geometry: Volume | None | bool = False  # geometry of the output layers as last placed
        self.model = QComboBox()
        for path in shipped_models(("vae", "gan")).values():
            self.model.addItem(path.stem, str(path))
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        self.method = QComboBox()
        self.method.addItems(METHODS)
        self.k = QSpinBox()
        self.k.setRange(1, 32)
        self.k.setValue(6)
        self.discover_button = QPushButton("Discover")
        self.discover_button.clicked.connect(self.discover)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2 ** 31 - 1)
        random_button = QPushButton("Random sample")
        random_button.clicked.connect(self.random_base)
        self.image_layer = LayerCombo(viewer, Image, accept=_not_output)
        self.mask_layer = LayerCombo(viewer, Labels, none_first=True, accept=_not_output, none=AUTO_MASK)
        self.mask_layer.setToolTip("Brain mask of the slice (label > 0) for a brain model; automatic: found "
                                   "in the slice (skull stripped)")
        invert_button = QPushButton("Invert current slice")
        invert_button.clicked.connect(self.invert_layer)
        save_button = QPushButton("Save directions with the model")
        save_button.clicked.connect(self.save)
        self.walk_k = QSpinBox()
        walk_button = QPushButton("Export walk as stack")
        walk_button.clicked.connect(self.export_walk)
        self.panel = ProgressPanel(warm=warmup.MODEL_FAMILIES + warmup.OPTIMISER)
        self.sliders: list[QSlider] = []
        self.names: list[QLineEdit] = []
        self.rows = QGridLayout()
        rows_widget = QWidget()
        rows_widget.setLayout(self.rows)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(rows_widget)

        form = QFormLayout()
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(browse)
        form.addRow("Model", model_row)
        form.addRow("Method", self.method)
        form.addRow("Directions", self.k)
        form.addRow(self.discover_button)
        base_row = QHBoxLayout()
        base_row.addWidget(self.seed)
        base_row.addWidget(random_button)
        form.addRow("Seed", base_row)
        inv_row = QHBoxLayout()
        inv_row.addWidget(self.image_layer, 1)
        inv_row.addWidget(invert_button)
        form.addRow("Real image", inv_row)
        form.addRow("Brain mask", self.mask_layer)
        walk_row = QHBoxLayout()
        walk_row.addWidget(self.walk_k)
        walk_row.addWidget(walk_button)
        form.addRow("Walk", walk_row)
        form.addRow(save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.panel)
        self.model.currentIndexChanged.connect(lambda _: self.load_model())
        if self.model.count():
            self.load_model()

    # --- model and directions -------------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Latent model card", "", "Model card (*.json)")
        if path:
            self.model.addItem(Path(path).stem, path)
            self.model.setCurrentIndex(self.model.count() - 1)

    def load_model(self) -> None:
        try:
            self.editor = LatentEditor(self.model.currentData())
        except MedgenError as exc:
            self.editor = None
            show_error(str(exc))
            return
        self.editor.random_base(self.seed.value())
        self._geometry = None
        self._rebuild_rows()  # output layers appear only once the user samples, inverts or slides

    def discover(self) -> None:
        if self.editor is None:
            return
        editor, method, k = self.editor, self.method.currentText(), self.k.value()
        try:
            images = editor.images_for(method, 300)
        except MedgenError as exc:
            show_error(str(exc))
            return

        def done(directions) -> None:
            editor.directions = directions
            self._rebuild_rows()
            self.update_output()

        run_task(self.viewer, lambda cancel: discover(editor.model, method, k, images=images, cancel=cancel),
                 name=f"Discover ({method})", on_result=done, panel=self.panel)

    def save(self) -> None:
        if self.editor is not None and self.editor.directions is not None:
            self.editor.directions.names = [n.text() for n in self.names]
            show_info(f"Saved directions to {self.editor.save_directions()}")

    def _rebuild_rows(self) -> None:
        while self.rows.count():
            item = self.rows.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.sliders, self.names = [], []
        dirs = self.editor.directions if self.editor is not None else None
        if dirs is None:
            return
        self.walk_k.setRange(0, len(dirs.vectors) - 1)
        for k, name in enumerate(dirs.names):
            edit = QLineEdit(name)
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(-SLIDER_STEPS, SLIDER_STEPS)
            slider.valueChanged.connect(lambda _: self.update_output())
            strip = QLabel()
            self.rows.addWidget(edit, 2 * k, 0)
            self.rows.addWidget(slider, 2 * k, 1)
            self.rows.addWidget(strip, 2 * k + 1, 0, 1, 2)
            self.names.append(edit)
            self.sliders.append(slider)
        self._refresh_strips()

    def _refresh_strips(self) -> None:
        for k in range(len(self.sliders)):
            strip = self.rows.itemAtPosition(2 * k + 1, 0).widget()
            thumbs = self.editor.walk_strip(k, WALK_ALPHAS)
            strip.setPixmap(_pixmap(np.concatenate(list(thumbs), axis=1)))

    # --- base latent and output -------------------------------------------------------------
    def alphas(self) -> np.ndarray:
        return np.array([s.value() / (SLIDER_STEPS / 3) for s in self.sliders], dtype=np.float32)

    def random_base(self) -> None:
        if self.editor is not None:
            self.editor.random_base(self.seed.value())
            self._geometry = None
            self._refresh_strips()
            self.update_output()

    def invert_layer(self) -> None:
        layer = self.image_layer.layer()
        if self.editor is None or layer is None:
            show_error("Choose an image layer to invert.")
            return
        vol = layer_to_volume_of(layer)
        if vol.is_time_series:
            show_error(f"Layer '{layer.name}' is a time series: pick one 3D image.")
            return
        index = int(np.clip(round(layer.world_to_data(self.viewer.dims.point)[0]), 0, vol.data.shape[0] - 1))
        mask, mask_layer = None, self.mask_layer.layer()
        if mask_layer is not None:
            mask = np.asarray(mask_layer.data)
            if mask.shape != vol.data.shape:
                show_error(f"Brain mask '{mask_layer.name}' has shape {mask.shape}, the image "
                           f"{vol.data.shape}: pick a mask drawn on this image, or {AUTO_MASK}.")
                return
            mask = mask[index]
        origin = tuple(vol.index_to_physical(np.array([0.0, 0.0, index])))
        self._geometry = Volume(np.zeros((1,) + vol.data.shape[1:]), vol.spacing, origin, vol.direction)
        editor = self.editor

        def done(_z) -> None:
            self._refresh_strips()
            self.update_output()

        spacing = (vol.spacing[1], vol.spacing[0])  # (row, col) mm of an axial slice
        run_task(self.viewer, lambda cancel: editor.invert_image(vol.data[index], cancel=cancel, spacing_mm=spacing,
                                                                 mask=mask),
                 name="Invert slice", on_result=done, panel=self.panel)

    def update_output(self) -> None:
        """Render the current base latent moved by the sliders into the output layers."""
        if self.editor is None:
            return
        image, labels = self.editor.render(self.alphas())
        layers = [self.viewer.layers[n] for n in (OUTPUT, f"{OUTPUT} labels") if n in self.viewer.layers]
        if self._shown_geometry is self._geometry and len(layers) == 2 and layers[0].data.shape[-2:] == image.shape:
            layers[0].data = image[None]  # slider fast path: same place, only the pixels change
            layers[1].data = labels[None]
            return
        geom = self._geometry or Volume(np.zeros((1,) + image.shape), (self.editor.pixel_mm,) * 2 + (1.0,))
        add_volume(self.viewer, geom.with_data(image[None], is_label=False), OUTPUT)
        add_volume(self.viewer, geom.with_data(labels[None], is_label=True), f"{OUTPUT} labels")
        self._shown_geometry = self._geometry

    def export_walk(self) -> None:
        if self.editor is None or self.editor.directions is None:
            show_error("Discover directions first.")
            return
        k, base = self.walk_k.value(), self.alphas()
        frames = []
        for a in np.linspace(-3, 3, 7):
            moved = base.copy()
            moved[k] = a
            frames.append(self.editor.render(moved)[0])
        geom = self._geometry or Volume(np.zeros((1,) + frames[0].shape), (self.editor.pixel_mm,) * 2 + (1.0,))
        series = Volume(np.stack(frames)[:, None], geom.spacing, geom.origin, geom.direction)
        add_volume(self.viewer, series, f"walk {self.names[k].text()}")


def _not_output(layer: Any) -> bool:
    """Not one of this dock's output layers."""
    return not layer.name.startswith(OUTPUT)


def _pixmap(image: np.ndarray) -> QPixmap:
    """(H, W) float image in [0, 1] -> grey pixmap."""
    data = np.ascontiguousarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    h, w = data.shape
    return QPixmap.fromImage(QImage(data.data, w, h, w, QImage.Format.Format_Grayscale8).copy())
