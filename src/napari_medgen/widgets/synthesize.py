"""The "Synthesize" dock: labels layer + spade model + style -> an aligned image layer, optionally
regenerated live while the user paints (tasks.synthesize and tasks.live_synthesis do the work).

The label table (:class:`.label_map.LabelMapTable`) says which model class each of the layer's
values is; Synthesize and Live refuse while a value is still "(choose)"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QPushButton, QSlider, QSpinBox,
                            QVBoxLayout, QWidget)

from ..errors import MedgenError
from ..io.layers import display_window
from ..io.volume import Volume
from ..models import spade
from ..tasks.live_synthesis import (LiveSynthesis, LiveUpdate, SliceRenderer, StyleSource, paint_event_slices,
                                    style_vector)
from ..models.store import shipped_models
from ..tasks.synthesize import Synthesizer, synthesize
from .combos import LayerCombo, ModelCombo
from .label_map import LabelMapTable, layer_label_names
from .common import ProgressPanel, add_volume, layer_to_volume_of
from . import collector, warmup
from .runner import run_task

if TYPE_CHECKING:
    import napari


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


class SynthesizeWidget(QWidget):
    """Dock widget: Synthesize (current slice / whole volume) and Live regeneration while painting."""

    STYLE_KINDS = ("random", "mean", "like image")

    def __init__(self, viewer: napari.viewer.Viewer):  # this annotation makes napari pass its viewer
        super().__init__()
        self.viewer = viewer
        hide_brush_box(viewer)
        self._synths: dict[str, Synthesizer] = {}
        self.live: LiveSynthesis | None = None
        self._live_ctx: dict[str, Any] = {}
        self.live_updates = 0  # regenerations written into the image layer (benchmarks and tests read it)
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
        self._thumbnail_timer = QTimer(self, singleShot=True, interval=300)
        self._thumbnail_timer.timeout.connect(self._refresh_thumbnail)
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
            lab = self.labels_combo.layer()
            return StyleSource("like", image=layer_to_volume_of(ref) if ref is not None else None,
                               labels=layer_to_volume_of(lab) if lab is not None else None)
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
        if self.live is not None:  # the live image follows the new meaning of the labels
            self.set_live(True)

    def labels_layer(self) -> Labels:
        layer = self.labels_combo.layer()
        if layer is None:
            raise MedgenError("Pick a labels layer first.")
        return layer

    def output_name(self, layer: Labels) -> str:
        return f"{layer.name} synthetic"

    def current_index(self, layer: Labels, axis: int) -> int:
        """Index along data ``axis`` of the slice the viewer shows (0 for a 2D layer)."""
        if layer.ndim == 2:
            return 0
        return int(np.round(layer.world_to_data(self.viewer.dims.point)[axis]))

    # --- Synthesize button --------------------------------------------------------------------
    def synthesize(self) -> Any:
        """Start synthesis of the chosen scope; returns the task handle (None on bad input)."""
        try:
            layer, synth = self.labels_layer(), self.synthesizer()
            vol, styles, mapping = layer_to_volume_of(layer), self.style_args(), self.mapping(layer, synth)
            slices = None
            if self.scope.currentText() == "current slice":
                slices = [self.current_index(layer, synth.plan_slices(vol).axis)]
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
            self._start_live()
        except MedgenError as exc:
            show_error(f"Live synthesis: {exc}")
            self.stop_live()
            self.live_box.setChecked(False)

    def _start_live(self) -> None:
        layer, synth = self.labels_layer(), self.synthesizer()
        vol = layer_to_volume_of(layer)
        mapping = self.mapping(layer, synth)
        plan = synth.plan_slices(vol)
        if layer.ndim == 2:  # one slice: always cut along z, whatever the spacing says
            plan = spade.plan_slices(vol.data.shape, vol.spacing, 0, synth.slice_shape, synth.plane_spacing)
        ctx: dict[str, Any] = {"layer": layer, "plan": plan, "renderer": None, "styles": self.style_args(),
                               "done": set()}

        def render(lab: np.ndarray) -> np.ndarray:  # worker thread: style and tracing happen there
            if ctx["renderer"] is None:
                ctx["style"] = style_vector(synth, *ctx["styles"])
                ctx["renderer"] = SliceRenderer(synth, plan, ctx["style"], mapping)
            return ctx["renderer"](lab)

        self.live = LiveSynthesis(self._slices(layer.data, plan.axis), render)
        self._live_ctx = ctx
        ctx["image"], ctx["fresh"] = self._live_image(layer, vol)
        layer.events.paint.connect(self._on_paint)
        layer.events.labels_update.connect(self._on_stroke)
        layer.events.data.connect(self._on_data)
        self.viewer.dims.events.current_step.connect(self._on_dims)
        collector.hold(self.viewer)  # live mode is a job while it is on: no full collection mid-stroke
        ctx["held"] = True
        ctx["worker"] = create_worker(self.live.loop, _start_thread=False)
        ctx["worker"].yielded.connect(self._from_worker)
        ctx["worker"].start()
        self.live.request([self.current_index(layer, plan.axis)])

    @staticmethod
    def _slices(data: np.ndarray, axis: int) -> np.ndarray:
        """(n, rows, cols) view of a 3D array cut along ``axis``, or (1, y, x) of a 2D one."""
        return data[None] if data.ndim == 2 else spade.cut(data, axis)

    def _live_image(self, layer: Labels, vol: Volume) -> tuple[Image, bool]:
        """The image layer live updates go to (reused when its shape fits), and whether it is new."""
        name = self.output_name(layer)
        old = self.viewer.layers[name] if name in self.viewer.layers else None
        if isinstance(old, Image) and old.data.shape == layer.data.shape:
            return old, False
        blank = vol.with_data(np.zeros(vol.data.shape, np.float32), is_label=False)
        return add_volume(self.viewer, blank, name), True

    def stop_live(self) -> None:
        ctx, self._live_ctx = self._live_ctx, {}
        if self.live is not None:
            self.live.stop()
            self.live = None
        if ctx:
            ctx["layer"].events.paint.disconnect(self._on_paint)
            ctx["layer"].events.labels_update.disconnect(self._on_stroke)
            ctx["layer"].events.data.disconnect(self._on_data)
            self.viewer.dims.events.current_step.disconnect(self._on_dims)
            ctx["worker"].quit()
        if ctx.get("held"):
            collector.release()

    def _on_paint(self, event: Any) -> None:
        """Edits off the shown slice (3D brush, scripted edits); the shown one is handled by _on_stroke.
        napari emits paint before it writes the array, so the request waits for the event loop."""
        ctx = self._live_ctx
        if self.live is None or ctx["layer"].ndim == 2:
            return
        indices = paint_event_slices(event.value, ctx["plan"].axis)
        indices.discard(self.current_index(ctx["layer"], ctx["plan"].axis))
        if indices:
            QTimer.singleShot(0, lambda: self.live is not None and self.live.request(indices))

    def _on_stroke(self, event: Any = None) -> None:
        """Paint, fill or erase on the shown slice (napari's partial labels refresh, after the write):
        rendered here when a render fits in a frame and the worker is idle, else by the worker."""
        if self.live is None:
            return
        index = [self.current_index(self._live_ctx["layer"], self._live_ctx["plan"].axis)]
        if not self.live.may_render_inline():
            self.live.request(index)
            return
        try:
            update: LiveUpdate | MedgenError = self.live.compute_inline(index)
        except MedgenError as exc:
            update = exc
        self._apply(update)

    def _from_worker(self, update: LiveUpdate | MedgenError | None) -> None:
        self._apply(update)
        if update is not None and self.live is not None:
            self.live.delivered()

    def _on_dims(self, event: Any = None) -> None:
        """Scrolled to another slice: synthesise it if live mode has not yet."""
        ctx = self._live_ctx
        if self.live is not None and ctx["layer"].ndim > 2:
            index = self.current_index(ctx["layer"], ctx["plan"].axis)
            if index not in ctx["done"]:
                self.live.request([index])

    def _on_data(self, event: Any = None) -> None:
        """The labels layer got a new array: restart live mode on it."""
        self.set_live(self.live_box.isChecked())

    def _apply(self, update: LiveUpdate | MedgenError | None) -> None:
        """Qt thread: write regenerated slices into the image layer in place and refresh it."""
        if update is None or not self._live_ctx:
            return
        if isinstance(update, MedgenError):
            show_error(f"Live synthesis: {update}")
            self.refresh_label_table()  # a newly painted value gets its row
            return
        image: Image = self._live_ctx["image"]
        self._slices(image.data, self._live_ctx["plan"].axis)[update.indices] = update.images
        self._live_ctx["done"].update(update.indices)
        if self._live_ctx["fresh"]:  # a blank layer: its window (CT or percentile) from the first slices
            self._live_ctx["fresh"] = False
            window = display_window(Volume(update.images[None] if update.images.ndim == 2 else update.images))
            if window is not None:
                image.contrast_limits = window[1]
        self.live_updates += 1
        image.refresh(thumbnail=False, extent=False, highlight=False)  # written in place: same extent
        self._thumbnail_timer.start()  # the layer list's thumbnail follows once painting pauses

    def _refresh_thumbnail(self) -> None:
        if self._live_ctx:
            self._live_ctx["image"].refresh(data_displayed=False, extent=False, highlight=False)

    def closeEvent(self, event: Any) -> None:  # noqa: N802  (Qt name)
        self.stop_live()
        super().closeEvent(event)
