"""Anomaly maps: how badly a model of normal anatomy reconstructs each voxel of an image.

The default model (``sample_data/models/anomaly_ae``) is a VAE trained on tumour-free 2D thorax
phantoms; its score is the smoothed absolute reconstruction error of the image scaled to [0, 1]
(1st/99th percentiles of the whole volume). The heat map is a Volume with the input's geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from ..io.volume import Volume
from ..models.anomaly_ae import FAMILY, anomaly_scores, roc_auc
from ..models.features import scale_unit
from ..models.families import load_model
from ..progress import CancelToken, Progress, Task

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "sample_data" / "models" / "anomaly_ae"


def anomaly_map(image: Volume, model: str | Path = DEFAULT_MODEL, *, smoothing_mm: float = 3.0,
                device: str = "cpu", chunk: int = 8, cancel: CancelToken | None = None) -> Task[Volume]:
    """Generator: per-voxel anomaly score of a 3D image (z, y, x); returns a float32 Volume, same geometry.

    smoothing_mm: in-plane Gaussian sigma in mm. chunk: axial slices per step (progress/cancel).
    """
    cancel = cancel or CancelToken()
    if image.is_label:
        raise InputError("The anomaly map needs an intensity image, not a label map.")
    if image.is_time_series:
        raise InputError(f"The anomaly map works on one 3D frame; the image is a 4D series {image.data.shape}.")
    modules, card = load_model(model, device)
    if card["family"] != FAMILY:
        raise ModelError(f"Model '{model}' is a '{card['family']}' model; anomaly maps need an '{FAMILY}' model.")
    net = modules["model"]
    x = scale_unit(np.asarray(image.data, dtype=np.float32)[None])[0]
    sigma_px = smoothing_mm / float(np.mean(image.spacing[:2]))
    n = len(x)
    scores = np.zeros_like(x)
    for i in range(0, n, chunk):
        yield Progress(i, n, f"reconstructing slices {i}..{min(n, i + chunk) - 1}")
        scores[i:i + chunk] = anomaly_scores(net, x[i:i + chunk], sigma_px)
        cancel.check()
    yield Progress(n, n, "done")
    name = Path(str(model)).stem
    return image.with_data(scores, is_label=False, anomaly_model=name, smoothing_mm=smoothing_mm,
                           units="absolute reconstruction error of the [0, 1]-scaled image")


def tumour_auc(scores: Volume | np.ndarray, labels: Volume | np.ndarray, label: int = 7) -> float:
    """Voxel-wise ROC AUC of ``scores`` for voxels of ``labels == label`` against all other voxels."""
    s = np.asarray(scores.data if isinstance(scores, Volume) else scores)
    lab = np.asarray(labels.data if isinstance(labels, Volume) else labels)
    if s.shape != lab.shape:
        raise InputError(f"Scores {s.shape} and labels {lab.shape} differ in shape.")
    positive = lab == label
    if not positive.any() or positive.all():
        raise InputError(f"The label map has no voxel (or only voxels) of label {label}: no AUC can be computed.")
    return roc_auc(s, positive)
