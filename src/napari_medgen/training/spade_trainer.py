"""Trainer of the "spade" family: MONAI SPADENet generator against a multi-scale patch discriminator.

Generator loss = hinge adversarial (MONAI ``PatchAdversarialLoss``) + feature matching (L1 between the
discriminator's intermediate features of real and synthetic images) + L1 reconstruction + KL of the
style encoder; no perceptual loss (it would need downloaded weights). The discriminator sees
(image, one-hot labels) and is trained with the hinge loss.

Data (:mod:`.spade_data`): 2D slices (n, y, x) of the training volumes. ``--sample brain`` trains on the shipped 2 mm brain sample and holds back every
5th axial slice, or with ``--set resolution=1`` on the 1 mm MNI152 template from the nilearn wheel
(background set to 0 outside the brain) holding back the axial slabs of ``data.brain.axial_split``;
``--sample phantom`` renders subjects with seeds 0..N-1 in rotating MR contrast styles ("vendors")
and holds back seeds from 1000 on. Settings (``--set key=value``): network entries (channels,
z_dim, spade_hidden, head_channels, zero_mean_texture: each label's intensity set by the style alone,
no texture in the background, ``models.spade``; the exported model's per-label offsets are refitted on
the training slices, ``.spade_contrast``), loss weights (w_adv, w_fm, w_l1, w_kl), lr_d, flip (left-right
augmentation), augment (``data.augment``: elastic, bias field, contrast, resolution; includes the
flip), lut_init (start the per-label intensity offsets at the training images' class means, so
training starts from a lookup-table painting), resolution (brain: 2 or 1 mm), subjects (phantom count),
noise ("rician" | "gaussian": an explicit acquisition-noise model measured on the training images'
background, ``models.acquisition_noise``; the discriminator sees the generator's image with this noise
added, so the generator draws the noise-free anatomy and leaves the noise to the model), class_balanced
(the L1 term averages each label's mean error, so that small structures such as a tumour or the
blood pool weigh as much as the body), norm_high (the training images' intensity percentile that
becomes 1, default 99.5; brighter values are clipped: a small bright label, such as the phantom's
vendor-a blood pool, needs 99.99 or its contrast is clipped away).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import MultiScalePatchDiscriminator

from ..data import normalize as norm
from ..data.augment import augment_batch, slice_augmentation
from ..data.label_stats import label_means
from ..device import resolve_device
from ..errors import InputError
from ..models import spade
from ..models.acquisition_noise import NoiseModel, estimate as estimate_noise
from ..models.store import save_model
from .checkpoint import AttributeState
from .losses import gaussian_kl
from .config import TrainConfig, family_settings
from .source import Sources, TrainingSource
from .spade_contrast import refitted_generator, style_with_contrast
from .spade_data import SliceSet, brain_slices, folder_slices, phantom_slices

LOSS_WEIGHTS = {"w_adv": 1.0, "w_fm": 10.0, "w_l1": 10.0, "w_kl": 0.05}
SOURCES = Sources()  # --sample brain|phantom or --images DIR --labels DIR


@dataclass(frozen=True)
class SpadeSettings:
    """``--set`` settings of the spade family (see the module doc). The network entries (``NETWORK_KEYS``)
    left None take ``models.spade.DEFAULTS``; n_classes comes from the data."""

    spatial_dims: int | None = None
    input_shape: Any = None
    channels: Any = None
    z_dim: int | None = None
    spade_hidden: int | None = None
    head_channels: int | None = None
    zero_mean_texture: bool | None = None
    w_adv: float = LOSS_WEIGHTS["w_adv"]
    w_fm: float = LOSS_WEIGHTS["w_fm"]
    w_l1: float = LOSS_WEIGHTS["w_l1"]
    w_kl: float = LOSS_WEIGHTS["w_kl"]
    lr_d: float | None = None
    flip: bool = True
    augment: bool = False
    lut_init: bool = False
    resolution: int = 2
    subjects: int = 24
    noise: str | None = None
    class_balanced: bool = False
    norm_high: float = 99.5


NETWORK_KEYS = tuple(k for k in spade.DEFAULTS if k != "n_classes")  # SpadeSettings' network entries


class SpadeTrainer(AttributeState):
    """One step = one discriminator update and one generator update on a batch of slices."""

    state_attrs = ("generator", "discriminator", "opt_g", "opt_d", "rng")

    def __init__(self, data: SliceSet, network: dict[str, Any], *, seed: int, batch_size: int, lr: float,
                 device: str, weights: dict[str, float], lr_d: float | None = None, flip: bool = True,
                 augment: bool = False, lut_init: bool = False, noise: NoiseModel | None = None,
                 class_balanced: bool = False):
        self.data = data
        self.class_balanced = class_balanced
        self.noise = noise
        self.network = network
        self.weights = weights
        self.flip = flip
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.n_classes = int(network["n_classes"])
        self.generator = spade.build_spade(network)["generator"].to(self.device)
        if lut_init:  # start from painting each label with its mean: the network learns what a lookup table misses
            means = np.nan_to_num(label_means(data.images, data.labels, self.n_classes))  # absent label: 0
            with torch.no_grad():
                self.generator.label_style.bias.copy_(torch.as_tensor(means, dtype=torch.float32))
                for p in self.generator.head[-1].parameters():
                    p.zero_()
        size = min(network["input_shape"])
        # the coarser of the two discriminators has 2 * layers stride-2 convolutions: keep its output >= 8 pixels
        layers = int(np.clip(np.log2(size / 8) // 2, 1, 2))
        self.discriminator = MultiScalePatchDiscriminator(
            num_d=2, num_layers_d=layers, spatial_dims=network["spatial_dims"], channels=16,
            in_channels=1 + self.n_classes, norm="INSTANCE", minimum_size_im=size).to(self.device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr_d or lr, betas=(0.5, 0.999))
        self.adversarial = PatchAdversarialLoss(criterion="hinge")
        self.rng = torch.Generator().manual_seed(seed)
        self.augment = slice_augmentation(seed, flip) if augment else None
        self.images = torch.from_numpy(data.images[:, None].astype(np.float32))
        self.labels = torch.from_numpy(data.labels)
        fg = (data.labels > 0).reshape(len(data.labels), -1).mean(1)
        self._preview_index = int(np.argmax(fg))

    def _onehot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels, self.n_classes).movedim(-1, 1).float()

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.images), (self.batch_size,), generator=self.rng)
        image, labels = self.images[idx], self.labels[idx]
        if self.augment is not None:
            image, labels = augment_batch(self.augment, image, labels)
        elif self.flip:
            flip = torch.rand(self.batch_size, generator=self.rng) < 0.5
            image[flip], labels[flip] = image[flip].flip(-1), labels[flip].flip(-1)
        return image.to(self.device), self._onehot(labels).to(self.device)

    def _acquired(self, clean: torch.Tensor) -> torch.Tensor:
        """Normalised noise-free images -> as the scanner would record them (the noise model added in raw
        units, then normalised and clipped like the training images); unchanged without a noise model."""
        if self.noise is None:
            return clean
        a, b = norm.linear_map(self.data.normalization)[2:]
        noisy = self._normalised(self.noise.apply(self._raw(clean), self.rng))
        return torch.clamp(noisy, min(a, b), max(a, b))

    def _raw(self, x: Any) -> Any:
        """Normalised intensities (array or tensor) -> the training images' raw units (the spec's linear map)."""
        lo, hi, a, b = norm.linear_map(self.data.normalization)
        return lo + (x - a) * ((hi - lo) / (b - a))

    def _normalised(self, x: Any) -> Any:
        """Raw intensities -> normalised (inverse of :meth:`_raw`, unclipped)."""
        lo, hi, a, b = norm.linear_map(self.data.normalization)
        return a + (x - lo) * ((b - a) / (hi - lo))

    def _signal(self, levels: np.ndarray) -> np.ndarray:
        """Mean recorded intensities (normalised) -> the noise-free signal that records as them (identity
        without a noise model): the generator draws the signal, the noise model lifts dark labels to the floor."""
        if self.noise is None:
            return levels
        return self._normalised(self.noise.signal_for_level(self._raw(levels)))

    def _l1(self, fake: torch.Tensor, real: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Mean |fake - real| over pixels, or with class_balanced the mean over the labels present of
        each label's mean error. fake/real (B, 1, y, x); onehot (B, C, y, x)."""
        if not self.class_balanced:
            return F.l1_loss(fake, real)
        err = (fake - real).abs()
        counts = onehot.sum((0, 2, 3))
        per_class = (err * onehot).sum((0, 2, 3)) / counts.clamp(min=1)
        return per_class[counts > 0].mean()

    def train_step(self, step: int) -> dict[str, float]:
        real, onehot = self._batch()
        self.generator.train()
        clean, mu, logvar = self.generator(onehot, real)
        fake = self._acquired(clean)

        self.opt_d.zero_grad(set_to_none=True)
        d_fake, _ = self.discriminator(torch.cat([fake.detach(), onehot], 1))
        d_real, _ = self.discriminator(torch.cat([real, onehot], 1))
        loss_d = 0.5 * (self.adversarial(d_fake, target_is_real=False, for_discriminator=True)
                        + self.adversarial(d_real, target_is_real=True, for_discriminator=True))
        loss_d.backward()
        self.opt_d.step()

        self.opt_g.zero_grad(set_to_none=True)
        d_fake, feats_fake = self.discriminator(torch.cat([fake, onehot], 1))
        with torch.no_grad():
            _, feats_real = self.discriminator(torch.cat([real, onehot], 1))
        adv = self.adversarial(d_fake, target_is_real=True, for_discriminator=False)
        fm = torch.stack([F.l1_loss(f, r) for fs, rs in zip(feats_fake, feats_real) for f, r in zip(fs, rs)]).sum()
        fm = fm / len(feats_fake)
        l1 = self._l1(clean, real, onehot)
        kl = gaussian_kl(mu, logvar)
        w = self.weights
        loss_g = w["w_adv"] * adv + w["w_fm"] * fm + w["w_l1"] * l1 + w["w_kl"] * kl
        loss_g.backward()
        self.opt_g.step()
        return {"g": loss_g.item(), "d": loss_d.item(), "adv": adv.item(), "fm": fm.item(), "l1": l1.item(),
                "kl": kl.item()}

    @torch.inference_mode()
    def encode_mu(self, images: np.ndarray, batch: int = 32) -> np.ndarray:
        """Normalised image slices (n, y, x) -> encoder means (n, z_dim)."""
        self.generator.eval()
        out = [self.generator.encode(torch.from_numpy(images[i:i + batch, None]).to(self.device))[0].cpu()
               for i in range(0, len(images), batch)]
        return torch.cat(out).numpy()

    @torch.inference_mode()
    def preview(self) -> np.ndarray | None:
        """The synthetic version of the training slice with the most foreground, its own style (y, x)."""
        i = self._preview_index
        self.generator.eval()
        image = self.images[i:i + 1].to(self.device)
        mu, _ = self.generator.encode(image)
        out = self.generator.decode(self._onehot(self.labels[i:i + 1]).to(self.device), mu)
        return out[0, 0].cpu().numpy()

    def style_card(self, mu: np.ndarray, generator: torch.nn.Module) -> dict[str, Any]:
        """Style statistics for the card from the training slices' encoder means ``mu`` (n, z_dim): their
        mean/std, and one style per name (vendor): the mean of its slices' styles, or with
        ``zero_mean_texture`` the style nearest that mean whose label offsets in ``generator`` paint the
        vendor's training class means (:func:`.spade_contrast.style_with_contrast`)."""
        mu = mu.astype(np.float64)
        styles = np.asarray(self.data.styles)
        named = {}
        for name in sorted(set(self.data.styles) - {""}):
            pick = styles == name
            z = mu[pick].mean(0)
            if self.network.get("zero_mean_texture"):
                target = self._signal(label_means(self.data.images[pick], self.data.labels[pick], self.n_classes))
                z = style_with_contrast(z, generator.label_style.weight.detach().cpu().numpy(),
                                        generator.label_style.bias.detach().cpu().numpy(), target)
            named[name] = z.round(5).tolist()
        return {"style_mean": mu.mean(0).round(5).tolist(), "style_std": mu.std(0).round(5).tolist(),
                "styles": named}

    def exported_generator(self, mu: np.ndarray) -> torch.nn.Module:
        """The generator to save: with ``zero_mean_texture``, a copy whose per-label offsets are refitted on the
        training slices (:mod:`.spade_contrast`; ``mu`` their encoder means); else the generator itself."""
        if not self.network.get("zero_mean_texture"):
            return self.generator
        return refitted_generator(self.generator, mu, self.data.images, self.data.labels, self._signal)

    def export(self, path: str | Path, card: dict[str, Any]) -> None:
        mu = self.encode_mu(self.data.images)
        generator = self.exported_generator(mu)
        card = {**card, "family": "spade", "network": self.network, "normalization": self.data.normalization,
                "label_names": {str(k): v for k, v in self.data.label_names.items()},
                "shape": list(self.network["input_shape"]), "plane_spacing": list(self.data.spacing),
                "slice_orientation": "axial", **self.style_card(mu, generator)}
        if self.noise is not None:
            card["acquisition_noise"] = self.noise.to_card("background 3+ px from every label of the training slices")
        training = dict(card.get("training", {}))
        training["data"] = self.data.description
        training["held_out"] = self.data.held_out
        training["notes"] = self.data.notes
        if self.data.held_out_slabs_mm is not None:
            training["held_out_slabs_mm"] = self.data.held_out_slabs_mm
        card["training"] = training
        save_model(path, {"generator": generator}, card, half=True)


