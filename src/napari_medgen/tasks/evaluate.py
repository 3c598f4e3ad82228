"""Quality of synthetic images: fidelity, diversity, distance to the real distribution, memorisation.

Sets of images are compared as 2D images ``(n, y, x)``; a 3D volume contributes its axial slices.
Metrics (MONAI's implementations):

* paired SSIM / PSNR (where real and synthetic images pair up by file name or index), on images
  scaled to [0, 1] by the real image's 1st/99th percentiles;
* MS-SSIM diversity: mean MS-SSIM between random pairs of synthetic images (lower = more diverse);
* Fréchet distance (FIDMetric) and MMD (MMDMetric, unbiased, Gaussian kernel through random Fourier
  features with the median-distance bandwidth) on features of a pluggable extractor;
* memorisation: each synthetic image's nearest training image (RMS difference of [0, 1]-scaled
  images); those under ``threshold`` are flagged as near-copies.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import LinAlgWarning
from monai.metrics import FIDMetric, MMDMetric, MultiScaleSSIMMetric, PSNRMetric, SSIMMetric

from ..atomic import atomic_write_bytes, atomic_write_figure
from ..errors import InputError
from ..models.features import FeatureExtractor, load_extractor, scale_unit
from ..progress import CancelToken, Progress, Task

ImageSource = str | Path | np.ndarray | Sequence[np.ndarray]
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


@dataclass
class ImageSet:
    """Images (n, y, x) float32, one name per image (file name, ``[z=k]`` for volume slices) and
    groups (n,): the index of the file/array each image came from (the slices of one volume share it)."""

    images: np.ndarray
    names: list[str]
    groups: np.ndarray

    def volumes(self) -> list[np.ndarray]:
        """The images regrouped as one (z, y, x) stack per source volume."""
        return [self.images[self.groups == g] for g in np.unique(self.groups)]


@dataclass
class EvaluationResult:
    """table: metric name -> value; nn_distances (n_synthetic,); near_copies: (synthetic, training, distance)."""

    table: dict[str, float]
    nn_distances: np.ndarray
    near_copies: list[tuple[str, str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_image_set(source: ImageSource, shape: tuple[int, int] | None = None) -> ImageSet:
    """A folder of volumes/images, a path, an array (n, y, x) / (n, z, y, x), or a list of arrays -> ImageSet.

    shape: resize every image to (y, x) (bilinear); default the first image's shape.
    """
    if isinstance(source, (str, Path)):
        arrays, names = _read_folder(Path(source))
    elif isinstance(source, np.ndarray):
        arrays, names = list(source), [f"#{i}" for i in range(len(source))]
    else:
        arrays, names = [np.asarray(a) for a in source], [f"#{i}" for i in range(len(source))]
    images: list[np.ndarray] = []
    out_names: list[str] = []
    groups: list[int] = []
    for g, (a, name) in enumerate(zip(arrays, names)):
        a = np.squeeze(np.asarray(a, dtype=np.float32))
        if a.ndim == 2:
            images.append(a)
            out_names.append(name)
            groups.append(g)
        elif a.ndim == 3:
            images.extend(a)
            out_names.extend(f"{name}[z={k}]" for k in range(len(a)))
            groups.extend([g] * len(a))
        else:
            raise InputError(f"Image '{name}' has shape {a.shape}: expected a 2D image or a 3D volume.")
    if not images:
        raise InputError(f"No images found in {source if isinstance(source, (str, Path)) else 'the given set'}.")
    shape = shape or images[0].shape
    return ImageSet(np.stack([_resize(im, shape) for im in images]).astype(np.float32), out_names, np.asarray(groups))


def _read_folder(folder: Path) -> tuple[list[np.ndarray], list[str]]:
    from ..io.readers import read_volume

    if folder.is_file():
        return [read_volume(folder).data], [folder.name]
    if not folder.is_dir():
        raise InputError(f"'{folder}' is neither a folder nor a file.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name.lower().endswith((".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")))
    if not files:
        raise InputError(f"Folder '{folder}' holds no .nii/.nii.gz/.nrrd/.mha/.mhd files.")
    vols = [read_volume(p) for p in files]
    return [v.data[0] if v.is_time_series else v.data for v in vols], [p.name for p in files]


def _resize(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    if tuple(image.shape) == tuple(shape):
        return image
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


def extract_features(images: np.ndarray, extractor: str | Path | FeatureExtractor = "default",
                     device: str = "cpu") -> np.ndarray:
    """images (n, y, x), or volumes (n, z, y, x) -> features (n, d).

    A 2D extractor given volumes averages its features over each volume's axial slices.
    """
    ext = extractor if isinstance(extractor, FeatureExtractor) else load_extractor(extractor, device)
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and ext.spatial_dims == 2:
        n, z = x.shape[:2]
        return ext(x.reshape(n * z, *x.shape[2:])).reshape(n, z, -1).mean(axis=1)
    return ext(x)


def set_features(images: ImageSet, extractor: FeatureExtractor) -> np.ndarray:
    """Features (n, d): one per image for a 2D extractor, one per source volume for a 3D one (e.g. MedicalNet)."""
    if extractor.spatial_dims == 2:
        return extractor(images.images)
    vols = images.volumes()
    if max(len(v) for v in vols) < 2:
        raise InputError(f"Feature extractor '{extractor.name}' is 3D: it needs volumes, but the set holds 2D images.")
    return np.concatenate([extractor(v[None]) for v in vols])


def frechet_distance(f_real: np.ndarray, f_fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to features (n, d) and (m, d) (MONAI FIDMetric)."""
    if len(f_real) < 2 or len(f_fake) < 2:
        raise InputError("Fréchet distance needs at least 2 images in each set.")
    with warnings.catch_warnings():  # fewer images than feature dimensions: singular covariances are expected
        warnings.simplefilter("ignore", LinAlgWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # MONAI passes scipy's deprecated ``disp``
        fd = FIDMetric()(torch.as_tensor(f_fake, dtype=torch.float64), torch.as_tensor(f_real, dtype=torch.float64))
    return float(fd)


def mmd(f_real: np.ndarray, f_fake: np.ndarray, n_features: int = 1024, seed: int = 0) -> float:
    """Unbiased MMD² with a Gaussian kernel (bandwidth: median pairwise distance of both sets).

    MONAI's MMDMetric on random Fourier features; both sets are subsampled to the smaller size.
    Identical sets give a value near 0 (slightly negative: the estimator is unbiased).
    """
    rng = np.random.default_rng(seed)
    m = min(len(f_real), len(f_fake))
    if m < 2:
        raise InputError("MMD needs at least 2 images in each set.")
    a = np.asarray(f_real, dtype=np.float64)[np.sort(rng.choice(len(f_real), m, replace=False))]
    b = np.asarray(f_fake, dtype=np.float64)[np.sort(rng.choice(len(f_fake), m, replace=False))]
    pooled = np.concatenate([a, b])
    d = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))
    sigma = float(np.median(d[d > 0])) if np.any(d > 0) else 1.0
    w = torch.as_tensor(rng.normal(0, 1 / sigma, (pooled.shape[1], n_features)))
    phase = torch.as_tensor(rng.uniform(0, 2 * np.pi, n_features))

    def rff(x: torch.Tensor) -> torch.Tensor:
        return np.sqrt(2.0 / n_features) * torch.cos(x @ w + phase)

    return float(MMDMetric(y_mapping=rff)(torch.as_tensor(a), torch.as_tensor(b)))


