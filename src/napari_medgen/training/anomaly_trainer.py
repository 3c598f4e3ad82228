"""Trainer for the "anomaly_ae" family: a VAE of normal anatomy (no tumour) on 2D axial slices.

Data (:data:`SOURCES`): ``--sample phantom`` draws a fresh batch of tumour-free 2D phantoms every step
(seeds below 1,000,000, random breathing/cardiac phase, body scale, rotation, style, noise and bias
field); or ``--images DIR``: every axial slice of every volume in the folder (assumed normal).
Loss: L1 reconstruction + kl_weight * KL / pixels. ``--set`` keys: styles (list), latent_size,
channels, strides, in_shape, kl_weight. At export the tumour AUC on 2D phantoms with a 12 mm
tumour (seeds 1,000,000+, never seen) is measured per style and written into the card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..models.anomaly_ae import (
    DEFAULT_NETWORK,
    FAMILY,
    NORMALIZATION,
    build_anomaly_ae,
    phantom_tumour_auc,
    reconstruct,
)
from ..models.features import scale_unit
from ..models.store import save_model
from .checkpoint import AttributeState
from .losses import gaussian_kl
from .config import TrainConfig, family_settings
from .source import Sources, TrainingSource

HELDOUT_SEED = 1_000_000
SOURCES = Sources(samples=("phantom",), folders="images")


def normal_phantom(seed: int, shape: tuple[int, int], styles: list[str]) -> np.ndarray:
    """One tumour-free 2D phantom (y, x) scaled to [0, 1], anatomy and rendering drawn from ``seed``."""
    from ..data.phantom import make_phantom

    r = np.random.default_rng([seed, 7])
    img, _ = make_phantom(seed=seed, shape=(1, *shape), tumour_radius_mm=0.0, breathing_phase=float(r.uniform()),
                          cardiac_phase=float(r.uniform()), body_scale=float(r.uniform(0.9, 1.1)),
                          rotation_deg=float(r.uniform(-10, 10)), style=str(r.choice(styles)),
                          noise=float(r.uniform(0.01, 0.04)), bias=float(r.uniform(0.0, 0.3)))
    return scale_unit(img.data)[0]


@dataclass(frozen=True)
class AnomalySettings:
    """``--set`` settings of the anomaly autoencoder: its network (see DEFAULT_NETWORK), the phantom
    styles it sees (default: all) and the KL weight."""

    in_shape: list[int] = field(default_factory=lambda: list(DEFAULT_NETWORK["in_shape"]))
    latent_size: int = DEFAULT_NETWORK["latent_size"]
    channels: list[int] = field(default_factory=lambda: list(DEFAULT_NETWORK["channels"]))
    strides: list[int] = field(default_factory=lambda: list(DEFAULT_NETWORK["strides"]))
    styles: list[str] | None = None
    kl_weight: float = 0.01


class AnomalyAETrainer(AttributeState):
    """One optimisation step = a batch of normal slices through the VAE (see module docstring)."""

    state_attrs = ("net", "opt", "gen")

    def __init__(self, cfg: TrainConfig):
        from ..data.phantom import STYLES

        s = family_settings(AnomalySettings, cfg.extra, FAMILY)
        self.network = {k: getattr(s, k) for k in DEFAULT_NETWORK}
        self.shape = tuple(int(v) for v in self.network["in_shape"])
        self.styles = list(s.styles or STYLES)
        source = TrainingSource.of(cfg, FAMILY, SOURCES)
        self.slices = None if source.kind == "phantom" else self._folder_slices(source)
        self.device = resolve_device(cfg.device)
        self.net = build_anomaly_ae(self.network).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.kl_weight = s.kl_weight
        self.batch_size = cfg.batch_size
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.data_desc = (f"tumour-free 2D phantoms, styles {self.styles}" if self.slices is None
                          else f"{len(self.slices)} axial slices of {source.images}")

    def _folder_slices(self, source: TrainingSource) -> torch.Tensor:
        """Every axial slice of the folder's volumes, each volume scaled to [0, 1], resized to the input shape."""
        stacks = [torch.from_numpy(scale_unit(img.data[None].astype(np.float32))[0]) for img, _ in source.volumes()]
        return torch.cat([F.interpolate(s[:, None], size=self.shape, mode="bilinear", align_corners=False)
                          for s in stacks])

    def _batch(self) -> torch.Tensor:
        if self.slices is not None:
            return self.slices[torch.randint(len(self.slices), (self.batch_size,), generator=self.gen)]
        seeds = torch.randint(HELDOUT_SEED, (self.batch_size,), generator=self.gen).tolist()
        return torch.from_numpy(np.stack([normal_phantom(s, self.shape, self.styles) for s in seeds]))[:, None]

    def train_step(self, step: int) -> dict[str, float]:
        self.net.train()
        x = self._batch().to(self.device)
        rec, mu, logvar, _ = self.net(x)
        l1 = (rec - x).abs().mean()
        kl = gaussian_kl(mu, logvar) / x[0].numel()
        loss = l1 + self.kl_weight * kl
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "l1": l1.item(), "kl": kl.item()}

    def preview(self) -> np.ndarray:
        """A fixed held-out normal phantom and its reconstruction side by side, (y, 2x) in [0, 1]."""
        x = normal_phantom(HELDOUT_SEED, self.shape, self.styles)
        return np.concatenate([x, reconstruct(self.net, x[None])[0]], axis=1)

    def export(self, path: str | Path, card: dict[str, Any]) -> None:
        metrics = phantom_tumour_auc(self.net, list(range(HELDOUT_SEED, HELDOUT_SEED + 4)), self.styles)
        card = {**card, "family": FAMILY, "network": self.network, "normalization": NORMALIZATION,
                "shape": list(self.shape), "voxel_mm": [3.0, 3.0, 5.0] if self.slices is None else None,
                "metrics": {**card.get("metrics", {}), **metrics,
                            "auc_protocol": "voxel-wise ROC AUC of smoothed |x - recon| for a 12 mm tumour, "
                                            f"2D phantoms seeds {HELDOUT_SEED}..{HELDOUT_SEED + 3} per style"},
                "training": {**card.get("training", {}), "data": self.data_desc}}
        save_model(path, {"model": self.net}, card)
