""""Image or labels" dock: the user's override of the reader's label-map guess.

Converts the selected layer between Image and Labels, keeping its name, position in the layer
list, geometry (scale, translate, affine, original file orientation) and metadata. The
conversion itself is :func:`napari_medgen.io._labels.with_label_kind`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from ..io._labels import with_label_kind
from .common import add_volume, layer_to_volume_of

if TYPE_CHECKING:
    import napari


class LayerTypeWidget(QWidget):
    """Shows the selected layer's kind and a button converting it to the other kind."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        # the annotation (a string here) is how napari knows to pass the viewer when docking
        super().__init__(parent)
        self.viewer = viewer
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.button = QPushButton()
        self.button.clicked.connect(self.convert)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.button)
        layout.addStretch()
        viewer.layers.selection.events.active.connect(self._refresh)
        self._refresh()

    def _layer(self) -> Image | Labels | None:
        layer = self.viewer.layers.selection.active
        return layer if isinstance(layer, (Image, Labels)) else None

    def _refresh(self, event: Any = None) -> None:
        layer = self._layer()
        self.button.setEnabled(layer is not None)
        if layer is None:
            self.status.setText("Select an image or labels layer.")
            self.button.setText("Convert")
            return
        kind, other = ("Labels", "Image") if isinstance(layer, Labels) else ("Image", "Labels")
        self.status.setText(f"'{layer.name}' is shown as {kind} ({np.asarray(layer.data).dtype}).")
        self.button.setText(f"Convert to {other}")

    def convert(self) -> Image | Labels | None:
        """Replace the selected layer by the other kind, same name/position/geometry; returns the new layer."""
        layer = self._layer()
        if layer is None:
            return None
        oblique = "resample" if np.allclose(layer.affine.affine_matrix, np.eye(layer.ndim + 1)) else "affine"
        vol = with_label_kind(layer_to_volume_of(layer), not isinstance(layer, Labels))
        new = add_volume(self.viewer, vol, layer.name, oblique=oblique)
        self.viewer.layers.selection.active = new
        self._refresh()
        return new