def paired_ssim_psnr(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair SSIM and PSNR (dB) of real/fake images (n, y, x), both scaled by the real image's range."""
    real = np.asarray(real, dtype=np.float32)
    fake = np.asarray(fake, dtype=np.float32)
    if real.shape != fake.shape:
        raise InputError(f"Paired images must have the same shape: real {real.shape}, synthetic {fake.shape}.")
    flat = real.reshape(len(real), -1)
    lo = np.percentile(flat, 1, axis=1)[:, None, None]
    hi = np.percentile(flat, 99, axis=1)[:, None, None]
    scale = np.maximum(hi - lo, 1e-6)
    r = torch.from_numpy(np.clip((real - lo) / scale, 0, 1))[:, None]
    f = torch.from_numpy(np.clip((fake - lo) / scale, 0, 1))[:, None]
    ssim = SSIMMetric(spatial_dims=2, data_range=1.0, win_size=7, reduction="none")(f, r)
    psnr = PSNRMetric(max_val=1.0, reduction="none")(f, r)
    return ssim.reshape(-1).numpy().astype(np.float64), psnr.reshape(-1).numpy().astype(np.float64)


def ms_ssim_diversity(images: np.ndarray, n_pairs: int = 64, seed: int = 0) -> float:
    """Mean MS-SSIM over random distinct pairs of images (n, y, x); lower = more diverse.

    Uses as many MS-SSIM scales (7-pixel window) as the image size allows.
    """
    x = scale_unit(images)
    if len(x) < 2:
        raise InputError("MS-SSIM diversity needs at least 2 synthetic images.")
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and 6 * 2 ** scales < min(x.shape[1:]):
        scales += 1
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales]) / np.sum(MS_SSIM_WEIGHTS[:scales])
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(x), n_pairs)
    j = (i + rng.integers(1, len(x), n_pairs)) % len(x)
    metric = MultiScaleSSIMMetric(spatial_dims=2, data_range=1.0, kernel_size=7, weights=tuple(weights))
    val = metric(torch.from_numpy(x[i])[:, None], torch.from_numpy(x[j])[:, None])
    return float(val.mean())


