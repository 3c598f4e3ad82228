"""Trainer for the "temporal" family (see :mod:`..models.temporal`): phantom tumour-regression or breathing series.

Training data (``--sample phantom`` only): ``n_subjects`` 2D phantom series of ``series_length`` frames,
``size`` x ``size`` pixels of :data:`PIXEL_MM` mm, one kind per model (``--set series=...``):

* ``tumour`` (default): axial slice through the tumour centre; the tumour radius shrinks by
  :data:`RADIUS_RATIO` per time step from a start radius drawn in :data:`START_RADIUS_MM`; tracked
  label: tumour (7).
* ``breathing``: axial slice at a level drawn per subject in :data:`BREATHING_LEVEL_MM` (from just above
  the exhale lung base, where the descending diaphragm uncovers lung, up to the tumour level, where the
  lungs only grow in-plane); breathing phase ``min(1, t * BREATHING_PHASE_STEP)`` (0 exhale .. 1
  inhale); tumour radius drawn in :data:`START_RADIUS_MM` and fixed; tracked label: lung (2).

All other factors (anatomy seed, breathing phase (tumour series) and cardiac phase, body size, rotation,
MR style, noise) are drawn once per subject and stay fixed. Subject seeds are drawn below
:data:`HELDOUT_SEED_START`; evaluation uses seeds from there up (never seen in training).
Intensities: each series is scaled by its baseline's 0.5/99.5 percentiles to [0, 1].

Losses per step (batch of subjects, a random window k, k+1, k+2 plus the baseline 0): L1 image +
Dice-CE labels + Dice of the tracked structure alone, of ``decode(z_0 + t d)`` against frame t; latent
consistency ``E(x_{k+2}) ~ z_0 + (k+2) d`` (weight 0.1, d held fixed in this term so it cannot shrink d); after ``adv_start`` x steps, a hinge temporal-discriminator loss on the 3-frame window
(weight ``adv_weight``).

Settings (``--set``): series (tumour), size (128), n_subjects (300), series_length (6), latent_channels (16),
adv_weight (0.02), adv_start (0.3), bank_size (64: training series kept as known progressions for "manifold").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from ..data import phantom
from ..data.normalize import normalize, percentile_spec
from ..device import resolve_device
from ..errors import InputError
from ..models.store import save_model
from ..models.temporal import (
    ProgressionBank,
    TemporalAE,
    TemporalModel,
    calibrate_rate,
    make_temporal_discriminator,
    progression_speed,
)
from .checkpoint import AttributeState
from .config import TrainConfig, family_settings
from .source import Sources, TrainingSource

PIXEL_MM = 3.0  # in-plane pixel size of the phantom's default grid (128 x 128 over 384 mm)
RADIUS_RATIO = (6.0 / 16.0) ** (1 / 5)  # tumour radius factor per time step (~0.822)
START_RADIUS_MM = (10.0, 18.0)
HELDOUT_SEED_START = 2_000_000
SERIES_TRACKED = {"tumour": 7, "breathing": 2}  # series kind -> tracked phantom label (tumour, lung)
BREATHING_PHASE_STEP = 0.2  # breathing phase per time step: exhale (0) to inhale (1) in 5 steps
BREATHING_LEVEL_MM = (-65.0, -20.0)  # axial level z of a breathing slice: 5 mm above the exhale lung base .. tumour level
TIME_STEP = {"tumour": f"one follow-up of the phantom protocol (tumour radius x {RADIUS_RATIO:.3f})",
             "breathing": f"breathing phase +{BREATHING_PHASE_STEP} (exhale 0 -> inhale 1 in "
                          f"{round(1 / BREATHING_PHASE_STEP)} steps)"}
CALIBRATION_SUBJECTS = 16
# follow-ups the time rate is fitted on: breathing's change is front-loaded (the diaphragm step) and not
# log-linear in time, so it is fitted over the whole exhale-to-inhale span
CALIBRATION_STEPS = {"tumour": 2, "breathing": round(1 / BREATHING_PHASE_STEP)}
MR_STYLES = [s for s in phantom.STYLES if s.startswith("mr")]
NORMALIZATION = {"kind": "percentile", "low": 0.5, "high": 99.5, "range": [0.0, 1.0], "per_image": True}
SOURCES = Sources(samples=("phantom",), folders=None)


@dataclass(frozen=True)
class TemporalSettings:
    """``--set`` settings of the temporal family (see the module doc); adv_start: the fraction of the
    planned steps after which the adversarial loss starts."""

    series: str = "tumour"
    size: int = 128
    n_subjects: int = 300
    series_length: int = 6
    latent_channels: int = 16
    adv_weight: float = 0.02
    adv_start: float = 0.3
    bank_size: int = 64


def phantom_series_2d(seed: int, size: int = 128, n: int = 6, start_radius_mm: float = 14.0,
                      rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One subject's 2D regression series: images (n, size, size) float32 raw a.u., labels (n, size, size) uint8.

    The radius at step t is ``start_radius_mm * RADIUS_RATIO ** t``. rng: draws the fixed factors (breathing,
    cardiac, body scale, rotation, style, noise seed); None = all at their defaults, style mr_vendor_a.
    """
    f, style, noise_seed = _subject_factors(seed, rng)
    radii = start_radius_mm * RADIUS_RATIO ** np.arange(n)
    frames = [_slice(seed, size, None, style, noise_seed, tumour_radius_mm=float(r), **f) for r in radii]
    return _stack(frames) + ({**f, "style": style, "radii_mm": radii.tolist()},)


