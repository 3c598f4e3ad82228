"""Synthetic training slices in the styles of target domains, made from the training labels.

Label maps (model classes, (n, y, x) at the synthesis model's grid): the training labels themselves,
elastically deformed copies (:func:`.deform.elastic`) and new maps sampled from a label VAE
(:func:`.deform.vae_sample`). Each map is imaged by a spade model (:class:`..models.synthesizer.Synthesizer`)
in a style that is either

* ``"target"``: encoded from a few unlabelled images of each target domain (one style per image;
  map i of target d gets reference image i mod k). The style encoder reads absolute intensities in
  the model's units, so references are used in their own units when these fit the model's
  normalisation window (same modality, e.g. MR a.u. for an MR model), else their 1st/99th
  percentiles are mapped onto the window (:func:`in_model_units`), or
* ``"prior"``: drawn from the model's style prior (a Gaussian fitted to its training styles; no
  target image needed).

Images are scaled to [0, 1] per slice like the real ones (:func:`..models.features.scale_unit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.volume import Volume
from ..models.features import scale_unit
from ..progress import CancelToken, Progress, Task, run_to_completion
from . import deform
from .segmentation import SegData

STYLE_SOURCES = ("target", "prior")


def label_pool(labels: np.ndarray, plane_spacing: tuple[float, float], seed: int, *, n_deformed: int,
               n_vae: int, vae: Any = None) -> np.ndarray:
    """(n + n_deformed + n_vae, y, x) int64: ``labels`` (n, y, x), elastic copies of them (cycled) and
    label-VAE samples (``vae``: a LabelVAE; none when None). plane_spacing: (rows, cols) mm."""
    spacing = (plane_spacing[1], plane_spacing[0], 5.0)
    rng = np.random.default_rng([seed, 17])
    picks = rng.integers(0, len(labels), n_deformed)
    deformed = [deform.elastic(Volume(labels[p][None].astype(np.uint8), spacing, is_label=True),
                               seed=seed * 100_000 + i).data[0] for i, p in enumerate(picks)]
    parts = [labels.astype(np.int64)] + ([np.stack(deformed).astype(np.int64)] if deformed else [])
    if n_vae and vae is not None:
        sampled = run_to_completion(deform.vae_sample(vae, n=n_vae, seed=seed)).data
        if sampled.shape[1:] != labels.shape[1:]:
            raise InputError(f"The label VAE makes {sampled.shape[1:]} slices; the experiment's grid is "
                             f"{labels.shape[1:]}: use a label VAE trained at the synthesis model's shape.")
        parts.append(sampled.astype(np.int64))
    return np.concatenate(parts)


def in_model_units(image: np.ndarray, norm: dict[str, Any]) -> np.ndarray:
    """An image (any units) for a model whose normalisation window is ``norm`` (lo_value..hi_value): as it
    is when its 1st/99th percentiles lie within the window widened by half its width on each side,
    else linearly mapped so that those percentiles meet the window's ends."""
    lo, hi = float(norm["lo_value"]), float(norm["hi_value"])
    p1, p99 = np.percentile(image, [1, 99])
    margin = 0.5 * (hi - lo)
    if lo - margin <= p1 and p99 <= hi + margin:
        return np.asarray(image, np.float32)
    return (lo + (scale_unit(np.asarray(image)[None])[0]) * (hi - lo)).astype(np.float32)


def target_styles(synth: Any, references: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per target domain, the styles (k, style_dim) of its unlabelled reference images (k, y, x) in their
    own units (see :func:`in_model_units`)."""
    out = []
    for refs in references:
        if len(refs) == 0:
            raise InputError("Target-style synthesis needs at least one unlabelled image of each target domain.")
        unlabelled = np.ones((1, *refs.shape[1:]), np.int64)  # no labels: the whole slice counts as foreground
        out.append(np.stack([synth.encode_style(in_model_units(r, synth.card["normalization"])[None], unlabelled)
                             for r in refs]))
    return out


def prior_styles(synth: Any, n_domains: int, k: int, seed: int) -> list[np.ndarray]:
    """``n_domains`` sets of ``k`` styles (k, style_dim) drawn from the model's style prior (as many images
    as target styles would make, none aimed at a domain)."""
    return [np.stack([synth.random_style(seed * 100_000 + d * k + i) for i in range(k)]) for d in range(n_domains)]


def synthetic_set(synth: Any, labels: np.ndarray, styles: list[np.ndarray], names: dict[int, str],
                  cancel: CancelToken | None = None) -> Task[SegData]:
    """Generator: image every label map (n, y, x) once per entry of ``styles`` (per target domain (k,
    style_dim): :func:`target_styles` or :func:`prior_styles`), map i with style i mod k; n x len(styles) slices."""
    cancel = cancel or CancelToken()
    n_domains = len(styles)
    images, labs = [], []
    for d in range(n_domains):
        for i, lab in enumerate(labels):
            cancel.check()
            images.append(synth.synthesize_slices(lab[None], styles[d][i % len(styles[d])])[0])
            labs.append(lab)
        yield Progress(d + 1, n_domains, f"synthetic images: {(d + 1) * len(labels)} of {n_domains * len(labels)}")
    return SegData(scale_unit(np.stack(images)), np.stack(labs), names)


def load_label_vae(model: str | Path | None, names: dict[int, str]) -> Any:
    """A LabelVAE whose classes are ``names`` (the synthesis model's), or None for ``model=None``."""
    if model is None:
        return None
    from ..models.label_vae import LabelVAE

    vae = LabelVAE(model, device="cpu")
    if vae.label_names != names:
        raise InputError(f"The label VAE '{model}' has classes {vae.label_names}; the synthesis model has {names}.")
    return vae
