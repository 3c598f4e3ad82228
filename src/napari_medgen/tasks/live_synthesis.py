"""Live synthesis bookkeeping (napari-free): which label slices changed, and one worker loop that
regenerates them while the user paints.

Edits mark slice indices (axis 0 of a (z, y, x) label array) as dirty in a :class:`DirtySlices`
set. A burst of edits between two computations merges into one request (the newest label
values of every touched slice), so the worker never falls behind the brush and no edited slice
is forgotten. :meth:`LiveSynthesis.loop` is the worker's generator: it waits for dirty slices,
copies their current labels, renders them and yields a :class:`LiveUpdate` (or the
``MedgenError`` a bad edit caused); the GUI writes the update into its image layer.

When a render fits in a frame (median CPU time of the recent ones <= ``INLINE_BUDGET_S``), the GUI may
render an edit itself instead (:meth:`LiveSynthesis.may_render_inline`): a TorchScript call gives
up and retakes the GIL several times, and each retake waits up to Python's switch interval (5 ms)
while the GUI thread runs napari's Python, so on 2 cores a worker's render of a 128 x 128 slice
took about twice its bare time (``benchmarks/live_painting.py``). Inline renders are spaced by at
least their own duration, and only taken while the worker is idle with nothing pending, so the GUI
thread spends at most half its time rendering and results are never applied out of order.

:class:`StyleSource` and :func:`style_vector` turn the Synthesize dock's style choices (random
with a seed, like a reference image, a named vendor style, a blend of two) into one style vector.
:class:`SliceRenderer` is the live path's renderer: the generator traced with TorchScript, whose
compiled graph runs without holding Python's GIL, so a busy GUI thread does not slow it down.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, MedgenError
from ..io.volume import Volume
from ..models import spade
from ..models.tracing import freeze_trace

INLINE_BUDGET_S = 0.025  # a render this fast may run on the GUI thread (the GUI keeps >= 40 frames/s)
_RECENT = 5  # renders whose median decides


class DirtySlices:
    """Thread-safe set of slice indices waiting to be regenerated; adding wakes the worker."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: set[int] = set()
        self._closed = False
        self.requests = 0  # how many times add() was called (for statistics and tests)

    def add(self, indices: Iterable[int]) -> None:
        new = {int(i) for i in indices}
        if not new:
            return
        with self._cond:
            self._pending |= new
            self.requests += 1
            self._cond.notify()

    def take(self, timeout: float | None = None) -> list[int] | None:
        """Wait up to ``timeout`` s for dirty slices; return them sorted and clear the set (None if none)."""
        with self._cond:
            if not self._pending and not self._closed:
                self._cond.wait(timeout)
            if not self._pending:
                return None
            out, self._pending = sorted(self._pending), set()
            return out

    def close(self) -> None:
        """Wake the waiting worker for good (the loop ends)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def empty(self) -> bool:
        """True when no slice waits (without taking anything)."""
        with self._cond:
            return not self._pending


def paint_event_slices(atoms: Iterable[Any], axis: int = 0) -> set[int]:
    """Indices along ``axis`` touched by a napari Labels ``events.paint`` value (its history atoms).

    An atom is either a masked edit with a ``slice_key`` (tuple of slices) or a
    ``(indices, old_values, new_values)`` tuple of index arrays.
    """
    out: set[int] = set()
    for atom in atoms:
        key = getattr(atom, "slice_key", None)
        if key is not None:
            k = key[axis]
            out.update(range(k.start, k.stop) if isinstance(k, slice) else [int(k)])
        else:
            out.update(int(i) for i in np.unique(np.asarray(atom[0][axis])))
    return out


@dataclass
class LiveUpdate:
    """Regenerated slices: ``images[i]`` (y, x) float32 belongs at slice ``indices[i]``; seconds spent."""

    indices: list[int]
    images: np.ndarray
    seconds: float


class LiveSynthesis:
    """Regenerates dirty slices of a live label array with ``render`` ((n, y, x) int -> (n, y, x) float).

    labels: the (z, y, x) or (y, x) array the user paints (read, never written; a 2D array is one
    slice). render is called from the worker thread only.
    """

    def __init__(self, labels: np.ndarray, render: Callable[[np.ndarray], np.ndarray]):
        if labels.ndim not in (2, 3):
            raise InputError(f"Live synthesis works on a 2D or 3D label map, not {labels.ndim}D "
                             f"(shape {labels.shape}); pick one time point first.")
        self.labels = labels
        self.render = render
        self.dirty = DirtySlices()
        self.computations = 0
        self.recent: deque[float] = deque(maxlen=_RECENT)  # CPU seconds of the latest renders (one torch thread)
        self.in_flight = 0  # worker renders started and not yet delivered() by the GUI
        self._inline_free_at = 0.0  # perf_counter time before which no inline render starts

    @property
    def n_slices(self) -> int:
        return 1 if self.labels.ndim == 2 else self.labels.shape[0]

    def request(self, indices: Iterable[int]) -> None:
        """Mark slices dirty (out-of-range indices are ignored)."""
        self.dirty.add(i for i in indices if 0 <= i < self.n_slices)

    def stop(self) -> None:
        self.dirty.close()

    def compute(self, indices: list[int]) -> LiveUpdate:
        """Render the current labels of ``indices`` now (copied first, so painting may go on)."""
        t0, cpu0 = time.perf_counter(), time.thread_time()
        lab = self.labels[None] if self.labels.ndim == 2 else self.labels[indices]
        images = np.asarray(self.render(np.array(lab, copy=True)), dtype=np.float32)
        self.computations += 1
        self.recent.append(time.thread_time() - cpu0)  # its own CPU time: what it would cost inline
        return LiveUpdate(indices, images, time.perf_counter() - t0)

    def may_render_inline(self) -> bool:
        """Whether the caller (the GUI thread, the only one that requests) may :meth:`compute` an edit
        itself now: renders' CPU time fits ``INLINE_BUDGET_S``, no worker render is pending or undelivered, and
        the last inline render ended at least its own duration ago."""
        return (len(self.recent) >= 3 and statistics.median(self.recent) <= INLINE_BUDGET_S
                and self.in_flight == 0 and self.dirty.empty and time.perf_counter() >= self._inline_free_at)

    def delivered(self) -> None:
        """The GUI has applied one item the worker yielded (a LiveUpdate or MedgenError)."""
        self.in_flight = max(0, self.in_flight - 1)

    def compute_inline(self, indices: list[int]) -> LiveUpdate:
        """:meth:`compute` on the calling (GUI) thread, spacing the next inline render by this one's time."""
        update = self.compute(indices)
        self._inline_free_at = time.perf_counter() + update.seconds
        return update

    def loop(self, poll_s: float = 0.05) -> Generator[LiveUpdate | MedgenError | None, None, None]:
        """Worker generator: yields a LiveUpdate per computation, the MedgenError of a failed one,
        or None every ``poll_s`` s while idle (so the thread can be asked to quit); ends on stop().
        The GUI calls :meth:`delivered` after applying each LiveUpdate or MedgenError."""
        while not self.dirty.closed:
            indices = self.dirty.take(poll_s)
            if indices is None:
                yield None
                continue
            self.in_flight += 1  # until the GUI calls delivered(): inline renders wait, so order holds
            try:
                yield self.compute(indices)
            except MedgenError as exc:
                yield exc


