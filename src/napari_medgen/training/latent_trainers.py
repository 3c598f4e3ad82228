"""Trainers for the unconditional 2D families "vae" and "gan" (see :mod:`..models.latent`).

Training data: a bank of 2D (image, labels) slices of ``size`` x ``size`` pixels, images scaled to
[0, 1] with one global intensity window (so contrast "styles" stay distinguishable):

* ``--sample phantom``: ``n_subjects`` 2D phantoms with every factor drawn at random (seeded):
  tumour radius, breathing and cardiac phase, body size, rotation, MR style.
* ``--sample brain``: the axial slices of the 1 mm MNI152 2009 template outside the held-out slabs of
  ``data.brain.axial_split`` (and their guard band), each prepared by ``data.brain_slices`` as "invert
  current slice" prepares a scan's (brain mask, in-brain percentiles, 192 mm field of view, centred),
  then random deformations of them (``data.augment``) up to ``n_subjects`` slices; with
  ``--set validation=true`` its validation slabs (``axial_split(z, validation=True)``) and their guard
  band are left out too (recorded in the card), for choosing settings on them.
* folders: axial slices of the volumes, resized to ``size``.

Settings (``--set``): size (64), latent_dim (16 vae / 32 gan), n_subjects (2000), beta (KL weight, vae),
kl_warmup (vae: steps over which the KL weight ramps up from 0, against posterior collapse),
seg_weight (vae: weight of the label cross-entropy, 0.1), class_balanced (vae: weight each class by
sqrt(1 / its pixel frequency) in that cross-entropy, so small structures such as the tumour are
reconstructed too; false), tc_weight (vae: weight of the aggregate posterior's total correlation,
the beta-TCVAE penalty that favours statistically independent latent dimensions, ramped up over
kl_warmup like the KL weight; 0), decoder (vae: "conv", MONAI's up-convolutions, "broadcast", a
spatial broadcast decoder, or "parts", one latent group per labelled structure, see
:class:`..models.latent.PartsDecoder`; conv), part_dims and style_dims (vae, parts decoder: latent
dimensions per structure, 1, and for the class intensities, 2; they fix latent_dim), pairs (vae on
the phantom: train on n_subjects pairs of phantoms that differ in 1-5 unknown factors, with
Ada-GVAE's shared posteriors, Locatello et al. 2020: the latent dimensions that change least within
a pair are averaged over it; false), pair_changes (the
number of factors redrawn within a pair is uniform in 1..pair_changes; 5),
anatomy_seed (phantom: one subject's anatomy, only the factors vary), bias (phantom bias field, 0.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import phantom
from ..data.datasets import slices2d
from ..data.normalize import normalize, percentile_spec
from ..device import resolve_device
from ..errors import InputError
from ..models.latent import ImageLabelGAN, ImageLabelVAE, make_discriminator
from ..models.store import save_model
from .checkpoint import AttributeState
from .losses import class_frequency_weights, gaussian_kl, shared_posteriors, total_correlation
from .config import TrainConfig, family_settings
from .source import Sources, TrainingSource

PHANTOM_FACTOR_RANGES = {
    "tumour_radius_mm": phantom.TUMOUR_RADIUS_RANGE_MM,
    "breathing_phase": (0.0, 1.0),
    "cardiac_phase": (0.0, 1.0),
    "body_scale": phantom.BODY_SCALE_RANGE,
    "rotation_deg": (-30.0, 30.0),
}
PHANTOM_FOV_MM = phantom.FOV_MM[0]
SLICE_SIZE = 128  # folders and the brain sample: slices are padded/cropped to this before resizing
MR_STYLES = [s for s in phantom.STYLES if s.startswith("mr")]
SOURCES = Sources()  # the vae and gan: --sample brain|phantom or --images DIR --labels DIR


def phantom_bank(n: int, size: int, seed: int, anatomy_seed: int | None = None, bias: float = 0.2,
                 pairs: bool = False, max_changed: int = 5) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """n random 2D phantoms: images (n, size, size) float32 (raw units), labels (n, size, size) uint8, factors.

    Every factor of :data:`PHANTOM_FACTOR_RANGES` and the MR style are drawn at random (seeded).
    anatomy_seed: one subject's anatomy for all (only the factors vary), else a new subject each.
    bias: bias-field amplitude of the renderer. pairs: rows 2i and 2i + 1 (n even) show the same
    subject with k of its six factors redrawn, k uniform in 1..max_changed (which and how many are
    not recorded), and fresh noise: the weak supervision of follow-up scans, for ``--set pairs=true``.
    """
    rng = np.random.default_rng(seed)
    spacing = PHANTOM_FOV_MM / size

    def draw() -> dict[str, Any]:
        f: dict[str, Any] = {k: float(rng.uniform(*r)) for k, r in PHANTOM_FACTOR_RANGES.items()}
        return {**f, "style": MR_STYLES[int(rng.integers(len(MR_STYLES)))]}

    images, labels, factors = [], [], []
    for i in range(n):
        if pairs and i % 2:
            changed = rng.choice(len(factors[-1]), size=int(rng.integers(1, max_changed + 1)), replace=False)
            fresh = draw()
            f = {k: fresh[k] if j in changed else v for j, (k, v) in enumerate(factors[-1].items())}
        else:
            f, subject = draw(), int(rng.integers(1 << 30))
        shape = {k: v for k, v in f.items() if k != "style"}
        lab = phantom.make_labels(subject if anatomy_seed is None else anatomy_seed, shape=(1, size, size),
                                  spacing=(spacing, spacing, 5.0), **shape)
        img = phantom.render(lab, f["style"], int(rng.integers(1 << 30)), bias=bias)
        images.append(img.data[0])
        labels.append(lab.data[0])
        factors.append(f)
    return np.stack(images).astype(np.float32), np.stack(labels).astype(np.uint8), factors


@dataclass(frozen=True)
class LatentSettings:
    """``--set`` settings the vae and gan share (see the module doc)."""

    size: int = 64
    n_subjects: int = 2000
    anatomy_seed: int | None = None
    bias: float = 0.2
    pairs: bool = False
    pair_changes: int = 5
    validation: bool = False


@dataclass(frozen=True)
class VAESettings(LatentSettings):
    """The vae's own settings (see the module doc; latent_dim None: the decoder's default)."""

    latent_dim: int | None = None
    decoder: str = "conv"
    part_dims: int = 1
    style_dims: int = 2
    beta: float = 1e-3
    kl_warmup: int = 0
    seg_weight: float = 0.1
    class_balanced: bool = False
    tc_weight: float = 0.0


@dataclass(frozen=True)
class GANSettings(LatentSettings):
    """The gan's own settings: latent size and the learning rate of both networks."""

    latent_dim: int = 32
    lr_gan: float = 2e-4