def memorization(synthetic: np.ndarray, training: np.ndarray, threshold: float = 0.03
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest training image of each synthetic image (both (n, y, x), same y, x).

    Distance: RMS difference of the images scaled to [0, 1] by their own percentiles.
    Returns (distances (n_syn,), index of the nearest training image (n_syn,), flagged (n_syn,) bool
    = distance < threshold).
    """
    s = scale_unit(synthetic).reshape(len(synthetic), -1).astype(np.float64)
    t = scale_unit(training).reshape(len(training), -1).astype(np.float64)
    if s.shape[1] != t.shape[1]:
        raise InputError(f"Synthetic and training images differ in size ({synthetic.shape[1:]} vs {training.shape[1:]}).")
    d2 = (s ** 2).sum(1)[:, None] + (t ** 2).sum(1)[None] - 2 * s @ t.T
    dist = np.sqrt(np.maximum(d2, 0) / s.shape[1])
    nearest = dist.argmin(1)
    nn = dist[np.arange(len(s)), nearest]
    return nn, nearest, nn < threshold


def _pairs(real: ImageSet, fake: ImageSet) -> tuple[np.ndarray, np.ndarray] | None:
    """Indices pairing real and synthetic images: by file name (and slice) for files, by index for
    arrays of the same length; None when they do not pair up."""
    if real.names[0].startswith("#") or fake.names[0].startswith("#"):  # arrays: names are only indices
        if real.names == fake.names:
            return np.arange(len(real.images)), np.arange(len(fake.images))
        return None
    common = [n for n in fake.names if n in set(real.names)]
    if not common:
        return None
    ri = {n: i for i, n in enumerate(real.names)}
    fi = {n: i for i, n in enumerate(fake.names)}
    return np.array([ri[n] for n in common]), np.array([fi[n] for n in common])


def evaluate(real: ImageSource, synthetic: ImageSource, *, training: ImageSource | None = None,
             extractor: str | Path | FeatureExtractor = "default", threshold: float = 0.03,
             csv_path: str | Path | None = None, plot_path: str | Path | None = None, device: str = "cpu",
             seed: int = 0, cancel: CancelToken | None = None) -> Task[EvaluationResult]:
    """Generator: all quality metrics of ``synthetic`` against ``real``; returns an EvaluationResult.

    training: images the generator was trained on, for the memorisation check (default: ``real``).
    csv_path / plot_path: also write the table (CSV) and a figure (PNG), atomically.
    """
    cancel = cancel or CancelToken()
    total = 6
    yield Progress(0, total, "reading images")
    r = load_image_set(real)
    s = load_image_set(synthetic, shape=r.images.shape[1:])
    t = r if training is None else load_image_set(training, shape=r.images.shape[1:])
    table: dict[str, float] = {"n_real": len(r.images), "n_synthetic": len(s.images)}
    notes: list[str] = []
    cancel.check()
    yield Progress(1, total, "paired SSIM / PSNR")
    pairs = _pairs(r, s)
    if pairs is None:
        notes.append("No pairs (names or counts differ): paired SSIM/PSNR skipped.")
    else:
        ssim, psnr = paired_ssim_psnr(r.images[pairs[0]], s.images[pairs[1]])
        finite = psnr[np.isfinite(psnr)]
        table.update(n_pairs=len(ssim), ssim_mean=float(ssim.mean()),
                     psnr_mean_db=float(finite.mean()) if finite.size else float("inf"))
    cancel.check()
    yield Progress(2, total, "MS-SSIM diversity")
    table["ms_ssim_diversity_synthetic"] = ms_ssim_diversity(s.images, seed=seed)
    table["ms_ssim_diversity_real"] = ms_ssim_diversity(r.images, seed=seed)
    cancel.check()
    yield Progress(3, total, "features")
    ext = extractor if isinstance(extractor, FeatureExtractor) else load_extractor(extractor, device)
    f_real, f_fake = set_features(r, ext), set_features(s, ext)
    cancel.check()
    yield Progress(4, total, "Fréchet distance / MMD")
    table["frechet_distance"] = frechet_distance(f_real, f_fake)
    table["mmd"] = mmd(f_real, f_fake, seed=seed)
    cancel.check()
    yield Progress(5, total, "memorisation")
    nn, nearest, flagged = memorization(s.images, t.images, threshold)
    table.update(nn_distance_min=float(nn.min()), nn_distance_median=float(np.median(nn)), near_copies=int(flagged.sum()))
    copies = [(s.names[i], t.names[nearest[i]], float(nn[i])) for i in np.flatnonzero(flagged)]
    result = EvaluationResult(table, nn, copies, notes)
    if csv_path is not None:
        write_csv(result, csv_path)
    if plot_path is not None:
        write_plot(result, plot_path, threshold)
    yield Progress(total, total, "done")
    return result


def table_rows(result: EvaluationResult) -> list[tuple[str, str]]:
    """(metric, formatted value) rows, then one row per flagged near-copy."""
    rows = [(k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in result.table.items()]
    rows += [(f"near-copy: {s}", f"{t} (d={d:.4f})") for s, t, d in result.near_copies]
    return rows


def write_csv(result: EvaluationResult, path: str | Path) -> None:
    """Write metric,value rows (and the flagged near-copies) to ``path`` atomically."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["metric", "value"])
    w.writerows(table_rows(result))
    atomic_write_bytes(path, buf.getvalue().encode())


def figure(result: EvaluationResult, threshold: float | None = None) -> Any:
    """A matplotlib Figure: nearest-training-image distance histogram + the main scores."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.hist(result.nn_distances, bins=30, color="tab:blue")
    if threshold is not None:
        ax1.axvline(threshold, color="tab:red", ls="--", label="near-copy threshold")
        ax1.legend(fontsize=8)
    ax1.set(xlabel="RMS distance to nearest training image", ylabel="synthetic images", title="Memorisation")
    keys = [k for k in ("ssim_mean", "ms_ssim_diversity_synthetic", "ms_ssim_diversity_real") if k in result.table]
    ax2.bar(range(len(keys)), [result.table[k] for k in keys], color="tab:green")
    ax2.set_xticks(range(len(keys)), [k.replace("_", "\n") for k in keys], fontsize=7)
    ax2.set(ylim=(0, 1), title=f"FD {result.table['frechet_distance']:.3g}, MMD {result.table['mmd']:.3g}")
    fig.tight_layout()
    return fig


def write_plot(result: EvaluationResult, path: str | Path, threshold: float | None = None) -> None:
    """Save :func:`figure` as PNG atomically."""
    atomic_write_figure(path, figure(result, threshold))
