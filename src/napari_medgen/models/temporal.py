"""Family "temporal": a 2D image+labels encoder-decoder whose latent space holds an explicit time direction.

After Temp-GAN (small scale): a slice x_0 (B, 1, H, W), intensities in [0, 1], is encoded to a spatial
latent z_0 (B, C, H/4, W/4) plus skip features; the follow-up at time t (in the model's time steps)
is ``decode(z_0 + t * d, skips)``, d a learned (C,) vector added at every latent position. Output of
``decode``: (B, 1 + K, H, W) raw values: channel 0 is the image logit (sigmoid -> [0, 1]), channels
1..K label logits (softmax over K classes, class 0 = background).

A temporal discriminator (MONAI ``PatchDiscriminator``) judges 3 consecutive frames stacked as
channels (image and tracked-structure probability of each: 6 channels). It is used in training only.

``bank`` (module "bank", buffers ``keys`` (N, C) and ``steps`` (N, C)): spatially pooled latents of
training baselines and their mean latent displacement per time step, for manifold extrapolation.

:class:`TemporalModel` (a loaded model and its card), :func:`invert`, :func:`walk`,
:func:`progression_speed` and :func:`calibrate_rate` are the slice-level operations that the
follow-up task (tasks/longitudinal.py) and the trainer share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.nets import PatchDiscriminator
from torch import nn

from ..errors import ModelError
from .store import load_card, load_family, resolve_model


class TemporalAE(nn.Module):
    """Encoder-decoder with a learned time direction ``direction`` (C,)."""

    def __init__(self, n_classes: int, size: int = 128, latent_channels: int = 16, channels: tuple[int, int] = (16, 32)):
        super().__init__()
        c1, c2 = channels
        self.n_classes, self.size, self.latent_channels = n_classes, size, latent_channels
        self.config = {"n_classes": n_classes, "size": size, "latent_channels": latent_channels,
                       "channels": [c1, c2]}
        self.enc1 = Convolution(2, 1, c1, strides=2)  # H/2
        self.enc2 = Convolution(2, c1, c2, strides=2)  # H/4
        self.to_latent = nn.Sequential(ResidualUnit(2, c2, c2), Convolution(2, c2, latent_channels, conv_only=True))
        self.from_latent = ResidualUnit(2, latent_channels, c2)
        self.up1 = Convolution(2, c2, c2, strides=2, is_transposed=True, kernel_size=3, output_padding=1)  # H/2
        self.up2 = Convolution(2, c2 + c1, c1, strides=2, is_transposed=True, kernel_size=3, output_padding=1)  # H
        self.head = nn.Sequential(Convolution(2, c1 + 1, c1), Convolution(2, c1, 1 + n_classes, conv_only=True))
        # unit-variance start: a zero start stays near zero (the skips let the decoder ignore a tiny step)
        self.direction = nn.Parameter(torch.randn(latent_channels))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, 1, H, W) in [0, 1] -> (z (B, C, H/4, W/4), skips (x, features at H/2))."""
        h1 = self.enc1(x)
        return self.to_latent(self.enc2(h1)), (x, h1)

    def move(self, z: torch.Tensor, t: torch.Tensor | float, direction: torch.Tensor | None = None) -> torch.Tensor:
        """z + t * direction; t a float or (B,) tensor; direction (C,) or (B, C) (default: the learned one)."""
        d = self.direction if direction is None else direction
        d = d.reshape(-1, self.latent_channels, 1, 1)
        t = torch.as_tensor(t, dtype=z.dtype, device=z.device).reshape(-1, 1, 1, 1)
        return z + t * d

    def decode(self, z: torch.Tensor, skips: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """z (B, C, H/4, W/4) and the baseline's skips -> raw output (B, 1 + K, H, W)."""
        x, h1 = skips
        h = self.up1(self.from_latent(z))
        h = self.up2(torch.cat([h, h1], 1))
        return self.head(torch.cat([h, x], 1))


class ProgressionBank(nn.Module):
    """Known training progressions in latent space: keys (N, C) pooled baseline latents, steps (N, C)."""

    def __init__(self, n: int, latent_channels: int):
        super().__init__()
        self.register_buffer("keys", torch.zeros(n, latent_channels))
        self.register_buffer("steps", torch.zeros(n, latent_channels))

    def neighbour_step(self, key: torch.Tensor, k: int) -> torch.Tensor:
        """key (B, C) -> mean displacement per time step of the k nearest progressions, (B, C)."""
        dist = torch.cdist(key, self.keys)
        idx = dist.topk(min(k, len(self.keys)), largest=False).indices  # (B, k)
        return self.steps[idx].mean(1)


def make_temporal_discriminator(channels: int = 16) -> nn.Module:
    """Patch discriminator over 3 frames x (image, tracked probability) = 6 channels (B, 6, H, W)."""
    return PatchDiscriminator(spatial_dims=2, channels=channels, in_channels=6, num_layers_d=2, norm="INSTANCE")


def build_temporal(cfg: dict[str, Any]) -> dict[str, nn.Module]:
    cfg = dict(cfg)
    bank_size = int(cfg.pop("bank_size", 0))
    modules: dict[str, nn.Module] = {"model": TemporalAE(**cfg)}
    if bank_size:
        modules["bank"] = ProgressionBank(bank_size, int(cfg.get("latent_channels", 16)))
    return modules


@dataclass
class TemporalModel:
    """A loaded "temporal" model: modules, card and the facts the follow-up task needs from it."""

    modules: dict[str, nn.Module]
    card: dict[str, Any]
    name: str = ""

    @classmethod
    def load(cls, path: str | Path) -> TemporalModel:
        """A temporal model by path or by shipped name (e.g. "temporal_phantom")."""
        path = resolve_model(path)
        family = load_card(path)["family"]
        if family != "temporal":
            raise ModelError(f"Model '{path}' is a '{family}' model; synthetic follow-ups need a 'temporal' model.")
        modules, card = load_family(path, "temporal", build_temporal)
        return cls(modules, card, Path(path).name.removesuffix(".json").removesuffix(".safetensors"))

    @property
    def net(self) -> TemporalAE:
        return self.modules["model"]  # type: ignore[return-value]

    @property
    def size(self) -> int:
        return int(self.card["shape"][0])

    @property
    def pixel_mm(self) -> float:
        return float(self.card["voxel_mm"][0])

    @property
    def tracked(self) -> int:
        return int(self.card.get("tracked_label", 7))

    @property
    def tracked_name(self) -> str:
        return str(self.card.get("label_names", {}).get(str(self.tracked), f"label {self.tracked}"))

    @property
    def modality(self) -> str:
        """The card's modality, e.g. "MR magnitude (a.u., >= 0)" (the shipped models')."""
        return str(self.card.get("modality", "MR magnitude (a.u., >= 0)"))


def invert(tm: TemporalModel, x: torch.Tensor, y: torch.Tensor | None, refine_steps: int
           ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Latent z (1, C, S/4, S/4) and skips of slice x (1, 1, S, S): the encoder's, then ``refine_steps``
    Adam steps on z against x (and its labels y (1, S, S), when given)."""
    net = tm.net
    with torch.no_grad():
        z0, skips = net.encode(x)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(refine_steps):
        with torch.enable_grad():
            raw = net.decode(z, skips)
            loss = F.l1_loss(torch.sigmoid(raw[:, :1]), x)
            if y is not None:
                loss = loss + F.cross_entropy(raw[:, 1:], y[:, 0] if y.ndim == 4 else y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return z.detach(), skips


@torch.no_grad()
def decode_at(tm: TemporalModel, z: torch.Tensor, skips: tuple[torch.Tensor, ...], times: list[float],
              direction: torch.Tensor | None = None) -> torch.Tensor:
    """Decode z moved to each of ``times`` along ``direction`` (default: the learned one): (T, 1 + K, S, S) raw."""
    n = len(times)
    zt = tm.net.move(z.repeat(n, 1, 1, 1), torch.tensor(times), None if direction is None else direction.repeat(n, 1))
    return tm.net.decode(zt, tuple(s.repeat(n, 1, 1, 1) for s in skips))


def walk(tm: TemporalModel, x: torch.Tensor, y: torch.Tensor | None, times: list[float], method: str, k: int,
         refine_steps: int) -> torch.Tensor:
    """Invert slice x (1, 1, S, S) (labels y (1, S, S) optional) and decode it at ``times``: (T, 1 + K, S, S) raw.

    method "direction": the learned time direction; "manifold": the mean step of the k nearest bank entries.
    """
    z, skips = invert(tm, x, y, refine_steps)
    direction = None
    if method == "manifold":
        if "bank" not in tm.modules:
            raise ModelError("This model has no bank of training progressions: use method 'direction'.")
        with torch.no_grad():
            direction = tm.modules["bank"].neighbour_step(z.mean((2, 3)), k)
    return decode_at(tm, z, skips, times, direction)


SPEED_GRID = tuple(2 ** (i / 4) for i in range(-8, 9))  # candidate speeds 0.25..4 (model steps per true step), x1.19 apart


def progression_speed(tm: TemporalModel, images: torch.Tensor, labels: torch.Tensor, refine_steps: int = 20
                      ) -> tuple[torch.Tensor, float]:
    """One known progression: its baseline's pooled latent (C,) and its speed along the learned direction.

    images (T, S, S) in [0, 1] and labels (T, S, S) of one training series, frame 0 = baseline. The
    baseline is inverted as follow-up prediction inverts it; the speed is the value in SPEED_GRID
    whose walk z0 + speed * t * direction best matches the series' tracked area over t = 1..T-1
    (least squares on log areas). A series without the tracked structure gets speed 1.
    """
    z, skips = invert(tm, images[:1, None].float(), labels[:1].long(), refine_steps)
    key = z.mean((2, 3))[0]
    true_area = (labels[1:] == tm.tracked).flatten(1).sum(1).float()
    if not (labels[0] == tm.tracked).any() or not (true_area > 0).all():
        return key, 1.0
    steps = torch.arange(1, len(labels), dtype=torch.float32)
    times = [float(v * t) for v in SPEED_GRID for t in steps]
    raw = decode_at(tm, z, skips, times)
    area = (raw[:, 1:].argmax(1) == tm.tracked).flatten(1).sum(1).float().reshape(len(SPEED_GRID), -1)
    err = ((torch.log(area + 1) - torch.log(true_area + 1)[None]) ** 2).sum(1)
    return key, float(SPEED_GRID[int(err.argmin())])


def normalize_slice(image: np.ndarray) -> np.ndarray:
    """Intensities -> [0, 1] by the 0.5-99.5 percentile range, as the follow-up task maps a baseline."""
    lo, hi = np.percentile(image[np.isfinite(image)], [0.5, 99.5])
    return np.clip((image - lo) / float(max(hi - lo, 1e-6)), 0.0, 1.0).astype(np.float32)


def calibrate_rate(tm: TemporalModel, series: list[tuple[np.ndarray, np.ndarray]], steps: int = 2,
                   refine_steps: int = 20) -> dict[str, Any]:
    """Model time steps per true time step, fitted on calibration series (never the evaluation ones).

    series: (images, labels) pairs (T, S, S) on the model's grid, frame 0 = baseline, T >= ``steps`` + 1.
    Each baseline (labels given) is walked at rate 1; the tracked structure's log area ratio to the
    baseline, summed over subjects and t = 1..steps, true over predicted, is the rate that makes the
    model's change per time point match the data's, if log area is linear in model time.
    Returns {"time_rate", "true_log_ratio", "predicted_log_ratio", "subjects"}.
    """
    true_log, pred_log = np.zeros(steps), np.zeros(steps)
    for images, labels in series:
        x = torch.as_tensor(normalize_slice(np.asarray(images[0], np.float32)))[None, None]
        y = torch.as_tensor(np.asarray(labels[0]).astype(np.int64))[None]
        raw = walk(tm, x, y, [float(t) for t in range(steps + 1)], "direction", 0, refine_steps)
        area0 = max(float((labels[0] == tm.tracked).sum()), 1e-9)
        pred = (raw[1:, 1:].argmax(1) == tm.tracked).flatten(1).sum(1).numpy()
        true = (np.asarray(labels[1:steps + 1]) == tm.tracked).reshape(steps, -1).sum(1)
        true_log += np.log(np.maximum(true, 1e-9) / area0)
        pred_log += np.log(np.maximum(pred, 1e-9) / area0)
    if not np.all(pred_log < 0) and not np.all(pred_log > 0):
        raise ModelError(f"Model '{tm.name}' does not change the tracked structure consistently; cannot calibrate.")
    return {"time_rate": float(true_log.sum() / pred_log.sum()), "true_log_ratio": (true_log / len(series)).tolist(),
            "predicted_log_ratio": (pred_log / len(series)).tolist(), "subjects": len(series)}
