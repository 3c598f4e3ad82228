"""Small pieces every dock widget shares: layer <-> Volume and the progress panel.

Geometry goes only through :mod:`..io.layers` (napari world = LPS mm in (z, y, x) order).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..io.layers import layer_to_volume, volume_to_layer
from ..io.volume import Volume
from ..progress import Progress
from .turns import next_turn
from .warmup import warm_up

if TYPE_CHECKING:
    from .handle import TaskHandle

LayerData = tuple[Any, dict[str, Any], str]  # (data, layer keywords, "image" or "labels"): volume_to_layer's
# layer attributes add_volume may set on an existing layer; other keywords only apply to new layers
_UPDATABLE = ("scale", "translate", "affine", "metadata", "colormap", "contrast_limits", "opacity", "blending")
_GEOMETRY = ("scale", "translate", "affine")


def _same_geometry(layer: Layer, key: str, value: Any) -> bool:
    """Whether setting ``layer.<key> = value`` (scale, translate or affine) would change nothing."""
    current = layer.affine.affine_matrix if key == "affine" else getattr(layer, key)
    new = getattr(value, "affine_matrix", value)
    current, new = np.asarray(current, float), np.asarray(new, float)
    return current.shape == new.shape and bool(np.allclose(current, new))


def layer_to_volume_of(layer: Layer) -> Volume:
    """The Volume behind an Image or Labels layer: data (z, y, x) or (t, z, y, x) with its geometry."""
    if not isinstance(layer, (Image, Labels)):
        raise TypeError(f"layer '{layer.name}' is a {type(layer).__name__} layer, not an image or labels layer")
    affine = np.asarray(layer.affine.affine_matrix)
    return layer_to_volume(
        np.asarray(layer.data),
        scale=layer.scale,
        translate=layer.translate,
        affine=None if np.allclose(affine, np.eye(len(affine))) else affine,
        metadata=dict(layer.metadata),
        is_label=isinstance(layer, Labels),
    )


def add_volume(viewer: Any, vol: Volume, name: str, **kwargs: Any) -> Layer:
    """Show ``vol`` as layer ``name`` (Labels if ``vol.is_label``, else Image) and return the layer.

    An existing layer of that name and kind is updated in place (data, geometry, metadata; e.g. a
    preview replaced by the next one; also when the number of dimensions changes); one of the other
    kind is replaced at the same position.
    kwargs go to ``add_image``/``add_labels`` (``oblique=`` goes to ``volume_to_layer``). The
    volume's ``metadata["notes"]`` are shown as notifications when they are new for this layer.
    """
    return add_layer_data(viewer, volume_to_layer(vol, name, oblique=kwargs.pop("oblique", "resample")), **kwargs)


def add_layer_data(viewer: Any, layer_data: LayerData, **kwargs: Any) -> Layer:
    """:func:`add_volume` for what :func:`..io.layers.volume_to_layer` made, e.g. in a worker thread
    (``layer_data`` is not changed; kwargs override its layer keywords, which name the layer)."""
    data, layer_kw, kind = layer_data
    layer_kw = {**layer_kw, **kwargs}
    name = layer_kw["name"]
    notes = list(layer_kw["metadata"].get("notes", []))
    cls = Labels if kind == "labels" else Image
    old = viewer.layers[name] if name in viewer.layers else None
    if isinstance(old, cls):
        shown = list(old.metadata.get("notes", []))
        layer_kw.setdefault("affine", np.eye(data.ndim + 1))
        new_ndim = old.ndim != data.ndim
        if new_ndim:
            old.data = data  # first: the geometry below has the new number of dimensions
        for key in _UPDATABLE:
            if key in layer_kw and not (key in _GEOMETRY and _same_geometry(old, key, layer_kw[key])):
                setattr(old, key, layer_kw[key])  # each geometry change re-slices the layer: skip unchanged ones
        if not new_ndim:
            old.data = data
        if cls is Image and "contrast_limits" not in layer_kw:
            old.reset_contrast_limits()
        layer = old
    else:
        shown = []
        index = None
        if old is not None:
            index = viewer.layers.index(old)
            viewer.layers.remove(old)
        add = viewer.add_labels if cls is Labels else viewer.add_image
        layer = add(data, **layer_kw)
        if index is not None:
            viewer.layers.move(viewer.layers.index(layer), index)
    _show_notes(name, notes, shown)
    return layer


def append_layer(viewer: Any, layer: Layer) -> Layer:
    """Append a layer built elsewhere (napari Layer objects are not Qt objects: e.g. in a worker thread)
    and show its ``metadata["notes"]`` as :func:`add_layer_data` does for a new layer."""
    viewer.layers.append(layer)
    _show_notes(layer.name, list(layer.metadata.get("notes", [])), [])
    return layer


def _show_notes(name: str, notes: list[str], shown: list[str]) -> None:
    for note in notes:
        if note not in shown:
            show_info(f"{name}: {note}")


def show_placeholder(viewer: Any, vol: Volume, name: str) -> None:
    """Show the empty output ``vol`` (t, z, y, x) as layer ``name`` in two event-loop turns.

    A new layer that adds a dimension to the viewer makes napari build the layer and rebuild every
    dims slider in one turn. The first turn adds only the first frame, as a 3D layer; the next turn
    gives the layer all frames and its fourth dimension (:func:`.turns.next_turn`: the viewer
    handles what is waiting in between), unless a result has already replaced the layer's data or
    the layer is gone. Other volumes, and an existing layer ``name``, are shown at once by
    :func:`add_volume`.
    """
    if name in viewer.layers or vol.data.ndim < 4:
        add_volume(viewer, vol, name)
        return
    first = add_volume(viewer, dataclasses.replace(vol, data=vol.data[0]), name)

    def grow() -> None:
        if name in viewer.layers and viewer.layers[name] is first and first.ndim == 3:
            add_volume(viewer, vol, name)

    next_turn(grow)


class ProgressPanel(QWidget):
    """Progress bar, status line and Cancel button; every dock embeds one and passes it to run_task.

    Creating one starts the import warm-up (:func:`.warmup.warm_up`) of ``warm``, the modules the
    dock's background jobs would import in the viewer's process: they should not import mid-job.
    """

    def __init__(self, parent: QWidget | None = None, warm: tuple[str, ...] = ()) -> None:
        super().__init__(parent)
        warm_up(warm)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self._handle: TaskHandle | None = None

    @property
    def busy(self) -> bool:
        return self._handle is not None and self._handle.running

    def attach(self, handle: TaskHandle) -> None:
        """Follow a newly started task (called by run_task)."""
        self._handle = handle
        self.bar.setRange(0, 0)  # busy indicator until the first report with a total
        self.status.setText(f"{handle.name}: starting")
        self.cancel_button.setEnabled(True)

    def show_progress(self, p: Progress) -> None:
        if p.total:
            self.bar.setRange(0, p.total)
            self.bar.setValue(min(p.step, p.total))
        name = self._handle.name if self._handle is not None else ""
        metrics = " ".join(f"{k}={v:.4g}" for k, v in p.metrics.items())
        self.status.setText(" ".join(s for s in (f"{name}:", p.message, metrics) if s))

    def finish(self, status: str, detail: str = "") -> None:
        """Show the end state ("done", "cancelled", "error"), then ``detail`` (e.g. what went wrong),
        and disable Cancel."""
        name = self._handle.name if self._handle is not None else ""
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if status == "done" else 0)
        self.status.setText(f"{name}: {status}" + (f": {detail}" if detail else ""))
        self.cancel_button.setEnabled(False)

    def cancel(self) -> None:
        if self.busy:
            self._handle.cancel()
            self.status.setText(f"{self._handle.name}: cancelling...")
            self.cancel_button.setEnabled(False)