def make_spade_trainer(config: TrainConfig) -> SpadeTrainer:
    """Build the trainer from ``config`` (see the module docstring for ``--set`` settings)."""
    s = family_settings(SpadeSettings, config.extra, "spade")
    network = spade.network_config(**{k: getattr(s, k) for k in NETWORK_KEYS if getattr(s, k) is not None})
    if network["spatial_dims"] != 2:
        raise InputError("The spade trainer trains 2D models (spatial_dims=2); 3D models are built with "
                         "models.spade.build_spade directly.")
    shape = tuple(network["input_shape"])
    source = TrainingSource.of(config, "spade", SOURCES)
    if source.kind == "brain":
        data = brain_slices(shape, s.resolution, s.norm_high)
    elif source.kind == "phantom":
        data = phantom_slices(shape, s.subjects, s.norm_high)
    else:
        data = folder_slices(source, shape, s.norm_high)
    network["n_classes"] = max(len(data.label_names), int(data.labels.max()) + 1)
    noise = None if s.noise is None else estimate_noise(norm.denormalize(data.images, data.normalization),
                                                        data.labels, s.noise)
    return SpadeTrainer(data, network, seed=config.seed, batch_size=config.batch_size, lr=config.lr,
                        device=config.device, weights={k: getattr(s, k) for k in LOSS_WEIGHTS}, lr_d=s.lr_d,
                        flip=s.flip, augment=s.augment, lut_init=s.lut_init, noise=noise,
                        class_balanced=s.class_balanced)
