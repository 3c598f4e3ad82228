"""Trainer for the "label_vae" family: a VarAutoEncoder on one-hot 2D label slices.

Data: ``--sample phantom`` (axial slices of phantom subjects with random anatomy factors; seeds
0..subjects-1 train, seeds 1000.. held out), ``--sample brain`` (axial slices of the brain
sample; every 5th slice held out), or ``--labels DIR`` (every label volume in the folder; every
5th slice held out). Slices are centre-padded/cropped to ``slice_shape``.
Loss: cross-entropy + soft Dice (MONAI DiceCELoss) + kl_weight * KL / pixels (the ELBO per
pixel). ``--set`` keys: latent_size, channels, slice_shape, kl_weight, subjects, heldout_subjects.
At export the held-out Dice of reconstructions (latent mean) per class is measured and written
into the card, with a Gaussian fitted to the training latents ("latent_prior") for sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.metrics import compute_dice

from ..device import resolve_device
from ..models.label_vae import DEFAULT_NETWORK, FAMILY, build_label_vae, one_hot
from ..models.store import save_model
from .checkpoint import AttributeState
from .losses import gaussian_kl
from .config import TrainConfig, family_settings
from .source import Sources, TrainingSource

SOURCES = Sources(folders="labels")


def fit_slices(vol: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n, y, x) -> (n, *shape): centre crop or zero-pad each in-plane axis."""
    out = np.zeros((vol.shape[0], *shape), dtype=vol.dtype)
    src, dst = [slice(None)], [slice(None)]
    for have, want in zip(vol.shape[1:], shape):
        a, b = max(0, (have - want) // 2), max(0, (want - have) // 2)
        n = min(have, want)
        src.append(slice(a, a + n))
        dst.append(slice(b, b + n))
    out[tuple(dst)] = vol[tuple(src)]
    return out


def _phantom_slices(subjects: range, shape: tuple[int, int]) -> tuple[np.ndarray, dict[int, str], tuple]:
    """Axial (n, y, x) label slices of 64-slice phantom subjects with random anatomy factors."""
    from ..data.phantom import BODY_SCALE_RANGE, LABELS, make_labels

    out, spacing = [], (3.0, 3.0, 5.0)
    for s in subjects:
        r = np.random.default_rng(10_000 + s)
        lab = make_labels(s, shape=(64, *shape), tumour_radius_mm=float(r.uniform(5, 20)),
                          breathing_phase=float(r.uniform()), cardiac_phase=float(r.uniform()),
                          body_scale=float(r.uniform(*BODY_SCALE_RANGE)), rotation_deg=float(r.uniform(-10, 10)))
        out.append(np.asarray(lab.data, dtype=np.uint8))
        spacing = lab.spacing
    return np.concatenate(out), dict(LABELS), spacing


@dataclass(frozen=True)
class LabelVAESettings:
    """``--set`` settings of the label VAE: phantom subjects for training and held out, its network
    (see models.label_vae.DEFAULT_NETWORK; n_classes comes from the data) and the KL weight."""

    subjects: int = 24
    heldout_subjects: int = 4
    slice_shape: list[int] = field(default_factory=lambda: list(DEFAULT_NETWORK["slice_shape"]))
    latent_size: int = DEFAULT_NETWORK["latent_size"]
    channels: list[int] = field(default_factory=lambda: list(DEFAULT_NETWORK["channels"]))
    strides: list[int] = field(default_factory=lambda: list(DEFAULT_NETWORK["strides"]))
    num_res_units: int = DEFAULT_NETWORK["num_res_units"]
    kl_weight: float = 1.0


def load_label_slices(cfg: TrainConfig, shape: tuple[int, int]) -> dict[str, Any]:
    """Training and held-out (n, y, x) uint8 slices, label names, spacing and a data description."""
    source = TrainingSource.of(cfg, FAMILY, SOURCES)
    if source.kind == "phantom":
        s = family_settings(LabelVAESettings, cfg.extra, FAMILY)
        n, h = s.subjects, s.heldout_subjects
        train, names, spacing = _phantom_slices(range(n), shape)
        held, _, _ = _phantom_slices(range(1000, 1000 + h), shape)
        return {"train": train, "heldout": held, "names": names, "spacing": spacing,
                "heldout_desc": f"phantom seeds 1000..{999 + h} (training seeds 0..{n - 1})"}
    vols = [lab for _, lab in source.volumes()]
    stack = np.concatenate([fit_slices(np.asarray(v.data, dtype=np.int64), shape) for v in vols])
    keep = stack.reshape(len(stack), -1).max(1) > 0  # drop empty slices
    stack = stack[keep].astype(np.uint8)
    held = np.arange(len(stack)) % 5 == 4
    return {"train": stack[~held], "heldout": stack[held], "names": source.label_names(vols),
            "spacing": vols[0].spacing,
            "heldout_desc": "every 5th non-empty axial slice (index % 5 == 4)"}


class LabelVAETrainer(AttributeState):
    """One optimisation step = a random batch of slices through the VAE (see module docstring)."""

    state_attrs = ("net", "opt", "gen")

    def __init__(self, cfg: TrainConfig):
        s = family_settings(LabelVAESettings, cfg.extra, FAMILY)
        shape = tuple(int(v) for v in s.slice_shape)
        self.data = load_label_slices(cfg, shape)
        n_classes = max(len(self.data["names"]), int(self.data["train"].max()) + 1)
        self.network = {"n_classes": n_classes, "slice_shape": list(shape), "latent_size": s.latent_size,
                        "channels": s.channels, "strides": s.strides, "num_res_units": s.num_res_units}
        self.device = resolve_device(cfg.device)
        self.net = build_label_vae(self.network).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.loss = DiceCELoss(softmax=True, to_onehot_y=True)
        self.kl_weight = s.kl_weight
        self.batch_size = cfg.batch_size
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.train_x = torch.from_numpy(self.data["train"].astype(np.int64))

    def train_step(self, step: int) -> dict[str, float]:
        self.net.train()
        idx = torch.randint(len(self.train_x), (self.batch_size,), generator=self.gen)
        y = self.train_x[idx].to(self.device)
        mu, logvar = self.net.encode_forward(one_hot(y, self.network["n_classes"]))
        eps = torch.randn(mu.shape, generator=self.gen).to(self.device)  # the trainer's own RNG: exact resume
        logits = self.net.decode_forward(mu + eps * torch.exp(0.5 * logvar), use_sigmoid=False)
        rec = self.loss(logits, y[:, None])
        kl = gaussian_kl(mu, logvar) / y[0].numel()
        loss = rec + self.kl_weight * kl
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "dice_ce": rec.item(), "kl": kl.item()}

    @torch.inference_mode()
    def reconstruct(self, labels: np.ndarray) -> np.ndarray:
        """(n, y, x) labels -> their reconstructions through the latent mean, (n, y, x)."""
        self.net.eval()
        x = one_hot(torch.from_numpy(labels.astype(np.int64)).to(self.device), self.network["n_classes"])
        mu, _ = self.net.encode_forward(x)
        return self.net.decode_forward(mu, use_sigmoid=False).argmax(1).cpu().numpy()

    def heldout_dice(self) -> dict[str, float]:
        """Mean Dice per foreground class of held-out reconstructions (classes absent from both skipped)."""
        held, n = self.data["heldout"], self.network["n_classes"]
        rec = np.concatenate([self.reconstruct(held[i:i + 32]) for i in range(0, len(held), 32)])
        oh = lambda a: one_hot(torch.from_numpy(a.astype(np.int64)), n)  # noqa: E731
        d = compute_dice(oh(rec), oh(held), include_background=False, ignore_empty=True)
        per_class = torch.nanmean(d, dim=0).tolist()
        names = self.data["names"]
        out = {f"dice_{names.get(c + 1, c + 1)}": round(float(v), 4) for c, v in enumerate(per_class) if v == v}
        out["dice_mean_foreground"] = round(float(np.nanmean(per_class)), 4)
        return out

    def latent_prior(self) -> dict[str, Any]:
        """Gaussian fitted to the training slices' latent means: {"mean": (d,), "chol": (d, d)} lists.

        Sampling from it (rather than N(0, I)) keeps new anatomies inside what the encoder has seen.
        """
        x = self.data["train"]
        self.net.eval()
        with torch.inference_mode():
            mu = torch.cat([self.net.encode_forward(one_hot(torch.from_numpy(x[i:i + 64].astype(np.int64)).to(
                self.device), self.network["n_classes"]))[0].cpu() for i in range(0, len(x), 64)]).double().numpy()
        cov = np.cov(mu.T) + 1e-6 * np.eye(mu.shape[1])
        return {"mean": mu.mean(0).round(6).tolist(), "chol": np.linalg.cholesky(cov).round(6).tolist()}

    def preview(self) -> np.ndarray | None:
        """Reconstruction of the first held-out slice, (y, x) float label values."""
        return self.reconstruct(self.data["heldout"][:1])[0].astype(np.float32)

    def export(self, path: str | Path, card: dict[str, Any]) -> None:
        metrics = {**card.get("metrics", {}), **self.heldout_dice()}
        card = {**card, "family": FAMILY, "network": self.network, "normalization": {"kind": "one-hot labels"},
                "label_names": {str(k): v for k, v in self.data["names"].items()},
                "voxel_mm": list(self.data["spacing"]), "shape": self.network["slice_shape"],
                "heldout": self.data["heldout_desc"], "metrics": metrics, "latent_prior": self.latent_prior()}
        save_model(path, {"model": self.net}, card, half=True)
