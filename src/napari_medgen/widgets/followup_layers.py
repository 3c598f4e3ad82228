"""The Longitudinal dock's result as napari layers: prepared in the worker, added across event-loop turns.

Adding a napari layer holds the Qt thread about as long for a 10 x 64 x 64 volume as for a 630 MB
(t, z, y, x) series (its controls, its vispy visual, a redraw; measured, docs/longitudinal.md). What
grew with the data was the dock's own work on the Qt thread, so all of it runs in the worker
(:func:`prepare`): napari's layer data and geometry (:func:`..io.layers.volume_to_layer`:
reorientation, oblique resampling, the display window), the difference maps' contrast limits, and
the napari Layer objects of the layers the viewer does not have yet (napari layers are not Qt
objects; napari guards its colormap registry with a lock and keeps a layer's source in a context
variable for this). The difference map is a lazy array (:class:`..tasks.followup.FrameDifference`):
napari computes only the slices it draws. The Qt thread only appends (or updates) layers, one per
event-loop turn (:func:`show_in_turns`); a new 4D series first arrives as its first frame, then
grows to 4D, so napari's rebuild of the dims sliders has a turn of its own. The layers are appended
without becoming the active layer (napari's selection change, its controls swapped in, is about a
fifth of an append); the last one appended is made active in a last turn of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer

from ..io.layers import volume_to_layer
from ..progress import Progress
from ..tasks.followup import FollowUps, FrameDifference
from . import collector
from .common import LayerData, add_layer_data, append_layer
from .turns import next_turn

OUTPUT = "follow-ups"
LABELS, DIFFERENCE, AT_T = f"{OUTPUT} labels", f"{OUTPUT} difference", f"{OUTPUT} at t"


@dataclass
class PreparedFollowUps:
    """A result and its layers as :func:`..io.layers.volume_to_layer` makes them (4D image and labels);
    ``limits[t]`` = max |frame t - frame 0| (1 where nothing changed), the difference map's half range;
    ``new``: name -> napari layer built in the worker, to append where the viewer has no layer of that
    name (the series' first frame, the labels, the difference map and the follow-up at the last time
    point, windowed with ``contrast``); each is appended at most once."""

    result: FollowUps
    image: LayerData
    labels: LayerData
    limits: list[float]
    contrast: tuple[float, float] | None = None
    new: dict[str, Layer] = field(default_factory=dict)


def prepare(result: FollowUps, contrast: tuple[float, float] | None = None) -> PreparedFollowUps:
    """Everything that reads the series, for the worker thread: layer data + geometry, difference limits,
    and the new layers' napari Layer objects (``contrast``: the follow-ups' display window, None: napari's)."""
    image = volume_to_layer(result.image, OUTPUT)
    labels = volume_to_layer(result.labels, LABELS)
    data = image[0]
    limits = [float(np.abs(FrameDifference(data, t)[...]).max()) or 1.0 for t in range(len(data))]
    prepared_result = PreparedFollowUps(result, image, labels, limits, contrast)
    prepared_result.new = {name: build_layer(layer, **display)
                           for name, (layer, display) in _new_layers(prepared_result, contrast).items()}
    return prepared_result


def build_layer(layer: LayerData, **kwargs: Any) -> Layer:
    """The napari Image or Labels layer of ``layer`` (kwargs override its keywords), not added to a viewer."""
    data, layer_kw, kind = layer
    return (Labels if kind == "labels" else Image)(data, **{**layer_kw, **kwargs})


def frame_layer(layer: LayerData, t: int, name: str) -> LayerData:
    """Frame ``t`` of a 4D layer's data as a 3D layer, same geometry (the time axis dropped)."""
    data, kwargs, kind = layer
    out = {**kwargs, "name": name, "metadata": {k: v for k, v in kwargs["metadata"].items() if k != "notes"}}
    out["scale"], out["translate"] = tuple(kwargs["scale"][1:]), tuple(kwargs["translate"][1:])
    if "affine" in kwargs:
        out["affine"] = np.asarray(kwargs["affine"])[1:, 1:]
    return data[t], out, kind


def difference_layer(prepared: PreparedFollowUps, t: int) -> tuple[LayerData, dict[str, Any]]:
    """The difference map at ``t`` (lazy) and its display: PiYG, centred at zero, over the image."""
    data, kwargs, kind = frame_layer(prepared.image, t, DIFFERENCE)
    kwargs["metadata"] = {"time_point": t}
    kwargs.pop("contrast_limits", None)
    limit = prepared.limits[t]
    return (FrameDifference(prepared.image[0], t), kwargs, kind), {
        "colormap": "PiYG", "contrast_limits": (-limit, limit), "opacity": 0.7, "blending": "additive"}


