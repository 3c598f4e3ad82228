"""What a latent direction changes: phantom factor estimates of generated samples, their correlation with
walks along each direction, and how well a VAE reconstructs real data.

Generated samples: (B, 1 + C, H, W) from the model's ``decode`` (image channel, then label probabilities).
Directions: :class:`.directions.Directions`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..models.latent_handle import decode, sample_latents
from ..progress import CancelToken, Progress
from .directions import Directions, walk

FACTOR_ESTIMATES = {
    "tumour size": "tumour area (cm²)",
    "breathing": "lung area incl. tumour (cm²)",
    "heart size": "LV blood-pool area (cm²)",
    "body size": "body area (cm²)",
    "rotation": "body principal-axis angle (degrees)",
    "style": "contrast pattern: r(per-label medians, vendor A's means) - r(..., vendor B's means)",
}


def phantom_factors(generated: np.ndarray, pixel_mm: float) -> dict[str, np.ndarray]:
    """Estimate the phantom's factors of generated samples (B, 1 + C, H, W) -> {factor: (B,)}.

    Uses the phantom's own estimator (:func:`napari_medgen.data.phantom.estimate_factors`) on the
    generated label map (argmax) of each sample, seen as one 1 mm slice so that volumes in ml are
    areas in cm² x 0.1. See :data:`FACTOR_ESTIMATES`; each estimate follows its own factor on true
    phantoms and none of the others (tests/tasks/test_directions.py checks this).
    """
    from ..data.phantom import STYLE_TABLES, estimate_factors
    from ..io.volume import Volume

    table_a, table_b = (np.array([STYLE_TABLES[s][k][0] for k in range(1, 8)]) for s in ("mr_vendor_a", "mr_vendor_b"))

    labels = generated[:, 1:].argmax(1).astype(np.uint8)
    out: dict[str, list[float]] = {k: [] for k in FACTOR_ESTIMATES}
    for img, lab in zip(generated[:, 0], labels, strict=True):
        f = estimate_factors(Volume(lab[None], spacing=(pixel_mm, pixel_mm, 1.0), is_label=True))
        medians = np.array([np.median(img[lab == k]) if (lab == k).any() else np.nan for k in range(1, 8)])
        ok = np.isfinite(medians)
        out["tumour size"].append(f["tumour_volume_ml"] * 10)
        out["breathing"].append(f["lung_volume_ml"] * 10)
        out["heart size"].append(f["lv_volume_ml"] * 10)
        out["body size"].append(f["body_area_cm2"])
        out["rotation"].append(f["rotation_deg"])
        out["style"].append(float(np.corrcoef(medians[ok], table_a[ok])[0, 1] - np.corrcoef(medians[ok], table_b[ok])[0, 1])
                            if ok.sum() >= 3 else 0.0)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def disentanglement(model: nn.Module, directions: Directions, pixel_mm: float, *, n_bases: int = 12,
                    alphas: np.ndarray | None = None, seed: int = 0, static: float = 0.1,
                    cancel: CancelToken | None = None) -> Generator[Progress, None, tuple[np.ndarray, list[str]]]:
    """Correlation between walking each direction and each phantom factor.

    For each direction, ``n_bases`` random latents are walked over ``alphas`` (std, default -3..3
    in 7 steps); the Pearson r between alpha and each factor estimate is computed within walks
    (each walk's mean removed, then pooled). A factor that barely moves along a direction (its
    within-walk spread below ``static`` x its spread over 200 random samples of the model) gets
    r = 0: the correlation of a near-constant is dominated by tiny systematic drifts, not by change.
    Returns (r (k, n_factors), factor names).
    """
    cancel = cancel or CancelToken()
    alphas = np.linspace(-3, 3, 7) if alphas is None else np.asarray(alphas, dtype=np.float64)
    names = list(FACTOR_ESTIMATES)
    population = phantom_factors(decode(model, sample_latents(model, 200, seed + 1)), pixel_mm)
    spread = np.array([np.nanstd(population[n]) for n in names])
    bases = sample_latents(model, n_bases, seed).numpy()
    table = np.zeros((len(directions.vectors), len(names)))
    for k in range(len(directions.vectors)):
        cancel.check()
        xs, ys = [], {n: [] for n in names}
        for z in bases:
            f = phantom_factors(walk(model, z, directions, k, alphas), pixel_mm)
            xs.append(alphas - alphas.mean())
            for n in names:
                ys[n].append(f[n] - f[n].mean())
        x = np.concatenate(xs)
        for j, n in enumerate(names):
            y = np.nan_to_num(np.concatenate(ys[n]))
            moves = y.std() > static * spread[j]
            table[k, j] = float(np.corrcoef(x, y)[0, 1]) if moves and y.std() > 1e-12 else 0.0
        yield Progress(k + 1, len(directions.vectors), f"measured direction {k + 1}")
    return table, names


def dominated(table: np.ndarray, strong: float = 0.7, weak: float = 0.3) -> list[tuple[int, int]]:
    """(direction, factor) pairs where |r| >= strong for that factor and <= weak for all others."""
    out = []
    for k, row in enumerate(np.abs(table)):
        j = int(row.argmax())
        if row[j] >= strong and np.all(np.delete(row, j) <= weak):
            out.append((k, j))
    return out


@torch.inference_mode()
def reconstruction_quality(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 64) -> dict[str, Any]:
    """How well a VAE reproduces real data: encode images (N, H, W) in [0, 1], decode the posterior means.

    Returns {"dice": {class: mean Dice over the images whose true map holds it}, "psnr_db": mean PSNR
    of the decoded image (peak 1), "n_images": N}; labels (N, H, W) integer classes.
    """
    from .usefulness import dice_per_class

    if not hasattr(model, "encode"):
        raise InputError("The reconstruction check needs a VAE (a model with an encoder).")
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None]
    out = torch.cat([model.decode(model.encode(x[i:i + batch])[0]) for i in range(0, len(x), batch)]).numpy()
    per_class = dice_per_class(out[:, 1:].argmax(1), np.asarray(labels), out.shape[1] - 1)
    dice = {str(c + 1): round(float(d), 4) for c, d in enumerate(per_class) if np.isfinite(d)}
    mse = ((out[:, 0] - np.asarray(images)) ** 2).mean(axis=(1, 2))
    psnr = float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))
    return {"dice": dice, "psnr_db": round(psnr, 2), "n_images": len(x)}
