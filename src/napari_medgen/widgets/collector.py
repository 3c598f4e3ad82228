"""Keep Python's full garbage collections out of the viewer while medgen jobs run.

A full (generation 2) collection walks every object the collector tracks with the GIL held, so
the Qt thread waits for it whichever thread triggered it. With torch, MONAI and napari loaded
(about 556,000 objects) one took 221-418 ms on a 2-core machine. CPython starts one when the
long-lived objects have grown by a quarter since the last, which the first jobs of a session
(imports, a model loaded, a new layer) regularly do: it was the longest stall of the viewer
heartbeat benchmark's first jobs.

While at least one job holds the collector (:func:`hold` ... :func:`release`; ``run_task`` does
this around every job, the Synthesize dock while live mode is on), the objects that existed when
the first job started are set aside (``gc.freeze``, constant time): full collections walk only the
objects made since (under 1 ms right after the freeze). When the last job ends, ``gc.unfreeze``
(constant time) gives them back and CPython's next full collection, between jobs, walks
everything again, as it would without this module.

Garbage among the set-aside objects waits until the jobs end, with one exception: a layer removed
from a viewer while a job runs (napari layers are freed by the cyclic collector only) is collected
at once, so that its memory comes back; that collection pauses the viewer once, right after the
user's removal (in the next event-loop turn).
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from .turns import next_turn

_holders = 0
_watched: weakref.WeakSet[Any] = weakref.WeakSet()  # layer lists whose removals collect


def held() -> bool:
    """True while at least one job holds the collector."""
    return _holders > 0


def hold(viewer: Any = None) -> None:
    """A job starts: set the existing objects aside (first holder only). viewer: its removed layers
    are collected at once while the collector is held (None: no viewer)."""
    global _holders
    if _holders == 0:
        gc.freeze()
    _holders += 1
    layers = getattr(viewer, "layers", None)
    if layers is not None and layers not in _watched:
        _watched.add(layers)
        layers.events.removed.connect(_on_layer_removed)


def release() -> None:
    """A job ended: the last holder gives the set-aside objects back to the collector."""
    global _holders
    if _holders == 0:
        raise RuntimeError("collector.release() without a matching hold()")
    _holders -= 1
    if _holders == 0:
        gc.unfreeze()


def _on_layer_removed(event: Any = None) -> None:
    """Reclaim a removed layer's memory soon instead of when the jobs end: one full collection, in
    the next event-loop turn (during the removal napari still refers to the layer)."""
    if _holders:
        next_turn(_collect_now)


def _collect_now() -> None:
    if _holders:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
