"""The "Deform labels" dock: labels layer + method + parameters + seed -> a new labels layer with
the same geometry, ready to synthesise (tasks.deform does the work). For the label VAE's
interpolation, "label map" says which VAE class each label value is (``1=tumour, 2=lung`` or
``identity``, as ``medgen deform --map``); values named like a class need no entry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.layers import Labels
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit, QPushButton, QSlider,
                            QSpinBox, QVBoxLayout, QWidget)

from ..errors import MedgenError
from ..models.store import shipped_models
from ..tasks.deform import METHODS, deform
from .common import ProgressPanel, add_volume, layer_to_volume_of
from .runner import run_task
from .combos import LayerCombo, ModelCombo

if TYPE_CHECKING:
    import napari


def _spin(lo: float, hi: float, value: float, step: float = 1.0, decimals: int = 1) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    return box


class DeformWidget(QWidget):
    """Dock widget: elastic, dilate/erode, affine, label-VAE sample and interpolate."""

    def __init__(self, viewer: napari.viewer.Viewer):  # this annotation makes napari pass its viewer
        super().__init__()
        self.viewer = viewer
        self.labels_combo = LayerCombo(viewer, Labels, optional=True)
        self.method = QComboBox()
        self.method.addItems(METHODS)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.sigma_mm = _spin(1, 200, 20)
        self.magnitude_mm = _spin(0, 100, 6)
        self.label = QSpinBox()
        self.label.setRange(1, 65535)
        self.radius = _spin(0, 100, 2, 0.5)
        self.unit = QComboBox()
        self.unit.addItems(["voxel", "mm"])
        self.rotation = _spin(-180, 180, 10)
        self.scale = _spin(0.1, 10, 1.1, 0.05, 2)
        self.model_combo = ModelCombo(shipped_models("label_vae"))
        self.n = QSpinBox()
        self.n.setRange(1, 512)
        self.n.setValue(8)
        self.other = LayerCombo(viewer, Labels)
        self.t = QSlider(Qt.Orientation.Horizontal)
        self.t.setRange(0, 100)
        self.t.setValue(50)
        self.spherical = QCheckBox("spherical (slerp)")
        self.spherical.setChecked(True)
        self.label_map = QLineEdit()
        self.label_map.setPlaceholderText("e.g. 1=tumour, 2=lung (or identity)")
        self.run_button = QPushButton("Deform")
        self.panel = ProgressPanel()
        self.form = QFormLayout()
        self._rows = {"labels": self.labels_combo, "method": self.method, "seed": self.seed,
                      "sigma (mm)": self.sigma_mm, "magnitude (mm)": self.magnitude_mm, "label": self.label,
                      "radius": self.radius, "unit": self.unit, "rotation (deg)": self.rotation, "scale": self.scale,
                      "label VAE": self.model_combo, "slices": self.n, "subject B": self.other,
                      "A -> B": self.t, "": self.spherical, "label map": self.label_map}
        for name, w in self._rows.items():
            self.form.addRow(name, w)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.panel)
        layout.addStretch(1)
        self.method.currentTextChanged.connect(self._show_rows)
        self.run_button.clicked.connect(self.run)
        self._show_rows()

    _VISIBLE = {"elastic": ("seed", "sigma (mm)", "magnitude (mm)"), "dilate": ("label", "radius", "unit"),
                "erode": ("label", "radius", "unit"), "affine": ("rotation (deg)", "scale"),
                "vae-sample": ("seed", "label VAE", "slices"), "vae-interpolate": ("label VAE", "subject B", "A -> B", "", "label map")}

    def _show_rows(self, *_: Any) -> None:
        keep = {"labels", "method", *self._VISIBLE[self.method.currentText()]}
        for name, w in self._rows.items():
            self.form.setRowVisible(w, name in keep)

    def params(self) -> dict[str, Any]:
        """Keyword parameters of the chosen method for tasks.deform.deform."""
        m = self.method.currentText()
        if m == "elastic":
            return {"sigma_mm": self.sigma_mm.value(), "magnitude_mm": self.magnitude_mm.value()}
        if m in ("dilate", "erode"):
            return {"label": self.label.value(), "radius": self.radius.value(), "unit": self.unit.currentText()}
        if m == "affine":
            return {"rotation_deg": self.rotation.value(), "scale": self.scale.value()}
        model = self.model_combo.path()
        if m == "vae-sample":
            return {"model": model, "n": self.n.value()}
        other = self.other.layer()
        return {"model": model, "t": self.t.value() / 100.0, "spherical": self.spherical.isChecked(),
                "other": layer_to_volume_of(other) if other is not None else None,
                "label_map": [self.label_map.text()] if self.label_map.text().strip() else []}

    def run(self) -> Any:
        """Start the deformation; the result becomes the labels layer "<input> <method>". Returns the handle."""
        method, layer = self.method.currentText(), self.labels_combo.layer()
        try:
            vol = layer_to_volume_of(layer) if layer is not None else None
            params, seed = self.params(), self.seed.value()
        except MedgenError as exc:
            show_error(f"Deform labels: {exc}")
            return None
        name = f"{layer.name if layer is not None else 'labels'} {method}"
        return run_task(self.viewer, lambda cancel: deform(vol, method, seed=seed, cancel=cancel, **params),
                        name="Deform labels", panel=self.panel,
                        on_result=lambda out: add_volume(self.viewer, out, name))