def breathing_series_2d(seed: int, size: int = 128, n: int = 6, level_mm: float = -60.0, tumour_radius_mm: float = 14.0,
                        rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One subject's 2D breathing series at axial level ``level_mm`` (< 0): images (n, size, size) float32 raw
    a.u., labels (n, size, size) uint8.

    The breathing phase at step t is ``min(1, t * BREATHING_PHASE_STEP)`` (0 exhale .. 1 inhale: the lungs
    grow in-plane and the diaphragm descends); the tumour radius is fixed. rng: draws the fixed factors as in
    :func:`phantom_series_2d` (its breathing-phase draw is replaced by the series' phases).
    """
    f, style, noise_seed = _subject_factors(seed, rng)
    phases = np.minimum(1.0, BREATHING_PHASE_STEP * np.arange(n))
    frames = [_slice(seed, size, level_mm, style, noise_seed, **{**f, "breathing_phase": float(p),
                                                                  "tumour_radius_mm": tumour_radius_mm})
              for p in phases]
    return _stack(frames) + ({**f, "style": style, "breathing_phases": phases.tolist(), "level_mm": level_mm,
                              "tumour_radius_mm": tumour_radius_mm},)


def draw_series(series: str, seed: int, size: int, n: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One subject of kind ``series`` ("tumour" | "breathing"): images, labels (n, size, size) and factors.

    rng draws the series' own parameters first (tumour: start radius in START_RADIUS_MM; breathing: level in
    BREATHING_LEVEL_MM, then tumour radius in START_RADIUS_MM), then the subject's fixed factors.
    """
    if series == "tumour":
        return phantom_series_2d(seed, size, n, float(rng.uniform(*START_RADIUS_MM)), rng)
    level = float(rng.uniform(*BREATHING_LEVEL_MM))
    return breathing_series_2d(seed, size, n, level, float(rng.uniform(*START_RADIUS_MM)), rng)


def _subject_factors(seed: int, rng: np.random.Generator | None) -> tuple[dict[str, Any], str, int]:
    """Fixed factors (breathing/cardiac phase, body scale, rotation), MR style and noise seed of one subject;
    rng None = phantom defaults, mr_vendor_a, noise seed = seed."""
    if rng is None:
        return {}, "mr_vendor_a", seed
    f = {"breathing_phase": float(rng.uniform(0, 1)), "cardiac_phase": float(rng.uniform(0, 1)),
         "body_scale": float(rng.uniform(*phantom.BODY_SCALE_RANGE)), "rotation_deg": float(rng.uniform(-30, 30))}
    return f, MR_STYLES[int(rng.integers(len(MR_STYLES)))], int(rng.integers(1 << 30))


def _slice(seed: int, size: int, level_mm: float | None, style: str, noise_seed: int,
           **factors: float) -> tuple[np.ndarray, np.ndarray]:
    """One rendered axial slice (size, size): image float32, labels uint8.

    level_mm None = the phantom's 2D slice (z = phantom.SLICE_2D_Z_MM, tumour centred on it); else z =
    level_mm < 0, slice 0 of a two-slice 3D grid centred on z = 0 (3D tumour placement), rendered alone.
    """
    if level_mm is None:
        lab = phantom.make_labels(seed, shape=(1, size, size), spacing=(PIXEL_MM, PIXEL_MM, 5.0), **factors)
    else:
        if level_mm >= 0:
            raise InputError(f"A breathing slice level must be below z = 0 mm (got {level_mm} mm).")
        lab = phantom.make_labels(seed, shape=(2, size, size), spacing=(PIXEL_MM, PIXEL_MM, -2.0 * level_mm), **factors)
        lab = lab.with_data(lab.data[:1])
    return phantom.render(lab, style, noise_seed).data[0], lab.data[0]


def _stack(frames: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """[(image, labels)] per frame -> images (n, H, W) float32, labels (n, H, W) uint8."""
    return np.stack([f[0] for f in frames]).astype(np.float32), np.stack([f[1] for f in frames])


def normalize_series(images: np.ndarray) -> np.ndarray:
    """(T, ...) raw frames -> [0, 1] by the baseline frame's 0.5/99.5 percentiles."""
    return normalize(images, percentile_spec(images[0], out_range=(0.0, 1.0))).astype(np.float32)


class TemporalTrainer(AttributeState):
    state_attrs = ("model", "disc", "opt", "opt_d", "gen")
    family = "temporal"

    def __init__(self, config: TrainConfig):
        s = family_settings(TemporalSettings, config.extra, self.family)
        TrainingSource.of(config, self.family, SOURCES)
        self.series = s.series
        if self.series not in SERIES_TRACKED:
            raise InputError(f"Unknown series {self.series!r} for the 'temporal' family (--set series=...): "
                             f"choose one of {', '.join(SERIES_TRACKED)}.")
        self.tracked = SERIES_TRACKED[self.series]
        self.size, self.n_frames, n = s.size, s.series_length, s.n_subjects
        self.adv_weight, self.adv_start = s.adv_weight, int(s.adv_start * config.steps)
        self.bank_size = s.bank_size
        rng = np.random.default_rng(config.seed)
        images, labels = [], []
        for _ in range(n):
            img, lab, _ = draw_series(self.series, int(rng.integers(HELDOUT_SEED_START)), self.size, self.n_frames, rng)
            images.append(normalize_series(img))
            labels.append(lab)
        self.images = torch.as_tensor(np.stack(images)).half()  # (N, T, H, W)
        self.labels = torch.as_tensor(np.stack(labels).astype(np.int64))
        self.label_names = {str(k): v for k, v in phantom.LABELS.items()}
        self.device = resolve_device(config.device)
        self.model = TemporalAE(len(phantom.LABELS), self.size, s.latent_channels).to(self.device)
        self.disc = make_temporal_discriminator().to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=config.lr, betas=(0.5, 0.999))
        self.seg_loss = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
        self.batch = config.batch_size
        self.seed = config.seed
        self.gen = torch.Generator().manual_seed(config.seed + 1)
        self.data_description = self._describe(n, config.seed)

    def _describe(self, n: int, seed: int) -> str:
        """The training data in words, for the card."""
        common = f"random MR style and factors, subject seeds < {HELDOUT_SEED_START}, seed {seed}"
        if self.series == "tumour":
            return (f"{n} 2D phantom tumour-regression series ({self.n_frames} frames, radius x "
                    f"{RADIUS_RATIO:.3f} per step from {START_RADIUS_MM[0]}-{START_RADIUS_MM[1]} mm, {common})")
        return (f"{n} 2D phantom breathing series ({self.n_frames} frames, breathing phase min(1, "
                f"{BREATHING_PHASE_STEP} t) from exhale, axial level {BREATHING_LEVEL_MM[0]} to "
                f"{BREATHING_LEVEL_MM[1]} mm, tumour radius {START_RADIUS_MM[0]}-{START_RADIUS_MM[1]} mm fixed, {common})")

    def _window(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Subjects (B,), times (B, 4) = (0, k, k+1, k+2)."""
        idx = torch.randint(0, len(self.images), (self.batch,), generator=self.gen)
        k = torch.randint(0, self.n_frames - 2, (self.batch,), generator=self.gen)
        times = torch.stack([torch.zeros_like(k), k, k + 1, k + 2], 1)
        return idx, times, k

    def _triple(self, image: torch.Tensor, tracked: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image and tracked probability -> (B, 6, H, W) discriminator input."""
        return torch.cat([image, tracked], 1)

    def train_step(self, step: int) -> dict[str, float]:
        idx, times, k = self._window()
        frames = self.images[idx[:, None], times].float().to(self.device)  # (B, 4, H, W)
        target_lab = self.labels[idx[:, None], times].to(self.device)
        z0, skips = self.model.encode(frames[:, :1])
        b = len(idx)
        z = self.model.move(z0.repeat(4, 1, 1, 1), times.T.reshape(-1).float())  # time-major (4B, ...)
        out = self.model.decode(z, tuple(s.repeat(4, 1, 1, 1) for s in skips))
        tgt_img = frames.transpose(0, 1).reshape(-1, 1, self.size, self.size)
        tgt_lab = target_lab.transpose(0, 1).reshape(-1, 1, self.size, self.size)
        image = torch.sigmoid(out[:, :1])
        rec = F.l1_loss(image, tgt_img)
        seg = self.seg_loss(out[:, 1:], tgt_lab)
        z_last, _ = self.model.encode(frames[:, 3:4])
        cons = F.mse_loss(z_last, self.model.move(z0, (k + 2).float(), self.model.direction.detach()))
        prob = torch.softmax(out[:, 1:], 1)[:, self.tracked]
        truth = (tgt_lab[:, 0] == self.tracked).float()
        tracked_dice = 1 - 2 * (prob * truth).sum() / (prob.sum() + truth.sum() + 1e-5)
        loss = rec + seg + tracked_dice + 0.1 * cons
        losses = {"loss": 0.0, "rec": rec.item(), "seg": seg.item(), "tracked_dice": tracked_dice.item(),
                  "cons": cons.item()}
        if self.adv_weight > 0 and step >= self.adv_start:
            tracked = prob[:, None]
            fake = self._triple(image[b:].reshape(3, b, self.size, self.size).transpose(0, 1),
                                tracked[b:].reshape(3, b, self.size, self.size).transpose(0, 1))
            real = self._triple(frames[:, 1:], (target_lab[:, 1:] == self.tracked).float())
            d_loss = F.relu(1 - self.disc(real)[-1]).mean() + F.relu(1 + self.disc(fake.detach())[-1]).mean()
            self.opt_d.zero_grad()
            d_loss.backward()
            self.opt_d.step()
            adv = -self.disc(fake)[-1].mean()
            loss = loss + self.adv_weight * adv
            losses.update(adv=adv.item(), d=d_loss.item())
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        losses["loss"] = loss.item()
        return losses

    @torch.no_grad()
    def preview(self) -> np.ndarray:
        """Subject 0's last time step, decoded from its baseline: (H, W) in [0, 1]."""
        self.model.eval()
        z0, skips = self.model.encode(self.images[:1, 0, None].float().to(self.device))
        out = torch.sigmoid(self.model.decode(self.model.move(z0, self.n_frames - 1), skips)[0, 0]).cpu().numpy()
        self.model.train()
        return out

    @torch.no_grad()
    def progression_bank(self, card: dict[str, Any]) -> ProgressionBank:
        """The first ``bank_size`` training series as known progressions: each baseline's pooled latent
        (inverted as follow-up prediction inverts it) and its step, speed x the learned direction, with
        the speed fitted to the series' tracked area (models.temporal.progression_speed)."""
        self.model.eval()
        n = min(self.bank_size, len(self.images))
        bank = ProgressionBank(n, self.model.latent_channels)
        tm = TemporalModel({"model": self.model}, {**card, "tracked_label": self.tracked}, "bank")
        for i in range(n):
            key, speed = progression_speed(tm, self.images[i].float(), self.labels[i])
            bank.keys[i] = key
            bank.steps[i] = speed * self.model.direction.detach()
        self.model.train()
        return bank

    def export(self, path: str | Path, card: dict[str, Any]) -> None:
        """Write the model; the progression bank and the time rate are fitted on the CPU (where the follow-up
        task runs the model), so the trained weights move there first."""
        self.model.cpu()
        bank = self.progression_bank(card)
        card = {**card, "family": self.family, "network": {**self.model.config, "bank_size": len(bank.keys)},
                "normalization": NORMALIZATION, "label_names": self.label_names, "shape": [self.size, self.size],
                "pixel_mm": PIXEL_MM, "spacing": [PIXEL_MM, PIXEL_MM, 5.0], "modality": "MR magnitude (a.u., >= 0)",
                "series": self.series, "tracked_label": self.tracked, "series_length": self.n_frames, "time_step": TIME_STEP[self.series],
                "heldout_seed_start": HELDOUT_SEED_START, "data": card.get("data", self.data_description)}
        card.update(self.calibration(bank, card))
        save_model(path, {"model": self.model, "bank": bank}, card)

    def calibration(self, bank: ProgressionBank, card: dict[str, Any]) -> dict[str, Any]:
        """Card entries ``time_rate`` and ``time_rate_calibration``: the rate fitted (models.temporal
        .calibrate_rate) on CALIBRATION_SUBJECTS fresh series from the training distribution
        (seeds below HELDOUT_SEED_START, drawn with seed + 2), t = 0..CALIBRATION_STEPS[series]."""
        self.model.eval()
        rng = np.random.default_rng(self.seed + 2)
        steps = CALIBRATION_STEPS[self.series]
        series = []
        for _ in range(CALIBRATION_SUBJECTS):
            img, lab, _ = draw_series(self.series, int(rng.integers(HELDOUT_SEED_START)), self.size, steps + 1, rng)
            series.append((img, lab))
        fitted = calibrate_rate(TemporalModel({"model": self.model, "bank": bank}, card, "calibrating"), series, steps)
        self.model.train()
        return {"time_rate": round(fitted.pop("time_rate"), 4),
                "time_rate_calibration": {**fitted, "data": f"{CALIBRATION_SUBJECTS} fresh training-distribution "
                                                            f"series (seeds < {HELDOUT_SEED_START}, rng seed "
                                                            f"{self.seed + 2}), follow-ups 1-{steps}"}}
