"""Family ``anomaly_ae``: a 2D variational autoencoder of normal anatomy, for anomaly maps.

MONAI :class:`~monai.networks.nets.VarAutoEncoder` on axial slices ``(b, 1, *in_shape)`` scaled to
[0, 1] by the image's own 1st/99th percentiles. Trained on phantoms *without* a tumour, it can
only reconstruct what normal anatomy looks like; the anomaly score of a pixel is the absolute
reconstruction error (through the latent mean), Gaussian-smoothed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import compute_roc_auc
from monai.networks.nets import VarAutoEncoder
from scipy import ndimage

from .features import scale_unit

FAMILY = "anomaly_ae"
DEFAULT_NETWORK: dict[str, Any] = {"in_shape": [128, 128], "latent_size": 64, "channels": [16, 32, 64, 64],
                                   "strides": [2, 2, 2, 2]}
NORMALIZATION = {"kind": "percentile", "low": 1.0, "high": 99.0, "per": "image", "range": [0.0, 1.0]}


def build_anomaly_ae(cfg: dict[str, Any]) -> VarAutoEncoder:
    """VarAutoEncoder: (b, 1, y, x) in [0, 1] -> (reconstruction in [0, 1], mu, logvar, z)."""
    c = {**DEFAULT_NETWORK, **cfg}
    return VarAutoEncoder(spatial_dims=2, in_shape=(1, *c["in_shape"]), out_channels=1,
                          latent_size=int(c["latent_size"]), channels=tuple(c["channels"]),
                          strides=tuple(c["strides"]))


@torch.no_grad()
def reconstruct(net: VarAutoEncoder, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Slices (n, y, x) already in [0, 1] at the network's in_shape -> reconstructions (n, y, x)."""
    net.eval()
    out = []
    device = next(net.parameters()).device
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32))[:, None].to(device)
        mu, _ = net.encode_forward(x)
        out.append(net.decode_forward(mu, use_sigmoid=True)[:, 0].float().cpu().numpy())
    return np.concatenate(out)


def anomaly_scores(net: VarAutoEncoder, slices: np.ndarray, smoothing_px: float = 1.0) -> np.ndarray:
    """Axial slices (n, y, x) in [0, 1] (see :func:`scale_unit`), any size -> anomaly scores (n, y, x) float32.

    Each slice is resized to the network's in_shape, reconstructed, and |input - reconstruction|
    is resized back and smoothed in-plane with a Gaussian of ``smoothing_px`` pixels (sigma).
    """
    n, h, w = slices.shape
    in_shape = tuple(int(s) for s in net.in_shape)
    t = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
    small = F.interpolate(t, size=in_shape, mode="bilinear", align_corners=False) if (h, w) != in_shape else t
    rec = torch.from_numpy(reconstruct(net, small[:, 0].numpy()))[:, None]
    if (h, w) != in_shape:
        rec = F.interpolate(rec, size=(h, w), mode="bilinear", align_corners=False)
    err = (t - rec).abs()[:, 0].numpy()
    return ndimage.gaussian_filter(err, (0, smoothing_px, smoothing_px)).astype(np.float32) if smoothing_px > 0 else err


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Voxel-wise area under the ROC curve of ``scores`` for the boolean mask ``positive`` (MONAI)."""
    return float(compute_roc_auc(torch.from_numpy(np.ravel(scores).astype(np.float32)),
                                 torch.from_numpy(np.ravel(positive).astype(np.float32))))


def phantom_tumour_auc(net: VarAutoEncoder, seeds: list[int], styles: list[str], tumour_radius_mm: float = 12.0,
                       smoothing_px: float = 1.0) -> dict[str, float]:
    """AUC of the anomaly scores for the tumour on 2D phantoms (one per seed x style) never seen in training.

    Returns {"auc_<style>": mean AUC over seeds, "auc_mean": mean over all}; shape = the net's in_shape.
    """
    from ..data.phantom import make_phantom

    out: dict[str, float] = {}
    for style in styles:
        aucs = []
        for s in seeds:
            img, lab = make_phantom(seed=s, shape=(1, *net.in_shape), tumour_radius_mm=tumour_radius_mm, style=style)
            aucs.append(roc_auc(anomaly_scores(net, scale_unit(img.data[None])[0], smoothing_px), lab.data == 7))
        out[f"auc_{style}"] = round(float(np.mean(aucs)), 4)
    out["auc_mean"] = round(float(np.mean(list(out.values()))), 4)
    return out