def _bank(config: TrainConfig, s: LatentSettings, family: str
          ) -> tuple[np.ndarray, np.ndarray, dict[str, str], str, float, dict[str, Any] | None]:
    """(images, labels, label names, data description, pixel size in mm, the phantom bank's settings or
    None) of the training slices."""
    size = s.size
    source = TrainingSource.of(config, family, SOURCES)
    if s.validation and source.kind != "brain":
        raise InputError("--set validation=true needs --sample brain: only the brain sample has validation slabs.")
    if source.kind == "phantom":
        n, anatomy, bias, pairs, changed = s.n_subjects, s.anatomy_seed, s.bias, s.pairs, s.pair_changes
        if pairs and not 1 <= changed <= len(PHANTOM_FACTOR_RANGES):
            raise InputError(f"pair_changes must be between 1 and {len(PHANTOM_FACTOR_RANGES)} (of the six factors), "
                             f"got {changed}.")
        images, labels, _ = phantom_bank(2 * n if pairs else n, size, config.seed, anatomy, bias, pairs, changed)
        who = "new anatomy each" if anatomy is None else f"one anatomy (seed {anatomy})"
        what = (f"{n} pairs of 2D phantoms, 1-{changed} factors redrawn within a pair" if pairs
                else f"{n} random 2D phantoms")
        return (images, labels, {str(k): v for k, v in phantom.LABELS.items()},
                f"{what} ({who}, random factors and MR style, bias {bias}, seed {config.seed})",
                PHANTOM_FOV_MM / size, {"anatomy_seed": anatomy, "bias": bias})
    if s.pairs:
        raise InputError("--set pairs=true needs --sample phantom: image pairs are drawn from the phantom only.")
    if source.kind == "brain":  # prepared as "invert current slice" prepares a scan's slice; held-out slabs left out
        from ..data.brain_slices import FOV_MM, augmented_bank, training_slices

        slices = training_slices(size, validation=s.validation)
        images, labels = augmented_bank(*slices[:2], s.n_subjects, config.seed)
        return images, labels, {str(k): v for k, v in source.label_names().items()}, BRAIN_DATA, FOV_MM / size, None
    pairs = source.pairs()
    names = {str(k): v for k, v in source.label_names([lab for _, lab in pairs]).items()}
    images, labels, pixel_mm = volume_slices(pairs, size)
    return images, labels, names, f"axial slices of {source.describe()}", pixel_mm, None


