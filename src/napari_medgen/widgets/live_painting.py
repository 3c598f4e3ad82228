"""Live painting for the Synthesize dock: the edited slices of a labels layer are regenerated into its
image layer while the user paints (the Qt side of :mod:`..tasks.live_synthesis`).

:class:`LivePainting` listens to the labels layer (paint, labels_update, data) and to the viewer's
slider, asks a :class:`..tasks.live_synthesis.LiveSynthesis` worker for the slices that changed, or
renders the shown slice on the Qt thread when that fits in a frame, and writes every update into the
image layer in place. The dock starts one per Live session and stops it when Live is unticked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from qtpy.QtCore import QTimer

from ..errors import MedgenError
from ..io.layers import display_window
from ..io.volume import Volume
from ..models import spade
from ..models.synthesizer import Synthesizer
from ..tasks.live_synthesis import (LiveSynthesis, LiveUpdate, SliceRenderer, StyleSource, paint_event_slices,
                                    style_vector)
from . import collector
from .common import add_volume, layer_to_volume_of

Styles = tuple[StyleSource, StyleSource, float]  # (style A, style B, blend t in [0, 1])


def hide_brush_box(viewer: Any) -> None:
    """Turn off the background box of napari's brush-circle overlay (napari 0.6: on by default).

    Once painting has shown the brush, deleting the layers leaves that 8 x 8 px box in the scene,
    and drawing it segfaulted in glDrawArrays (Mesa llvmpipe, 4 of 4 runs of paint mode, Live
    on, Live off, delete all layers; tests/widgets/test_live_crash.py). The brush needs no box.
    """
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    brush = getattr(overlays, "_brush_circle", None)
    if brush is not None and getattr(brush, "box", False):
        brush.box = False


def shown_index(viewer: Any, layer: Labels, axis: int) -> int:
    """Index along data ``axis`` of the slice the viewer shows (0 for a 2D layer)."""
    if layer.ndim == 2:
        return 0
    return int(np.round(layer.world_to_data(viewer.dims.point)[axis]))


def cut_slices(data: np.ndarray, axis: int) -> np.ndarray:
    """(n, rows, cols) view of a 3D array cut along ``axis``, or (1, y, x) of a 2D one."""
    return data[None] if data.ndim == 2 else spade.cut(data, axis)


class LivePainting:
    """One Live session on ``layer``: regenerates its edited slices into the image layer ``image_name``.

    on_error: shows a bad edit's MedgenError (the image is left as it was); on_new_data: the layer
    got a new array (the dock restarts Live on it). Attributes the tests and benchmarks read:
    ``live`` (the LiveSynthesis), ``updates`` (updates written), ``style`` and ``renderer`` (set by
    the first render, in the worker).
    """

    def __init__(self, viewer: Any, layer: Labels, synth: Synthesizer, mapping: Any, styles: Styles,
                 image_name: str, on_error: Callable[[MedgenError], None], on_new_data: Callable[[], None]):
        self.viewer, self.layer, self.on_error, self.on_new_data = viewer, layer, on_error, on_new_data
        vol = layer_to_volume_of(layer)
        self.plan = synth.plan_slices(vol)
        if layer.ndim == 2:  # one slice: always cut along z, whatever the spacing says
            self.plan = spade.plan_slices(vol.data.shape, vol.spacing, 0, synth.slice_shape, synth.plane_spacing)
        self.style: np.ndarray | None = None
        self.renderer: SliceRenderer | None = None
        self.updates = 0
        self.done: set[int] = set()
        self.stopped = False

        def render(lab: np.ndarray) -> np.ndarray:  # worker thread: style and tracing happen there
            if self.renderer is None:
                self.style = style_vector(synth, *styles)
                self.renderer = SliceRenderer(synth, self.plan, self.style, mapping)
            return self.renderer(lab)

        self.live = LiveSynthesis(cut_slices(layer.data, self.plan.axis), render)
        self.image, self.fresh = self._image_layer(vol, image_name)
        self._thumbnail_timer = QTimer(singleShot=True, interval=300)
        self._thumbnail_timer.timeout.connect(self._refresh_thumbnail)
        layer.events.paint.connect(self._on_paint)
        layer.events.labels_update.connect(self._on_stroke)
        layer.events.data.connect(self._on_data)
        viewer.dims.events.current_step.connect(self._on_dims)
        collector.hold(viewer)  # live mode is a job while it is on: no full collection mid-stroke
        self.worker = create_worker(self.live.loop, _start_thread=False)
        self.worker.yielded.connect(self._from_worker)
        self.worker.start()
        self.live.request([self._shown()])

    def _shown(self) -> int:
        return shown_index(self.viewer, self.layer, self.plan.axis)

    def _image_layer(self, vol: Volume, name: str) -> tuple[Image, bool]:
        """The image layer updates go to (reused when its shape fits), and whether it is new."""
        old = self.viewer.layers[name] if name in self.viewer.layers else None
        if isinstance(old, Image) and old.data.shape == self.layer.data.shape:
            return old, False
        blank = vol.with_data(np.zeros(vol.data.shape, np.float32), is_label=False)
        return add_volume(self.viewer, blank, name), True

    def stop(self) -> None:
        """Stop the worker, disconnect every event and release the garbage collector."""
        self.stopped = True
        self.live.stop()
        self.layer.events.paint.disconnect(self._on_paint)
        self.layer.events.labels_update.disconnect(self._on_stroke)
        self.layer.events.data.disconnect(self._on_data)
        self.viewer.dims.events.current_step.disconnect(self._on_dims)
        self.worker.quit()
        self._thumbnail_timer.stop()
        collector.release()

    def _on_paint(self, event: Any) -> None:
        """Edits off the shown slice (3D brush, scripted edits); the shown one is handled by _on_stroke.
        napari emits paint before it writes the array, so the request waits for the event loop."""
        if self.layer.ndim == 2:
            return
        indices = paint_event_slices(event.value, self.plan.axis)
        indices.discard(self._shown())
        if indices:
            QTimer.singleShot(0, lambda: self.stopped or self.live.request(indices))

    def _on_stroke(self, event: Any = None) -> None:
        """Paint, fill or erase on the shown slice (napari's partial labels refresh, after the write):
        rendered here when a render fits in a frame and the worker is idle, else by the worker."""
        index = [self._shown()]
        if not self.live.may_render_inline():
            self.live.request(index)
            return
        try:
            update: LiveUpdate | MedgenError = self.live.compute_inline(index)
        except MedgenError as exc:
            update = exc
        self.apply(update)

    def _from_worker(self, update: LiveUpdate | MedgenError | None) -> None:
        self.apply(update)
        if update is not None:
            self.live.delivered()

    def _on_dims(self, event: Any = None) -> None:
        """Scrolled to another slice: synthesise it if live mode has not yet."""
        if self.layer.ndim > 2 and self._shown() not in self.done:
            self.live.request([self._shown()])

    def _on_data(self, event: Any = None) -> None:
        self.on_new_data()

    def apply(self, update: LiveUpdate | MedgenError | None) -> None:
        """Qt thread: write regenerated slices into the image layer in place and refresh it."""
        if update is None or self.stopped:
            return
        if isinstance(update, MedgenError):
            self.on_error(update)
            return
        cut_slices(self.image.data, self.plan.axis)[update.indices] = update.images
        self.done.update(update.indices)
        if self.fresh:  # a blank layer: its window (CT or percentile) from the first slices
            self.fresh = False
            window = display_window(Volume(update.images[None] if update.images.ndim == 2 else update.images))
            if window is not None:
                self.image.contrast_limits = window[1]
        self.updates += 1
        self.image.refresh(thumbnail=False, extent=False, highlight=False)  # written in place: same extent
        self._thumbnail_timer.start()  # the layer list's thumbnail follows once painting pauses

    def _refresh_thumbnail(self) -> None:
        if not self.stopped:
            self.image.refresh(data_displayed=False, extent=False, highlight=False)
