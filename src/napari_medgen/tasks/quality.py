"""Quality against trivial baselines: the metrics of the quality ledger (``benchmarks/quality.py``).

Every function takes stacks of 2D images ``(n, y, x)`` in one intensity unit (a model's output
de-normalised, or raw) and masks ``(n, y, x)`` bool of the region that counts (brain, body).
Images are compared after scaling to [0, 1] by a *reference* (the real images): each real slice's
1st/99th percentiles for paired metrics, the pooled real set's for unpaired ones, so a model that
changes the contrast is not rescaled into agreement.

Baselines: :func:`lut_painting` (each label painted with a class mean) and its Gaussian-smoothed
version (:func:`smooth`, with the width chosen on training data by :func:`best_smoothing`);
:func:`shuffle_in_mask` (the real intensities, no structure); blurred real images (:func:`smooth`);
copies of training images (:func:`nearest_copies`). A :class:`Row` records one comparison with
the metric's sense, so that its margin is positive exactly when the model wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.metrics.regression import KernelType, compute_ssim_and_cs
from scipy import ndimage, stats

from ..data.label_stats import label_means
from ..errors import InputError
from .evaluate import memorization
from ..models.synthesizer import Synthesizer

SSIM_WINDOW = 7  # pixels, Gaussian sigma 1.5: the window of tasks.evaluate.paired_ssim_psnr
Sets = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # training images, labels; held-out images, labels

MIN_FOREGROUND = 0.05  # slices with less labelled area than this are not measured


@dataclass(frozen=True)
class Row:
    """One ledger line. sense: "higher" / "lower" is better, or "near1" (a ratio whose ideal is 1)."""

    model: str
    metric: str
    baseline: str
    model_value: float
    baseline_value: float
    sense: str

    @property
    def margin(self) -> float:
        """Positive when the model beats the baseline (in the metric's own units)."""
        m, b = self.model_value, self.baseline_value
        if self.sense == "higher":
            return m - b
        if self.sense == "lower":
            return b - m
        if self.sense == "near1":
            return abs(b - 1.0) - abs(m - 1.0)
        raise ValueError(f"unknown sense {self.sense!r}")


def _check(real: np.ndarray, other: np.ndarray, mask: np.ndarray | None = None) -> None:
    if real.shape != other.shape or (mask is not None and mask.shape != real.shape):
        raise InputError(f"Images to compare must share one shape (n, y, x): {real.shape}, {other.shape}"
                         + (f", mask {mask.shape}" if mask is not None else "") + ".")


def unit_scale(reference: np.ndarray, *images: np.ndarray, pooled: bool = False) -> list[np.ndarray]:
    """Scale ``reference`` and ``images`` (n, y, x) by the reference's 1st/99th percentiles (per slice, or
    over the whole set with ``pooled``) -> [reference, *images] float32, not clipped."""
    ref = np.asarray(reference, dtype=np.float32)
    flat = ref.reshape(1 if pooled else len(ref), -1)
    lo = np.percentile(flat, 1, axis=1).reshape(-1, 1, 1)
    hi = np.percentile(flat, 99, axis=1).reshape(-1, 1, 1)
    scale = np.maximum(hi - lo, 1e-6)
    return [((np.asarray(x, dtype=np.float32) - lo) / scale).astype(np.float32) for x in (ref, *images)]


def ssim_in_mask(real: np.ndarray, fake: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """SSIM map (7-pixel Gaussian window, data range 1) averaged inside ``mask``, per slice -> (n,).

    Both images are scaled by the real slice's 1st/99th percentiles and clipped to [0, 1]; the map
    covers the pixels whose whole window lies in the image.
    """
    _check(real, fake, mask)
    r, f = (np.clip(x, 0.0, 1.0) for x in unit_scale(real, fake))
    ssim_map, _ = compute_ssim_and_cs(torch.from_numpy(f)[:, None], torch.from_numpy(r)[:, None], spatial_dims=2,
                                      kernel_size=(SSIM_WINDOW,) * 2, kernel_sigma=(1.5, 1.5), data_range=1.0,
                                      kernel_type=KernelType.GAUSSIAN)
    h = SSIM_WINDOW // 2
    inner = np.asarray(mask, bool)[:, h:-h, h:-h]
    values = ssim_map[:, 0].numpy()
    counts = inner.reshape(len(inner), -1).sum(1)
    if np.any(counts == 0):
        raise InputError("A slice has no pixel inside its mask: leave it out before measuring SSIM.")
    return (values * inner).reshape(len(inner), -1).sum(1) / counts


def lut_painting(labels: np.ndarray, means: Sequence[float]) -> np.ndarray:
    """Each pixel of integer ``labels`` painted with ``means[label]`` -> float32 image of the same shape."""
    table = np.asarray(means, dtype=np.float32)
    if labels.max() >= len(table) or not np.all(np.isfinite(table[np.unique(labels)])):
        raise InputError(f"The lookup table has no finite value for some label of {np.unique(labels).tolist()}.")
    return table[labels]


def class_means(images: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean intensity per class over a training set, (n_classes,) (NaN for an absent class)."""
    return label_means(np.asarray(images, np.float64), np.asarray(labels), n_classes)


def smooth(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each slice (n, y, x) with ``sigma`` pixels (no blur across slices)."""
    return ndimage.gaussian_filter(np.asarray(images, np.float32), sigma=(0.0, sigma, sigma))


def best_smoothing(images: np.ndarray, labels: np.ndarray, means: Sequence[float], mask: np.ndarray,
                   sigmas: Sequence[float] = (0.5, 0.75, 1.0, 1.5, 2.0)) -> float:
    """The blur (pixels) of the lookup-table painting with the best in-mask SSIM on *training* slices."""
    painted = lut_painting(labels, means)
    scores = [float(ssim_in_mask(images, smooth(painted, s), mask).mean()) for s in sigmas]
    return float(sigmas[int(np.argmax(scores))])


def shuffle_in_mask(images: np.ndarray, mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each slice's in-mask pixels permuted at random (the histogram kept, the structure gone)."""
    rng = np.random.default_rng(seed)
    out = np.array(images, dtype=np.float32, copy=True)
    for im, m in zip(out, np.asarray(mask, bool)):
        im[m] = rng.permutation(im[m])
    return out


def foreground(images: np.ndarray, reference: np.ndarray, threshold: float = 0.15, erode: int = 2,
               fill: bool = True) -> np.ndarray:
    """Masks (n, y, x) of the object in images without labels (samples): above ``threshold`` of the
    reference set's pooled 1st-99th percentile range, holes filled (``fill``), eroded by ``erode``
    pixels so the object's outline does not count as texture."""
    _, x = unit_scale(reference, images, pooled=True)
    out = np.zeros(x.shape, bool)
    for i, im in enumerate(x):
        m = ndimage.binary_fill_holes(im > threshold) if fill else im > threshold
        out[i] = ndimage.binary_erosion(m, iterations=erode) if erode else m
    return out


def background_level(images: np.ndarray, reference: np.ndarray, margin: int = 3) -> float:
    """Mean |intensity| of the pixels more than ``margin`` pixels from each image's own object
    (:func:`foreground`, not eroded), in the reference set's pooled 1st-99th percentile range: 0 for a
    black background, the grain's level otherwise."""
    _, x = unit_scale(reference, images, pooled=True)
    object_ = foreground(images, reference, erode=0)
    outside = ~ndimage.binary_dilation(object_, structure=np.ones((1, 3, 3), bool), iterations=margin)
    if not outside.any():
        raise InputError("The objects fill the images: no background to measure.")
    return float(np.abs(x[outside]).mean())


def background_mask(labels: np.ndarray, margin: int = 3) -> np.ndarray:
    """Label-0 pixels at least ``margin`` pixels away from every labelled pixel, per slice (n, y, x)."""
    labelled = np.asarray(labels) > 0
    if margin > 0:  # (scipy dilates until nothing changes when iterations is 0)
        labelled = ndimage.binary_dilation(labelled, structure=np.ones((1, 3, 3), bool), iterations=margin)
    return ~labelled


def tissue_interior(labels: np.ndarray, erode: int = 2) -> np.ndarray:
    """Labelled pixels (n, y, x) at least ``erode`` + 1 pixels inside their own label's region: texture
    within tissues, not the edges between them."""
    lab = np.asarray(labels)
    out = np.zeros(lab.shape, bool)
    for value in np.unique(lab[lab > 0]):
        out |= ndimage.binary_erosion(lab == value, structure=np.ones((1, 3, 3), bool), iterations=erode)
    return out


def gradient_magnitude(images: np.ndarray, mask: np.ndarray, reference: np.ndarray) -> float:
    """Mean in-mask gradient magnitude (per pixel) of images scaled by the reference set's pooled range."""
    _, x = unit_scale(reference, images, pooled=True)
    gy, gx = np.gradient(x, axis=(1, 2))
    m = np.asarray(mask, bool)
    if not m.any():
        raise InputError("The masks are empty: no pixel to measure the gradient on.")
    return float(np.hypot(gy, gx)[m].mean())


def histogram_distance(a: np.ndarray, mask_a: np.ndarray, b: np.ndarray, mask_b: np.ndarray,
                       reference: np.ndarray) -> float:
    """Wasserstein-1 distance between the in-mask intensity distributions of two sets, both scaled by
    the reference set's pooled range (units: that range)."""
    _, xa, xb = unit_scale(reference, a, b, pooled=True)
    va, vb = xa[np.asarray(mask_a, bool)], xb[np.asarray(mask_b, bool)]
    if va.size == 0 or vb.size == 0:
        raise InputError("A set has no pixel inside its masks: no intensity distribution to compare.")
    return float(stats.wasserstein_distance(va, vb))


REAL_DRAWS = 50  # draws of training images behind the ledger's real-vs-real histogram distance (seed 0)


def drawn_histogram_distances(pool: np.ndarray, target: np.ndarray, n: int, draws: int, seed: int = 0,
                              threshold: float = 0.15, replace: bool = False) -> np.ndarray:
    """(draws,) histogram distances (:func:`histogram_distance`) of ``draws`` random sets of ``n`` images
    of ``pool`` to ``target``, each over its pixels above ``threshold`` of the target's range
    (:func:`foreground`, not eroded or filled), in the target's pooled range: how far apart real sets
    of ``n`` images are, the reference of the ledger's histogram rows. ``replace=False``: distinct images
    (at most the whole pool); ``replace=True``: each image drawn independently, as a model that had
    learnt the pool's distribution exactly would draw them (repeats allowed, no stratification)."""
    rng = np.random.default_rng(seed)
    whole = lambda x: foreground(x, target, threshold, erode=0, fill=False)  # noqa: E731
    size = n if replace else min(n, len(pool))
    picks = (pool[rng.choice(len(pool), size, replace=replace)] for _ in range(draws))
    return np.array([histogram_distance(x, whole(x), target, whole(target), target) for x in picks])


def nearest_copies(queries: np.ndarray, training: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training image nearest each query (``tasks.evaluate.memorization``): (copies (n, y, x), distances (n,))."""
    dist, nearest, _ = memorization(queries, training)
    return np.asarray(training)[nearest], dist


def masked_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pearson r between ``a`` and ``b`` inside each slice's mask -> (n,)."""
    _check(a, b, mask)
    out = []
    for x, y, m in zip(a, b, np.asarray(mask, bool)):
        if m.sum() < 3:
            raise InputError("A slice has fewer than 3 pixels in its mask: no correlation to measure.")
        out.append(float(np.corrcoef(x[m], y[m])[0, 1]))
    return np.asarray(out)


def radial_power_spectrum(images: np.ndarray, n_bins: int = 16) -> np.ndarray:
    """Mean radially binned power spectrum of (n, y, x) images (each minus its mean) -> (n_bins,),
    bins equally spaced in spatial frequency from 0 to Nyquist (the DC bin excluded)."""
    x = np.asarray(images, np.float64)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(x)) ** 2).mean(0)
    fy = np.fft.fftfreq(x.shape[1])[:, None]
    fx = np.fft.fftfreq(x.shape[2])[None, :]
    radius = np.hypot(fy, fx) / 0.5
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.digitize(radius, edges[1:-1])
    keep = (radius > 0) & (radius <= 1.0)
    return np.bincount(idx[keep], weights=power[keep], minlength=n_bins) / np.maximum(
        np.bincount(idx[keep], minlength=n_bins), 1)


def spade_brain_sets(card: dict[str, Any]) -> Sets:
    """Training and held-out slices (raw intensities, the model's grid) of the data a spade brain card
    was trained on: the held-out slabs of ``data.brain.axial_split`` when the card names them
    (``training.held_out_slabs_mm``), else every 5th axial slice of the shipped 2 mm sample."""
    from ..data.normalize import denormalize
    from ..data.samples import brain_sample
    from ..training import spade_data as st

    shape = tuple(card["shape"])
    if card.get("training", {}).get("held_out_slabs_mm"):
        train, held = st.brain_split_1mm(shape)
        spec = card["normalization"]
        return denormalize(train.images, spec), train.labels, denormalize(held.images, spec), held.labels
    every = st.BRAIN_HOLDOUT_EVERY
    pair = [(*brain_sample(), "")]
    out = []
    for held_out in (False, True):
        raw, lab, _, _ = st.volumes_to_slices(pair, shape, keep=lambda i, h=held_out: (i % every == every // 2) == h)
        out += [raw, lab]
    return out[0], out[1], out[2], out[3]


def enough(labels: np.ndarray) -> np.ndarray:
    """Which slices of ``labels`` (n, y, x) hold at least MIN_FOREGROUND labelled area: (n,) bool."""
    return (labels > 0).reshape(len(labels), -1).mean(1) >= MIN_FOREGROUND


def label_to_image_rows(name: str, synth: Synthesizer, sets: Sets, style: np.ndarray, where: str,
                        tag: str = "") -> list[Row]:
    """The ledger's label -> image rows on ``sets`` (training and held-out slices).

    Fidelity: SSIM inside the labelled region and the class means of the model's noise-free image
    (given ``style``) against plain and smoothed lookup-table paintings with the training slices'
    class means (noise-free too: independent noise in the two images would only lower SSIM).
    Realism, on the image as the user gets it (with the card's acquisition noise, if any): the
    in-tissue gradient magnitude relative to the real slices' (a lookup table has none) and the
    background's level against the real background's.
    """
    train_ok, held_ok = enough(sets[1]), enough(sets[3])
    train_img, train_lab, held_img, held_lab = sets[0][train_ok], sets[1][train_ok], sets[2][held_ok], sets[3][held_ok]
    means = class_means(train_img, train_lab, synth.n_classes)
    sigma = best_smoothing(train_img, train_lab, means, train_lab > 0)
    mask = held_lab > 0
    clean = synth.synthesize_slices(held_lab, style, noise_seed=None)
    shown = synth.synthesize_slices(held_lab, style) if synth.noise is not None else clean
    lut, lut_smooth = lut_painting(held_lab, means), smooth(lut_painting(held_lab, means), sigma)
    model_ssim = float(ssim_in_mask(held_img, clean, mask).mean())
    metric = f"SSIM in {where}{tag} ({len(held_img)} held-out slices)"
    rows = [Row(name, metric, "lookup table", model_ssim, float(ssim_in_mask(held_img, lut, mask).mean()), "higher"),
            Row(name, metric, f"lookup table, blur {sigma:g} px", model_ssim,
                float(ssim_in_mask(held_img, lut_smooth, mask).mean()), "higher")]
    real_means = class_means(held_img, held_lab, synth.n_classes)
    scale = float(np.nanmax(real_means))
    err = lambda m: float(np.nanmax(np.abs(m[1:] - real_means[1:])) / scale)  # noqa: E731
    # contrast and background against bars (a lookup table matches both by construction: its figures are
    # shown in the metric)
    rows.append(Row(name, f"worst class-mean error{tag} / brightest class (lookup table {err(means):.3f})",
                    "bar (realistic contrast)", err(class_means(clean, held_lab, synth.n_classes)), 0.05, "lower"))
    interior = tissue_interior(held_lab)
    real_grad = gradient_magnitude(held_img, interior, held_img)
    rows.append(Row(name, f"in-tissue gradient{tag} / real's", f"lookup table, blur {sigma:g} px",
                    gradient_magnitude(shown, interior, held_img) / real_grad,
                    gradient_magnitude(lut_smooth, interior, held_img) / real_grad, "near1"))
    bg = background_mask(held_lab)  # as dark as the real background (black, or the scanner's noise floor)
    excess = abs(float(np.abs(shown[bg]).mean()) - float(np.abs(held_img[bg]).mean())) / scale
    rows.append(Row(name, f"background level off the real's{tag} / brightest class", "bar (1 %)",
                    excess, 0.01, "lower"))
    return rows
