"""The Longitudinal dock's result as napari layers: prepared in the worker, added across event-loop turns.

Adding a napari layer holds the Qt thread about as long for a 10 x 64 x 64 volume as for a 630 MB
(t, z, y, x) series (its controls, its vispy visual, a redraw; measured, docs/longitudinal.md). What
grew with the data was the dock's own work on the Qt thread, so all of it runs in the worker
(:func:`prepare`): napari's layer data and geometry (:func:`..io.layers.volume_to_layer`:
reorientation, oblique resampling, the display window) and the difference maps' contrast limits.
The difference map is a lazy array (:class:`..tasks.followup.FrameDifference`): napari computes
only the slices it draws. The Qt thread only adds layers, one per event-loop turn
(:func:`show_in_turns`); a new 4D series first arrives as its first frame, then grows to 4D, so
napari's rebuild of the dims sliders has a turn of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io.layers import volume_to_layer
from ..progress import Progress
from ..tasks.followup import FollowUps, FrameDifference
from . import collector
from .common import LayerData, add_layer_data
from .turns import next_turn

OUTPUT = "follow-ups"
LABELS, DIFFERENCE, AT_T = f"{OUTPUT} labels", f"{OUTPUT} difference", f"{OUTPUT} at t"


@dataclass
class PreparedFollowUps:
    """A result and its layers as :func:`..io.layers.volume_to_layer` makes them (4D image and labels);
    ``limits[t]`` = max |frame t - frame 0| (1 where nothing changed), the difference map's half range."""

    result: FollowUps
    image: LayerData
    labels: LayerData
    limits: list[float]


def prepare(result: FollowUps) -> PreparedFollowUps:
    """Everything that reads the series, for the worker thread: layer data + geometry, difference limits."""
    image = volume_to_layer(result.image, OUTPUT)
    labels = volume_to_layer(result.labels, LABELS)
    data = image[0]
    limits = [float(np.abs(FrameDifference(data, t)[...]).max()) or 1.0 for t in range(len(data))]
    return PreparedFollowUps(result, image, labels, limits)


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
    last time point."""
    last = len(prepared.image[0]) - 1
    steps: list[Callable[[], object]] = []
    if OUTPUT not in viewer.layers:
        steps.append(lambda: add_layer_data(viewer, frame_layer(prepared.image, 0, OUTPUT), **_contrast(contrast)))
    steps.append(lambda: add_layer_data(viewer, prepared.image, **_contrast(contrast)))
    steps.append(lambda: add_layer_data(viewer, prepared.labels))
    steps.append(lambda: show_difference(viewer, prepared, last))
    steps.append(lambda: show_at_t(viewer, prepared, last, contrast))
    return steps


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


def prepared(task: Generator[Progress, None, FollowUps]) -> Generator[Progress, None, PreparedFollowUps]:
    """Run ``task`` (in the worker), then :func:`prepare` its result there too."""
    result = yield from task
    return prepare(result)
