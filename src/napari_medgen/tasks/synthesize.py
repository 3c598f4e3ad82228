"""Label-to-image synthesis of whole volumes with a trained "spade" model (:func:`synthesize`).

:func:`synthesize` is the task generator used by the dock widget and ``medgen synthesize``: it
cuts a label volume into slices along the through-plane axis (the plan of
:class:`..models.synthesizer.Synthesizer`, the model's handle, which also serves live painting),
synthesises them in batches and returns an image Volume with exactly the labels' geometry.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.label_mapping import LabelMapping
from ..data.label_stats import label_means
from ..errors import InputError
from ..io.volume import Volume
from ..models import spade
from ..models.synthesizer import Style, Synthesizer, label_map_name
from ..progress import CancelToken, Progress
from . import memory

def synthesize(labels: Volume, model: str | Path | Synthesizer, *, style: Style = "random", seed: int = 0,
               slices: Sequence[int] | None = None, batch: int = 16, device: str = "auto",
               mapping: LabelMapping | None = None,
               cancel: CancelToken | None = None) -> Generator[Progress, None, Volume]:
    """Synthesise an image for a 3D label Volume; yields Progress (preview = the partial image Volume).

    style: "random" (drawn with ``seed``), "mean", "vendor:NAME", or a style vector. slices:
    indices along the chosen slice axis to synthesise (None = all); the others stay 0.
    mapping: the user's label values -> the model's classes (default: :meth:`Synthesizer.mapping_for`,
    proposed from label names; InputError when a value has no class).
    Returns a float32 image Volume with the labels' exact geometry; ``metadata["notes"]`` lists
    resampling notes, ``metadata["synthesis"]`` the model, style, slice axis and label mapping.
    """
    synth = model if isinstance(model, Synthesizer) else Synthesizer(model, device)
    if labels.is_time_series:
        raise InputError("Synthesis needs a 3D label map; this one is a 4D time series: pick one time point.")
    if mapping is None:
        mapping = synth.mapping_for(labels)
    classes = mapping.apply(labels.data, label_map_name(labels), synth.label_names, synth.n_classes)
    plan = synth.check_labels(labels.with_data(classes))
    z = synth.resolve_style(style, seed)
    lab = spade.cut(classes, plan.axis)
    n = lab.shape[0]
    todo = list(range(n)) if slices is None else sorted({int(i) for i in slices})
    if any(i < 0 or i >= n for i in todo):
        raise InputError(f"Slice indices must be in 0..{n - 1} along axis {plan.axis}; got {todo}.")
    out = np.zeros(labels.data.shape, dtype=np.float32)
    out_slices = spade.cut(out, plan.axis)  # a view: writing it fills ``out``
    batch = memory.synthesis_batch(synth, labels.data.shape, max(1, int(batch)))  # fewer slices if memory is short
    total = len(todo)
    yield Progress(0, total, f"synthesising {total} slices")
    for start in range(0, total, batch):
        if cancel is not None:
            cancel.check()
        idx = todo[start:start + batch]
        model_in = spade.to_model(lab[idx].astype(np.int64), plan, nearest=True)
        with torch.inference_mode():
            images = synth._forward(torch.from_numpy(model_in), z, noise_seed=seed * 100_003 + start)
        out_slices[idx] = spade.from_model(images, plan)
        done = min(start + batch, total)
        yield Progress(done, total, f"slice {done}/{total}",
                       preview=Volume(out, labels.spacing, labels.origin, labels.direction))
    meta: dict[str, Any] = {"notes": list(plan.notes), "synthesis": {
        "model": synth.path, "style": style if isinstance(style, str) else "vector",
        "style_vector": z.tolist(), "seed": seed, "slice_axis": plan.axis,
        "label_mapping": {str(v): c for v, c in sorted(mapping.table.items())}}}
    return Volume(out, labels.spacing, labels.origin, labels.direction.copy(), False, meta)


# --- Quality measures (tests, benchmarks/synthesis.py and the model cards use these) ---------------

def style_transfer_correlation(synth: Synthesizer, reference: tuple[Volume, Volume], target_labels: Volume,
                               compare: tuple[Volume, Volume] | None = None) -> float:
    """Pearson r across labels between the reference image's per-label means and those of an image
    synthesised for ``target_labels`` with the style encoded from the reference (labels present in both).

    compare: correlate with this (image, labels) pair's means instead of the reference's (a control).
    """
    from ..progress import run_to_completion

    style = synth.encode_style(*reference)
    fake = run_to_completion(synthesize(target_labels, synth, style=style))
    cmp_image, cmp_labels = compare or reference
    a = label_means(np.asarray(cmp_image.data, np.float64), cmp_labels.data, synth.n_classes)
    b = label_means(fake.data.astype(np.float64), target_labels.data, synth.n_classes)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1])