def show_difference(viewer: Any, prepared: PreparedFollowUps, t: int) -> None:
    """Add or update the difference map at ``t`` (no data is read here)."""
    layer, display = difference_layer(prepared, t)
    add_layer_data(viewer, layer, **display)


def show_at_t(viewer: Any, prepared: PreparedFollowUps, t: int, contrast: tuple[float, float] | None) -> None:
    """Add or update the follow-up at ``t`` as a 3D layer (a view of the series' frame)."""
    add_layer_data(viewer, frame_layer(prepared.image, t, AT_T), **_contrast(contrast))


def result_steps(viewer: Any, prepared: PreparedFollowUps, contrast: tuple[float, float] | None
                 ) -> list[Callable[[], object]]:
    """The steps that show a result, each small enough for one event-loop turn: the 4D series (first
    as its first frame when the layer is new), its labels, the difference map and follow-up at the
    last time point (each a worker-built layer where it is new, else an update in place), then the
    last layer appended is made the active one."""
    layers = _new_layers(prepared, contrast)
    appended: list[Layer] = []
    steps: list[Callable[[], object]] = []
    if OUTPUT not in viewer.layers:
        steps.append(lambda: _show(viewer, prepared, OUTPUT, *layers[OUTPUT], appended))
    steps.append(lambda: add_layer_data(viewer, prepared.image, **_contrast(contrast)))
    steps += [lambda name=name: _show(viewer, prepared, name, *layers[name], appended)
              for name in (LABELS, DIFFERENCE, AT_T)]
    steps.append(lambda: _activate_last(viewer, appended))
    return steps


def _new_layers(prepared: PreparedFollowUps, contrast: tuple[float, float] | None
                ) -> dict[str, tuple[LayerData, dict[str, Any]]]:
    """name -> (layer data, display keywords) of each layer a result shows (data not read)."""
    last = len(prepared.image[0]) - 1
    window = _contrast(contrast)
    return {OUTPUT: (frame_layer(prepared.image, 0, OUTPUT), window), LABELS: (prepared.labels, {}),
            DIFFERENCE: difference_layer(prepared, last), AT_T: (frame_layer(prepared.image, last, AT_T), window)}


def _show(viewer: Any, prepared: PreparedFollowUps, name: str, layer: LayerData, display: dict[str, Any],
          appended: list[Layer]) -> None:
    """Layer ``name``: the worker-built one appended (not made active) where the viewer has none of that
    name, else :func:`.common.add_layer_data` (an update in place)."""
    new = prepared.new.pop(name, None)
    if new is None or name in viewer.layers:
        add_layer_data(viewer, layer, **display)
        return
    window = display.get("contrast_limits")
    if window is not None and tuple(new.contrast_limits) != tuple(window):
        new.contrast_limits = window  # the baseline's window changed since Predict
    layers = viewer.layers
    activate = getattr(layers, "_activate_on_insert", None)  # napari's: select each inserted layer
    if activate is not None:
        layers._activate_on_insert = False
    try:
        append_layer(viewer, new)
    finally:
        if activate is not None:
            layers._activate_on_insert = activate
    appended.append(new)


def _activate_last(viewer: Any, appended: list[Layer]) -> None:
    """Make the last layer appended the active one, as napari does for each new layer."""
    if appended and appended[-1] in viewer.layers:
        viewer.layers.selection.active = appended[-1]


def show_in_turns(viewer: Any, steps: list[Callable[[], object]]) -> None:
    """Run ``steps`` on the Qt thread, one per event-loop turn; the garbage collector is held
    (:mod:`.collector`) until the last has run, so that no full collection falls inside them."""
    collector.hold(viewer)
    steps = list(steps)

    def run_next() -> None:
        try:
            steps.pop(0)()
        except BaseException:
            collector.release()
            raise
        if steps:
            next_turn(run_next)
        else:
            collector.release()

    run_next()


def _contrast(limits: tuple[float, float] | None) -> dict[str, Any]:
    return {} if limits is None else {"contrast_limits": limits}


def prepared(task: Generator[Progress, None, FollowUps], contrast: tuple[float, float] | None = None
             ) -> Generator[Progress, None, PreparedFollowUps]:
    """Run ``task`` (in the worker), then :func:`prepare` its result there too (``contrast``: as there)."""
    result = yield from task
    return prepare(result, contrast)
