"""The contrast of a zero-mean-texture spade generator, refitted in closed form on its training slices.

With ``zero_mean_texture`` (:mod:`..models.spade`) a label's mean intensity in a generated image is
exactly the style's linear offset ``W z + b`` (``label_style``). Gradient steps move W and b as slowly
as every other weight; at export they are refitted: for each label, a ridge regression of the label's
mean intensity in each training slice (normalised units) on that slice's encoded style (the encoder's
mean). A vendor's mean style then paints that vendor's mean contrast. Training slices only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch

from ..data.label_stats import label_sums

MIN_PIXELS = 20  # a label counts in a slice when it covers at least this many pixels


def slice_class_means(images: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice label means of ``images`` (n, y, x) under integer ``labels`` (n, y, x) ->
    (means (n, n_classes), present (n, n_classes) bool: the label covers >= MIN_PIXELS pixels)."""
    means = np.zeros((len(images), n_classes))
    present = np.zeros((len(images), n_classes), bool)
    for i, (image, lab) in enumerate(zip(images, labels)):
        counts, sums = label_sums(image, lab, n_classes)
        present[i] = counts >= MIN_PIXELS
        means[i] = sums / np.maximum(counts, 1)
    return means, present


def fit_label_offsets(mu: np.ndarray, images: np.ndarray, labels: np.ndarray, weight: np.ndarray,
                      bias: np.ndarray, ridge: float = 1e-3,
                      to_signal: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Refit ``label_style`` (weight (n_classes, z_dim), bias (n_classes,)) so that W mu_i + b predicts each
    label's mean in slice i (least squares, ``ridge`` x the slice count on W). ``mu`` (n, z_dim) encoded
    styles of ``images`` (n, y, x), normalised, with ``labels`` (n, y, x). ``to_signal`` maps recorded
    means to the noise-free signal the generator must draw (a Rician noise floor lifts dark labels).
    A label present in fewer than z_dim + 1 slices keeps its weights. Returns new arrays."""
    n_classes, z_dim = weight.shape
    means, present = slice_class_means(images, labels, n_classes)
    if to_signal is not None:
        means = to_signal(means)
    new_w, new_b = np.array(weight, np.float64), np.array(bias, np.float64)
    for c in range(n_classes):
        rows = present[:, c]
        if rows.sum() <= z_dim:
            continue
        z = mu[rows].astype(np.float64)
        centre, target = z.mean(0), means[rows, c]
        zc = z - centre
        w = np.linalg.solve(zc.T @ zc + ridge * len(z) * np.eye(z_dim), zc.T @ (target - target.mean()))
        new_w[c], new_b[c] = w, target.mean() - centre @ w
    return new_w, new_b


def style_with_contrast(z: np.ndarray, weight: np.ndarray, bias: np.ndarray, target: np.ndarray,
                        ridge: float = 1e-4) -> np.ndarray:
    """The style nearest ``z`` (z_dim,) whose per-label offsets ``weight @ z + bias`` match ``target``
    (n_classes,; NaN: no constraint), by a ridge-regularised least-squares step from ``z``."""
    known = ~np.isnan(target)
    w = np.asarray(weight, np.float64)[known]
    residual = target[known] - (w @ z + np.asarray(bias, np.float64)[known])
    step = np.linalg.solve(w.T @ w + ridge * np.eye(w.shape[1]), w.T @ residual)
    return np.asarray(z, np.float64) + step


def refitted_generator(generator: torch.nn.Module, mu: np.ndarray, images: np.ndarray, labels: np.ndarray,
                       to_signal: Callable[[np.ndarray], np.ndarray] | None = None) -> torch.nn.Module:
    """A copy of a zero-mean-texture ``generator`` whose ``label_style`` is refitted by :func:`fit_label_offsets`
    on training slices ``images``/``labels`` (n, y, x; normalised) with encoder means ``mu`` (n, z_dim)."""
    out = copy.deepcopy(generator)
    layer = out.label_style
    w, b = fit_label_offsets(mu, images, labels, layer.weight.detach().cpu().numpy(), layer.bias.detach().cpu().numpy(),
                             to_signal=to_signal)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w, dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(b, dtype=layer.bias.dtype))
    return out