# a card's "data" for --sample brain (tasks.latent_editor.LatentEditor recognises brain models by it)
BRAIN_DATA = ("MNI152 2009 T1 template (nilearn wheel), 1 mm, axial slices outside the held-out slabs of "
              "data.brain.axial_split, each prepared by data.brain_slices (brain mask, in-brain percentiles, "
              "field of view 192 mm, centred)")


def volume_slices(pairs: list, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Axial slices of (image, labels) Volume pairs with >= 5 % foreground, padded/cropped to
    :data:`SLICE_SIZE` and resized to ``size``: images (n, size, size) float32 (raw units), labels
    (n, size, size) uint8, pixel size in mm."""
    images, labels = slices2d(pairs, size=(SLICE_SIZE, SLICE_SIZE), min_foreground=0.05)
    images = F.interpolate(torch.as_tensor(images)[:, None], size=(size, size), mode="area")[:, 0].numpy()
    labels = F.interpolate(torch.as_tensor(labels)[:, None].float(), size=(size, size), mode="nearest")[:, 0]
    return images, labels.numpy().astype(np.uint8), float(min(pairs[0][0].spacing[:2])) * SLICE_SIZE / size


class _LatentTrainer:
    """Shared data handling, preview and export for the vae and gan trainers."""

    family = ""
    settings: type[LatentSettings] = LatentSettings

    def __init__(self, config: TrainConfig):
        self.s = family_settings(self.settings, config.extra, self.family)
        self.size = self.s.size
        raw, labels, self.label_names, self.data_desc, self.pixel_mm, self.phantom_bank = _bank(config, self.s, self.family)
        self.device = resolve_device(config.device)
        self.norm = percentile_spec(raw, out_range=(0.0, 1.0))
        self.images = torch.as_tensor(normalize(raw, self.norm))[:, None].to(self.device)
        self.n_classes = len(self.label_names)
        self.labels = torch.as_tensor(labels.astype(np.int64)).to(self.device)
        self.batch = config.batch_size
        self.gen = torch.Generator().manual_seed(config.seed + 1)
        self.pairs = self.s.pairs  # the bank holds pairs (rows 2i, 2i + 1)
        self.preview_seed = config.seed + 2  # the preview decodes one fixed latent

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of images (B, 1, H, W) and labels (B, H, W); from a pair bank, B pairs: the pairs'
        first images, then their second ones (2B rows)."""
        if not self.pairs:
            idx = torch.randint(0, len(self.images), (self.batch,), generator=self.gen)
        else:
            idx = 2 * torch.randint(0, len(self.images) // 2, (self.batch,), generator=self.gen)
            idx = torch.cat([idx, idx + 1])
        idx = idx.to(self.device)
        return self.images[idx], self.labels[idx]

    def _target(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(labels, self.n_classes).permute(0, 3, 1, 2).float()
        return torch.cat([images, onehot], 1)

    @torch.no_grad()
    def preview(self) -> np.ndarray:
        self.model.eval()
        z = torch.randn(1, self.latent_dim, generator=torch.Generator().manual_seed(self.preview_seed))
        out = self.model.decode(z.to(self.device))[0, 0].cpu().numpy()
        self.model.train()
        return out

    def export(self, path: str | Path, card: dict[str, Any]) -> None:
        card = {**card, "family": self.family, "network": self.network, "normalization": self.norm,
                "label_names": self.label_names, "shape": [self.size, self.size], "voxel_mm": [self.pixel_mm] * 2,
                "training": {**card.get("training", {}), "data": self.data_desc}}
        if self.phantom_bank is not None:
            card["phantom_bank"] = self.phantom_bank
        if self.data_desc == BRAIN_DATA:  # the split in words (validation slabs too) and the test slabs (MNI z, mm)
            from ..data import brain

            card["training"].update(held_out=brain.heldout_description(self.s.validation),
                                    held_out_slabs_mm=[list(z) for z in brain.HELDOUT_SLABS_MM])
        save_model(path, self.export_modules(), card)


class VAETrainer(AttributeState, _LatentTrainer):
    state_attrs = ("model", "opt", "gen")
    family = "vae"
    settings = VAESettings

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        s = self.s
        try:
            self.model = ImageLabelVAE(self.n_classes, self.size, s.latent_dim, decoder=s.decoder,
                                       part_dims=s.part_dims, style_dims=s.style_dims).to(self.device)
        except ValueError as exc:
            raise InputError(f"VAE settings: {exc}") from None
        self.latent_dim = self.model.latent_dim
        self.network = self.model.config
        self.beta, self.kl_warmup, self.seg_weight, self.tc_weight = s.beta, s.kl_warmup, s.seg_weight, s.tc_weight
        self.class_weights = (class_frequency_weights(self.labels.cpu(), self.n_classes).to(self.device)
                              if s.class_balanced else None)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)

    def train_step(self, step: int) -> dict[str, float]:
        images, labels = self._draw()
        mu, logvar = self.model.encode(images)
        if self.pairs:  # rows: the pairs' first images, then their second ones
            shared = shared_posteriors(mu.unflatten(0, (2, -1)), logvar.unflatten(0, (2, -1)))
            mu, logvar = (t.flatten(0, 1) for t in shared)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        out = self.model.decode_raw(z)
        rec = F.mse_loss(torch.sigmoid(out[:, :1]), images)
        seg = F.cross_entropy(out[:, 1:], labels, weight=self.class_weights)
        kl = gaussian_kl(mu, logvar)
        ramp = min(1.0, (step + 1) / self.kl_warmup) if self.kl_warmup else 1.0  # of the KL and TC weights
        loss = rec + self.seg_weight * seg + ramp * self.beta * kl
        logs = {"rec": rec.item(), "seg": seg.item(), "kl": kl.item()}
        if self.tc_weight:
            tc = total_correlation(z, mu, logvar, len(self.images))
            loss = loss + ramp * self.tc_weight * tc
            logs["tc"] = tc.item()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), **logs}

    def export_modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}


class GANTrainer(AttributeState, _LatentTrainer):
    state_attrs = ("model", "disc", "opt_g", "opt_d", "gen")
    family = "gan"
    settings = GANSettings

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.latent_dim = self.s.latent_dim
        self.model = ImageLabelGAN(self.n_classes, self.size, self.latent_dim).to(self.device)
        self.network = self.model.config
        self.disc = make_discriminator(self.n_classes, self.size).to(self.device)
        lr = self.s.lr_gan
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=lr, betas=(0.5, 0.999))

    def train_step(self, step: int) -> dict[str, float]:
        images, labels = self._draw()
        real = self._target(images, labels)
        z = torch.randn(self.batch, self.latent_dim, generator=self.gen).to(self.device)
        fake = self.model.decode(z)
        d_loss = F.softplus(-self.disc(real)).mean() + F.softplus(self.disc(fake.detach())).mean()
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()
        g_loss = F.softplus(-self.disc(fake)).mean()
        self.opt_g.zero_grad()
        g_loss.backward()
        self.opt_g.step()
        return {"g": g_loss.item(), "d": d_loss.item()}

    def export_modules(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.model}
