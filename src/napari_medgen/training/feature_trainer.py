"""Trainer for the "feature_encoder" family: the default feature extractor for Fréchet distance / MMD.

Data: ``--sample phantom`` draws fresh 2D phantoms each step (random anatomy factors, tumour
radius 0-20 mm, style, noise, bias field, blur); ``--sample brain`` uses the axial slices of the
brain sample (labels 0-3); ``--set also_brain=true`` adds the brain slices to the phantoms.
Each image is degraded at random (additive Gaussian noise sigma 0-0.3 and Gaussian blur sigma
0-2 px, each with probability 1/2, on the [0, 1]-scaled image), then prepared exactly as the
extractor prepares images (:func:`~napari_medgen.models.features.prepare`).

Targets: the fraction of the image covered by each label (phantom labels 0-7, brain labels as
8-11) and the two degradation strengths; loss = MSE of a linear head on the pooled features. The
features thus encode anatomy *and* image quality, which is what FD/MMD should compare.
``--set`` keys: layers, block_inplanes, input_size, also_brain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..device import resolve_device
from ..models.features import FAMILY, build_feature_encoder, prepare, scale_unit
from ..models.store import save_model
from .checkpoint import AttributeState
from .config import TrainConfig, family_settings
from .source import Sources, TrainingSource

N_PHANTOM, N_BRAIN = 8, 4
DEFAULT_NETWORK: dict[str, Any] = {"layers": [1, 1, 1, 1], "block_inplanes": [16, 32, 64, 128], "input_size": 64}
SOURCES = Sources(samples=("phantom", "brain"), folders=None)


def _fractions(labels: np.ndarray, offset: int) -> np.ndarray:
    """Area fraction of each label (12,): phantom labels at 0-7 (offset 0), brain labels at 8-11 (offset 8)."""
    n = N_PHANTOM if offset == 0 else N_BRAIN
    out = np.zeros(N_PHANTOM + N_BRAIN, np.float32)
    out[offset:offset + n] = np.bincount(labels.ravel().astype(np.int64), minlength=n)[:n] / labels.size
    return out


def degrade(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Image (y, x) in [0, 1] -> (degraded image, [noise sigma, blur sigma px])."""
    noise = rng.uniform(0, 0.3) if rng.uniform() < 0.5 else 0.0
    blur = rng.uniform(0, 2.0) if rng.uniform() < 0.5 else 0.0
    out = ndimage.gaussian_filter(image, blur) if blur > 0 else image
    return (out + rng.normal(0, noise, image.shape)).astype(np.float32), np.array([noise, blur], np.float32)


@dataclass(frozen=True)
class FeatureSettings:
    """``--set`` settings of the feature encoder: its ResNet (see DEFAULT_NETWORK) and whether phantom
    training also sees the brain sample."""

    layers: list[int] = field(default_factory=lambda: list(DEFAULT_NETWORK["layers"]))
    block_inplanes: list[int] = field(default_factory=lambda: list(DEFAULT_NETWORK["block_inplanes"]))
    input_size: int = DEFAULT_NETWORK["input_size"]
    also_brain: bool = False


class FeatureEncoderTrainer(AttributeState):
    """One step = a batch of (degraded) slices; regress label fractions and degradation (module doc)."""

    state_attrs = ("net", "head", "opt", "gen")

    def __init__(self, cfg: TrainConfig):
        s = family_settings(FeatureSettings, cfg.extra, FAMILY)
        self.network = {k: getattr(s, k) for k in DEFAULT_NETWORK}
        self.use_phantom = TrainingSource.of(cfg, FAMILY, SOURCES).kind == "phantom"
        self.brain = self._brain_slices() if (not self.use_phantom or s.also_brain) else None
        self.device = resolve_device(cfg.device)
        self.net = build_feature_encoder(self.network)["encoder"].to(self.device)
        self.head = torch.nn.Linear(int(self.network["block_inplanes"][-1]), N_PHANTOM + N_BRAIN + 2).to(self.device)
        self.opt = torch.optim.Adam([*self.net.parameters(), *self.head.parameters()], lr=cfg.lr)
        self.batch_size = cfg.batch_size
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.size = (int(self.network["input_size"]),) * 2
        parts = (["random 2D phantoms"] if self.use_phantom else []) + (["brain sample axial slices"] if self.brain else [])
        self.data_desc = " + ".join(parts)

    @staticmethod
    def _brain_slices() -> tuple[np.ndarray, np.ndarray]:
        """The brain sample's axial slices with a label, images scaled to [0, 1]: (n, y, x) float32, labels."""
        [(img, lab)] = TrainingSource("brain").pairs()
        keep = np.asarray(lab.data).reshape(len(lab.data), -1).max(1) > 0
        return scale_unit(np.asarray(img.data, np.float32)[None])[0][keep], np.asarray(lab.data)[keep]

    def _sample(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """One (y, x) image in [0, 1] and its label fractions (12,), chosen by ``seed``."""
        rng = np.random.default_rng([seed, 11])
        if self.brain is not None and (not self.use_phantom or rng.uniform() < 0.3):
            i = int(rng.integers(len(self.brain[0])))
            return self.brain[0][i], _fractions(self.brain[1][i], N_PHANTOM)
        from ..data.phantom import STYLES, make_phantom

        img, lab = make_phantom(seed=seed, shape=(1, 128, 128), tumour_radius_mm=float(rng.uniform(0, 20)),
                                breathing_phase=float(rng.uniform()), cardiac_phase=float(rng.uniform()),
                                body_scale=float(rng.uniform(0.9, 1.1)), rotation_deg=float(rng.uniform(-10, 10)),
                                style=str(rng.choice(STYLES)), noise=float(rng.uniform(0.005, 0.04)),
                                bias=float(rng.uniform(0, 0.3)))
        return scale_unit(img.data)[0], _fractions(lab.data, 0)

    def _batch(self, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for s in seeds:
            img, frac = self._sample(s)
            x, deg = degrade(img, np.random.default_rng([s, 12]))
            xs.append(x)
            ys.append(np.concatenate([frac * 10, deg]))
        return torch.cat([prepare(x[None], self.size) for x in xs]), torch.from_numpy(np.stack(ys))

    def train_step(self, step: int) -> dict[str, float]:
        self.net.train()
        x, y = self._batch(torch.randint(1_000_000, (self.batch_size,), generator=self.gen).tolist())
        pred = self.head(self.net(x.to(self.device)))
        loss = torch.nn.functional.mse_loss(pred, y.to(self.device))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def preview(self) -> None:
        return None

    @torch.no_grad()
    def heldout_loss(self, n: int = 64) -> float:
        """MSE of the head on n held-out samples (seeds 1,000,000+)."""
        self.net.eval()
        x, y = self._batch(list(range(1_000_000, 1_000_000 + n)))
        return float(torch.nn.functional.mse_loss(self.head(self.net(x.to(self.device))), y.to(self.device)))

    def export(self, path: str | Path, card: dict[str, Any]) -> None:
        card = {**card, "family": FAMILY, "network": self.network,
                "normalization": {"kind": "percentile", "low": 1.0, "high": 99.0, "per": "image", "range": [0.0, 1.0]},
                "shape": list(self.size), "feature_dim": int(self.network["block_inplanes"][-1]),
                "metrics": {**card.get("metrics", {}), "heldout_mse": round(self.heldout_loss(), 5)},
                "training": {**card.get("training", {}), "data": self.data_desc}}
        save_model(path, {"encoder": self.net}, card)
