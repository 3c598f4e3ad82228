"""Keep Python's full garbage collections out of the viewer: during medgen jobs and after them.

A full (generation 2) collection walks every object the collector tracks with the GIL held, so
the Qt thread waits for it whichever thread triggered it. With torch, MONAI and napari loaded
(about 556,000 objects) one took 221-418 ms on a 2-core machine, 402-876 ms under load. CPython
starts one when the long-lived objects have grown by a quarter since the last full collection.

When a job starts (:func:`hold` ... :func:`release`; ``run_task`` does this around every job, the
Synthesize dock while live mode is on), the objects that exist are set aside (``gc.freeze``,
constant time): full collections walk only the objects made since (under 1 ms right after the
freeze). They stay set aside when the job ends. Giving them back (``gc.unfreeze``) would not be
free: CPython counts the long-lived objects at each full collection, the ones during the job
counted only the new ones, so the growth-by-a-quarter rule fired 3-7 s after every job and walked
the whole heap on the Qt thread (402-876 ms, measured with the earlier design that unfroze).

What is set aside is only walked again when napari-medgen decides:

* the next job first collects the objects made since the last freeze (the garbage among them;
  a cheap walk) and then sets aside the rest;
* a layer removed from a watched viewer (napari layers live in reference cycles, so only the
  cyclic collector frees them) triggers one full collection of everything in the next event-loop
  turn, then everything alive is set aside again: the layer's memory comes back at once, and so
  does any other cyclic garbage among the set-aside objects. napari itself runs a full collection
  on every layer removal (its canvas calls ``gc.collect()``), so the user already waits there;
* :func:`give_back` returns everything to the collector (a host ending its session; the tests).

The cost: an object that was alive when a job started and later became garbage *in a reference
cycle* is freed at the next layer removal, not at the next automatic collection. Objects freed by
reference counting (most, and every array whose last reference goes) are freed at once as always.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from .turns import next_turn

_holders = 0
_set_aside = False  # objects are frozen by this module
_collect_pending = False  # a full collection is waiting for its event-loop turn
_watched: weakref.WeakSet[Any] = weakref.WeakSet()  # layer lists whose removals collect


def held() -> bool:
    """True while at least one job holds the collector."""
    return _holders > 0


def set_aside() -> bool:
    """True while objects are set aside from the collector (from the first job on)."""
    return _set_aside


def hold(viewer: Any = None) -> None:
    """A job starts. The first holder collects the objects made since the last freeze (skipped the
    first time: that walk would be the whole heap) and sets aside everything alive. viewer: its
    removed layers are freed at once (None: no viewer)."""
    global _holders, _set_aside
    if _holders == 0:
        if _set_aside:
            gc.collect()  # only the objects made since the last freeze are walked
        gc.freeze()
        _set_aside = True
    _holders += 1
    layers = getattr(viewer, "layers", None)
    if layers is not None and layers not in _watched:
        _watched.add(layers)
        layers.events.removed.connect(_on_layer_removed)


def release() -> None:
    """A job ended; what was set aside stays so (see the module's docstring)."""
    global _holders
    if _holders == 0:
        raise RuntimeError("collector.release() without a matching hold()")
    _holders -= 1


def give_back() -> None:
    """Return every set-aside object to the collector and collect the garbage among them (one full
    collection; no job may hold the collector)."""
    global _set_aside
    if _holders:
        raise RuntimeError("collector.give_back() while a job holds the collector")
    if _set_aside:
        gc.unfreeze()
        _set_aside = False
        gc.collect()


def _on_layer_removed(event: Any = None) -> None:
    """Reclaim a removed layer's memory soon: one full collection in the next event-loop turn
    (during the removal napari still refers to the layer); several removals share one."""
    global _collect_pending
    if _set_aside and not _collect_pending:
        _collect_pending = True
        next_turn(_collect_everything)


def _collect_everything() -> None:
    global _collect_pending
    _collect_pending = False
    if _set_aside:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