@dataclass
class StyleSource:
    """One style choice. kind: "random" (with ``seed``), "mean", "vendor" (``name``) or "like"
    (encode ``image``; its body chooses the slices, ``Synthesizer.encode_style``)."""

    kind: str = "random"
    seed: int = 0
    name: str = ""
    image: Volume | None = None


def style_vector(synth: Any, a: StyleSource, b: StyleSource | None = None, t: float = 0.0) -> np.ndarray:
    """Style vector (style_dim,) of ``a``, blended towards ``b`` by ``t`` in [0, 1] (b unused at t = 0).

    synth: a models.synthesizer.Synthesizer. Encoding a reference image runs its style encoder, so
    call this from a worker thread.
    """
    if not 0.0 <= t <= 1.0:
        raise InputError(f"The style blend must be between 0 and 1, got {t}.")
    va = _source_vector(synth, a)
    if b is None or t == 0.0:
        return va
    return synth.interpolate(va, _source_vector(synth, b), t)


def _source_vector(synth: Any, src: StyleSource) -> np.ndarray:
    if src.kind == "random":
        return synth.random_style(src.seed)
    if src.kind == "mean":
        return synth.mean_style()
    if src.kind == "vendor":
        return synth.resolve_style(f"vendor:{src.name}")
    if src.kind == "like":
        if src.image is None:
            raise InputError("Style 'like this image' needs a reference image layer.")
        return synth.encode_style(src.image)
    raise InputError(f"Unknown style kind {src.kind!r} (random, mean, vendor, like).")


class _Decode(torch.nn.Module):
    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, onehot: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(onehot, z)


class SliceRenderer:
    """The user's label slices (n, rows, cols) -> images (n, rows, cols) float32 with a Synthesizer and a style.

    plan: the spade.SlicePlan of the label volume (resampling/padding to the model's input).
    mapping: the user's values -> the model's classes (a data.label_mapping.LabelMapping; None: the
    slices hold model classes). The generator's decode is traced once
    (:func:`..models.tracing.freeze_trace`) for one slice at a time; a value the mapping does not
    cover, or an unknown class, raises InputError naming both sides.
    """

    def __init__(self, synth: Any, plan: Any, style: np.ndarray, mapping: Any = None):
        self.synth, self.plan, self.mapping = synth, plan, mapping
        self.style = torch.as_tensor(np.asarray(style, dtype=np.float32), device=synth.device).reshape(1, -1)
        example = torch.zeros(1, synth.n_classes, *synth.slice_shape, device=synth.device)
        # None: eager Synthesizer.synthesize_slices (where TorchScript is unavailable)
        self.net: Any = freeze_trace(_Decode(synth.generator), example, self.style)

    @torch.inference_mode()
    def __call__(self, labels: np.ndarray) -> np.ndarray:
        if self.mapping is not None:
            labels = self.mapping.apply(labels, "The painted label map", self.synth.label_names, self.synth.n_classes)
        padded = spade.to_model(labels, self.plan, nearest=True)
        if self.net is None:
            return spade.from_model(self.synth.synthesize_slices(padded, self.style[0].cpu().numpy()), self.plan)
        self.synth.check_labels(labels)
        model_in = torch.from_numpy(padded.astype(np.int64))
        onehot = F.one_hot(model_in.to(self.synth.device), self.synth.n_classes).movedim(-1, 1).float()
        out = torch.cat([self.net(onehot[i:i + 1], self.style) for i in range(len(onehot))])
        return spade.from_model(self.synth.to_image(out), self.plan)
