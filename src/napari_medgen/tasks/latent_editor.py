"""The editor behind the latent-direction sliders: a "vae" or "gan" model, its directions and a base latent.

"Invert current slice" (:func:`invert`, :meth:`LatentEditor.invert_image`) finds the latent whose decoded
image matches a slice (a brain model's slice prepared as its training slices were,
:mod:`..data.brain_slices`); :meth:`LatentEditor.render` decodes the base latent moved along the
directions (:mod:`.directions`) back into the slice's grid and units.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.brain_slices import PreparedSlice, prepare_slice
from ..data.normalize import denormalize, normalize
from ..errors import InputError
from ..models.latent_handle import LatentModel, latent_dim, sample_latents
from ..progress import CancelToken, Progress
from .directions import NEEDS_IMAGES, Directions, walk


def invert(model: nn.Module, image: np.ndarray, *, steps: int = 200, seed: int = 0, n_starts: int = 4,
           cancel: CancelToken | None = None) -> Generator[Progress, None, np.ndarray]:
    """Latent (d,) whose decoded image matches ``image`` (H, W) in [0, 1] at the model's size.

    VAE: the encoder's posterior mean, refined by optimisation; GAN: optimisation of the image
    MSE from ``n_starts`` random starts plus a small prior penalty.
    """
    cancel = cancel or CancelToken()
    target = torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None]
    if target.shape[-2:] != (model.size, model.size):
        raise InputError(f"Image to invert must be {model.size}x{model.size}, got {tuple(target.shape[-2:])}.")
    for p in model.parameters():
        p.requires_grad_(False)
    if hasattr(model, "encode"):
        with torch.no_grad():
            start = model.encode(target)[0]
    else:
        start = sample_latents(model, n_starts, seed)
    z = nn.Parameter(start.clone())
    opt = torch.optim.Adam([z], lr=0.05)
    for step in range(steps):
        cancel.check()
        err = ((model.decode(z)[:, :1] - target) ** 2).mean(dim=(1, 2, 3))
        loss = err.sum() + 1e-3 * (z ** 2).mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            yield Progress(step + 1, steps, "inverting the image", metrics={"mse": err.min().item()})
    for p in model.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        best = int(((model.decode(z)[:, :1] - target) ** 2).mean(dim=(1, 2, 3)).argmin())
    return z.detach()[best].numpy()


class LatentEditor(LatentModel):
    """A latent model (:class:`..models.latent_handle.LatentModel`), its directions and a current base
    latent: the fast path behind the sliders.

    model_path: a "vae" or "gan" model; its saved directions (:meth:`directions_path`) are loaded. Images
    are 2D (H, W) in the model's input intensity units; ``render`` returns them at ``out_shape`` (the
    inverted image's shape, else the model's size). A brain model (trained on
    :data:`..training.latent_trainers.BRAIN_DATA`) inverts a scan's slice as its training slices were
    prepared (:mod:`..data.brain_slices`: brain mask, in-brain percentiles, pixel size, centring) and
    renders back into that slice, in its units.
    """

    def __init__(self, model_path: str | Path, device: str = "cpu"):
        super().__init__(model_path, device)
        self.z = np.zeros(latent_dim(self.model), dtype=np.float32)
        self.out_shape = (self.size, self.size)
        self.prepared: PreparedSlice | None = None  # the inverted brain slice's preparation (its units, grid)
        saved = self.directions_path()
        self.directions: Directions | None = Directions.load(saved) if saved.is_file() else None

    def save_directions(self) -> Path:
        if self.directions is None:
            raise InputError("There are no directions to save: discover them first.")
        path = self.directions_path()
        self.directions.save(path)
        return path

    def images_for(self, method: str, n: int = 500, seed: int = 1000) -> np.ndarray | None:
        """The real images (n, size, size) that ``discover(method)`` reads, else None: ``pca`` and
        ``ica`` need them; ``axes`` ranks a VAE's axes by them where they can be regenerated."""
        if method in NEEDS_IMAGES or (method == "axes" and self.card.get("family") == "vae"
                                      and self._data_kind() is not None):
            return self.training_data(n, seed)[0]
        return None

    def _data_kind(self) -> str | None:
        """"phantom" or "brain" where the training data can be regenerated, else None."""
        from ..training.latent_trainers import BRAIN_DATA

        data = str(self.card.get("training", {}).get("data", ""))
        return "phantom" if "phantom" in data else "brain" if data == BRAIN_DATA else None

    def training_data(self, n: int = 500, seed: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """Images (m, size, size) in [0, 1] and labels (m, size, size) like the training data: n fresh
        phantoms for a phantom model, the brain sample's slices (all of them, m <= n) for a brain model."""
        from ..training import latent_trainers as lt

        kind = self._data_kind()
        if kind is None:
            trained_on = self.card.get("training", {}).get("data", "unknown data")
            raise InputError(f"This model was trained on {trained_on!r}, which is not "
                             "regenerated here (only the phantom and the shipped brain sample are); methods pca and "
                             "ica and the reconstruction check need it: use sefa, ganspace or voynov.")
        if kind == "phantom":
            bank = self.card.get("phantom_bank", {})
            raw, labels, _ = lt.phantom_bank(n, self.size, seed, bank.get("anatomy_seed"), bank.get("bias", 0.2))
        else:
            from ..data.brain_slices import training_slices

            left_out = bool(self.card.get("training", {}).get("settings", {}).get("validation"))  # its validation slabs
            raw, labels, _ = training_slices(self.size, validation=left_out)
            raw, labels = raw[:n], labels[:n]
        return normalize(raw, self.card["normalization"]), labels

    def random_base(self, seed: int) -> None:
        self.z = self.sample(1, seed)[0]
        self.out_shape = (self.size, self.size)
        self.prepared = None

    def invert_image(self, image: np.ndarray, steps: int = 150, cancel: CancelToken | None = None, *,
                     spacing_mm: tuple[float, float] | None = None, mask: np.ndarray | None = None
                     ) -> Generator[Progress, None, np.ndarray]:
        """Make ``image`` (H, W), the scan's own units, the base latent; returns the latent (d,).

        A brain model prepares the slice like its training data (:func:`..data.brain_slices.prepare_slice`):
        ``mask`` (H, W), nonzero = brain, e.g. a label layer's slice, else an automatic mask;
        ``spacing_mm`` (row, col) is the slice's pixel size (required). Other models resize the
        whole slice to their size and scale it with the card's normalisation (both ignored).
        """
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2 or min(image.shape) < 4:
            raise InputError(f"Latent editing works on a 2D image slice, got shape {image.shape}.")
        self.prepared = None
        if self._data_kind() == "brain":
            if spacing_mm is None:
                raise InputError("Inverting a brain slice needs its pixel spacing (mm), to match the model's pixels.")
            prepared, _ = prepare_slice(image, spacing_mm, self.size, mask)
            small = normalize(prepared.image, self.card["normalization"])
        else:
            prepared, small = None, _resize(normalize(image, self.card["normalization"]), (self.size, self.size))
        self.z = yield from invert(self.model, small, steps=steps, cancel=cancel)
        self.prepared, self.out_shape = prepared, image.shape
        return self.z

    def render(self, alphas: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Decode the base latent moved by slider values ``alphas`` (k,) in std.

        Returns (image (H, W) float32 in input units, labels (H, W) uint8) at ``out_shape``.
        """
        z = self.z
        if alphas is not None and self.directions is not None:
            z = z + self.directions.offset(alphas)
        out = self.decode(z[None])[0]
        if self.prepared is not None:  # back into the scan's slice: its grid and units; background outside
            image = self.prepared.restore(denormalize(out[0], self.card["normalization"]))
            return image, self.prepared.to_scan(out[1:]).argmax(0).astype(np.uint8)
        image = denormalize(_resize(out[0], self.out_shape), self.card["normalization"])
        labels = _resize(out[1:], self.out_shape).argmax(0).astype(np.uint8)
        return image, labels

    def walk_strip(self, k: int, alphas: np.ndarray) -> np.ndarray:
        """Thumbnails (m, size, size) in [0, 1] of walking direction k from the base latent."""
        if self.directions is None:
            raise InputError("Discover directions first.")
        return walk(self.model, self.z, self.directions, k, alphas)[:, 0]


def _resize(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) or (C, H, W) -> same with spatial ``shape`` (bilinear)."""
    if tuple(x.shape[-2:]) == tuple(shape):
        return np.asarray(x, dtype=np.float32)
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t[None]
    out = torch.nn.functional.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0]
    return out[0].numpy() if x.ndim == 2 else out.numpy()
