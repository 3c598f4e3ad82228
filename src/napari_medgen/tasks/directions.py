"""Latent directions found without labels, and walks along them (issue: latent-direction editing).

Methods (``discover``):

* ``sefa``: closed-form factorisation (Shen & Zhou, 2021): eigenvectors of ``WᵀW`` where W is the
  (out, d) weight of the generator's first layer (columns normalised); the directions that the
  first layer amplifies most.
* ``ganspace``: principal components of the first layer's activations over sampled latents
  (Härkönen et al., 2020), mapped back to latent space by least squares.
* ``pca``: principal components of the posterior means of real data (VAE only): the data's main
  modes of variation in latent space.
* ``ica``: independent components of the posterior means of real data (VAE only, FastICA): factors
  drawn independently mix linearly in latent space, and ICA unmixes them.
* ``axes``: the latent coordinate axes themselves (the latent traversals of Higgins et al., 2017),
  for a VAE ranked by the spread of real images' posterior means (active dimensions first). A
  VAE's diagonal posterior makes its axes, not arbitrary rotations of them, the candidates for
  factors; a VAE trained on image pairs (``--set pairs=true``) aligns them with the factors that
  change within pairs.
* ``voynov``: learned directions (Voynov & Babenko, 2020): a direction matrix and a reconstructor
  CNN are trained together so that the reconstructor can tell, from a pair (G(z), G(z + εA_k)),
  which direction k moved the image and by how much; the generator stays frozen.

Latents z: (d,) or (B, d) float32. A walk along direction k by ``alpha`` standard deviations is
``z + alpha * scale_k * v_k``. Outputs are (B, 1 + C, H, W) arrays from the model's ``decode``.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_bytes
from ..data.brain_slices import PreparedSlice, prepare_slice
from ..data.normalize import denormalize, normalize
from ..errors import InputError, ModelError
from ..models.families import load_model
from ..models.store import model_paths
from ..progress import CancelToken, Progress, run_to_completion

METHODS = ("sefa", "ganspace", "pca", "ica", "axes", "voynov")
NEEDS_IMAGES = ("pca", "ica")


@dataclass
class Directions:
    """k unit directions in a d-dimensional latent space.

    vectors: (k, d) unit rows. scales: (k,) one standard deviation of the latent distribution
    along each direction (latent units). names: editable labels shown next to the sliders.
    """

    vectors: np.ndarray
    scales: np.ndarray
    method: str
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        self.scales = np.asarray(self.scales, dtype=np.float32)
        if not self.names:
            self.names = [f"{self.method} {i}" for i in range(len(self.vectors))]

    def offset(self, alphas: np.ndarray) -> np.ndarray:
        """Latent offset (d,) for slider values ``alphas`` (k,) in standard deviations."""
        return (np.asarray(alphas, dtype=np.float32)[:, None] * self.scales[:, None] * self.vectors).sum(0)

    def save(self, path: str | Path) -> None:
        payload = {"method": self.method, "names": self.names, "scales": self.scales.tolist(),
                   "vectors": self.vectors.tolist()}
        atomic_write_bytes(path, (json.dumps(payload, indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> "Directions":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            vectors = np.asarray(d["vectors"], dtype=np.float32)
            if vectors.ndim != 2:
                raise ValueError("'vectors' must be a list of lists")
            return cls(vectors, np.asarray(d["scales"], dtype=np.float32), str(d["method"]), list(d.get("names", [])))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"Directions file '{path}' cannot be read: {exc}") from None


def latent_dim(model: nn.Module) -> int:
    return int(model.latent_dim)


def sample_latents(model: nn.Module, n: int, seed: int) -> torch.Tensor:
    """n latents from the prior N(0, I), (n, d)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, latent_dim(model), generator=g)


@torch.inference_mode()
def decode(model: nn.Module, z: np.ndarray | torch.Tensor, batch: int = 64) -> np.ndarray:
    """Latents (B, d) -> generated (B, 1 + C, H, W) float32 numpy."""
    z = torch.as_tensor(np.asarray(z, dtype=np.float32)).reshape(-1, latent_dim(model))
    return torch.cat([model.decode(z[i:i + batch]) for i in range(0, len(z), batch)]).numpy()


def walk(model: nn.Module, z: np.ndarray, directions: Directions, k: int, alphas: np.ndarray) -> np.ndarray:
    """Walk direction k from latent z (d,) at ``alphas`` (m,) std -> (m, 1 + C, H, W)."""
    z = np.asarray(z, dtype=np.float32).reshape(-1)
    steps = z[None] + np.asarray(alphas, dtype=np.float32)[:, None] * directions.scales[k] * directions.vectors[k][None]
    return decode(model, steps)


def discover(model: nn.Module, method: str = "sefa", k: int = 10, *, seed: int = 0, images: np.ndarray | None = None,
             n_samples: int = 2000, steps: int = 300, cancel: CancelToken | None = None
             ) -> Generator[Progress, None, Directions]:
    """Find k directions in ``model``'s latent space without labels.

    images: (N, H, W) real images in [0, 1], needed by ``pca`` and ``ica`` (VAE only); ``axes``
    ranks a VAE's axes by them. steps: training steps for ``voynov``. Yields Progress; returns
    Directions.
    """
    cancel = cancel or CancelToken()
    d = latent_dim(model)
    if not 1 <= k <= d:
        raise InputError(f"k must be between 1 and the latent dimension {d}, got {k}.")
    if method == "sefa":
        w = model.first_layer_weight().detach().double()
        w = w / w.norm(dim=0, keepdim=True).clamp_min(1e-12)
        evals, evecs = torch.linalg.eigh(w.T @ w)
        vectors = evecs.flip(1).T[:k].float().numpy()
        yield Progress(1, 1, "closed-form factorisation")
    elif method == "ganspace":
        vectors = yield from _ganspace(model, k, seed, n_samples, cancel)
    elif method in NEEDS_IMAGES:
        if images is None or not hasattr(model, "encode"):
            raise InputError(f"Method '{method}' needs a VAE and real images to encode.")
        mu = yield from _encode_all(model, images, cancel)
        vectors = _principal_axes(mu, k) if method == "pca" else _independent_axes(mu, k, seed)
    elif method == "axes":
        vectors = np.eye(d, dtype=np.float32)
        if images is not None and hasattr(model, "encode"):
            mu = yield from _encode_all(model, images, cancel)
            vectors = vectors[np.argsort(-mu.std(0), kind="stable")]
        vectors = vectors[:k]
    elif method == "voynov":
        vectors = yield from _voynov(model, k, seed, steps, cancel)
    else:
        raise InputError(f"Unknown discovery method '{method}': use one of {', '.join(METHODS)}.")
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scales = _latent_scales(model, vectors, images, seed)
    return Directions(vectors.astype(np.float32), scales, method)


def _latent_scales(model: nn.Module, vectors: np.ndarray, images: np.ndarray | None, seed: int) -> np.ndarray:
    """Std of the latent distribution along each direction: the posterior means' spread for a VAE
    with data, else 1 (the prior N(0, I) has unit std along every unit direction)."""
    if images is not None and hasattr(model, "encode"):
        mu = run_to_completion(_encode_all(model, images, CancelToken()))
        return (mu @ vectors.T).std(0).astype(np.float32) + 1e-6
    return np.ones(len(vectors), dtype=np.float32)


def _principal_axes(x: np.ndarray, k: int) -> np.ndarray:
    """Top-k principal axes (k, m) of rows of x (n, m)."""
    xc = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return vt[:k]


def _independent_axes(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Latent directions (k, m) of k independent components of rows of x (n, m): the mixing columns."""
    from sklearn.decomposition import FastICA

    ica = FastICA(n_components=k, whiten="unit-variance", random_state=seed, max_iter=2000, tol=1e-4)
    ica.fit(x)
    return ica.mixing_.T


def _encode_all(model: nn.Module, images: np.ndarray, cancel: CancelToken, batch: int = 128
                ) -> Generator[Progress, None, np.ndarray]:
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None]
    out = []
    n_batches = (len(x) + batch - 1) // batch
    with torch.inference_mode():
        for i in range(n_batches):
            cancel.check()
            out.append(model.encode(x[i * batch:(i + 1) * batch])[0])
            yield Progress(i + 1, n_batches, "encoding images")
    return torch.cat(out).numpy()


def _first_layer(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    w = model.first_layer_weight()
    return torch.relu(z @ w.T)


def _ganspace(model: nn.Module, k: int, seed: int, n: int, cancel: CancelToken) -> Generator[Progress, None, np.ndarray]:
    z = sample_latents(model, n, seed)
    with torch.inference_mode():
        feats = _first_layer(model, z).numpy()
    cancel.check()
    comps = _principal_axes(feats, k)  # (k, m)
    coords = (feats - feats.mean(0)) @ comps.T  # (n, k)
    # latent direction of component j: least-squares map from component coordinates to z
    sol, *_ = np.linalg.lstsq(coords, z.numpy() - z.numpy().mean(0), rcond=None)  # (k, d)
    yield Progress(1, 1, "principal components of first-layer features")
    return sol


class _Reconstructor(nn.Module):
    """Small CNN: (G(z), G(z')) -> (logits over k directions, shift magnitude)."""

    def __init__(self, channels: int, k: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2 * channels, 32, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 64, 3, 2, 1), nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.which = nn.Linear(64, k)
        self.shift = nn.Linear(64, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(torch.cat([a, b], 1))
        return self.which(h), self.shift(h).squeeze(1)


def _voynov(model: nn.Module, k: int, seed: int, steps: int, cancel: CancelToken, batch: int = 32,
            max_shift: float = 4.0) -> Generator[Progress, None, np.ndarray]:
    torch.manual_seed(seed)
    d = latent_dim(model)
    for p in model.parameters():
        p.requires_grad_(False)
    a = nn.Parameter(torch.linalg.qr(torch.randn(d, k))[0].T.contiguous())  # (k, d)
    with torch.no_grad():
        channels = model.decode(torch.zeros(1, d)).shape[1]
    recon = _Reconstructor(channels, k)
    opt = torch.optim.Adam([a, *recon.parameters()], lr=1e-3)
    for step in range(steps):
        cancel.check()
        z = torch.randn(batch, d)
        which = torch.randint(0, k, (batch,))
        eps = (torch.rand(batch) * 2 - 1) * max_shift
        eps = torch.where(eps.abs() < 0.5, torch.sign(eps + 1e-9) * 0.5, eps)
        dirs = a / a.norm(dim=1, keepdim=True)
        z2 = z + eps[:, None] * dirs[which]
        logits, shift = recon(model.decode(z), model.decode(z2))
        loss = nn.functional.cross_entropy(logits, which) + 0.25 * (shift - eps).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        yield Progress(step + 1, steps, "learning directions", metrics={"loss": loss.item()})
    for p in model.parameters():
        p.requires_grad_(True)
    return (a / a.norm(dim=1, keepdim=True)).detach().numpy()


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


# --- measuring what a direction changes (phantom models: each sample carries its own labels) ---

FACTOR_ESTIMATES = {
    "tumour size": "tumour area (cm²)",
    "breathing": "lung area incl. tumour (cm²)",
    "heart size": "LV blood-pool area (cm²)",
    "body size": "body area (cm²)",
    "rotation": "body principal-axis angle (degrees)",
    "style": "contrast pattern: r(per-label medians, vendor A's means) - r(..., vendor B's means)",
}


def phantom_factors(generated: np.ndarray, pixel_mm: float) -> dict[str, np.ndarray]:
    """Estimate the phantom's factors of generated samples (B, 1 + C, H, W) -> {factor: (B,)}.

    Uses the phantom's own estimator (:func:`napari_medgen.data.phantom.estimate_factors`) on the
    generated label map (argmax) of each sample, seen as one 1 mm slice so that volumes in ml are
    areas in cm² x 0.1. See :data:`FACTOR_ESTIMATES`; each estimate follows its own factor on true
    phantoms and none of the others (tests/tasks/test_directions.py checks this).
    """
    from ..data.phantom import STYLE_TABLES, estimate_factors
    from ..io.volume import Volume

    table_a, table_b = (np.array([STYLE_TABLES[s][k][0] for k in range(1, 8)]) for s in ("mr_vendor_a", "mr_vendor_b"))

    labels = generated[:, 1:].argmax(1).astype(np.uint8)
    out: dict[str, list[float]] = {k: [] for k in FACTOR_ESTIMATES}
    for img, lab in zip(generated[:, 0], labels, strict=True):
        f = estimate_factors(Volume(lab[None], spacing=(pixel_mm, pixel_mm, 1.0), is_label=True))
        medians = np.array([np.median(img[lab == k]) if (lab == k).any() else np.nan for k in range(1, 8)])
        ok = np.isfinite(medians)
        out["tumour size"].append(f["tumour_volume_ml"] * 10)
        out["breathing"].append(f["lung_volume_ml"] * 10)
        out["heart size"].append(f["lv_volume_ml"] * 10)
        out["body size"].append(f["body_area_cm2"])
        out["rotation"].append(f["rotation_deg"])
        out["style"].append(float(np.corrcoef(medians[ok], table_a[ok])[0, 1] - np.corrcoef(medians[ok], table_b[ok])[0, 1])
                            if ok.sum() >= 3 else 0.0)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def disentanglement(model: nn.Module, directions: Directions, pixel_mm: float, *, n_bases: int = 12,
                    alphas: np.ndarray | None = None, seed: int = 0, static: float = 0.1,
                    cancel: CancelToken | None = None) -> Generator[Progress, None, tuple[np.ndarray, list[str]]]:
    """Correlation between walking each direction and each phantom factor.

    For each direction, ``n_bases`` random latents are walked over ``alphas`` (std, default -3..3
    in 7 steps); the Pearson r between alpha and each factor estimate is computed within walks
    (each walk's mean removed, then pooled). A factor that barely moves along a direction (its
    within-walk spread below ``static`` x its spread over 200 random samples of the model) gets
    r = 0: the correlation of a near-constant is dominated by tiny systematic drifts, not by change.
    Returns (r (k, n_factors), factor names).
    """
    cancel = cancel or CancelToken()
    alphas = np.linspace(-3, 3, 7) if alphas is None else np.asarray(alphas, dtype=np.float64)
    names = list(FACTOR_ESTIMATES)
    population = phantom_factors(decode(model, sample_latents(model, 200, seed + 1)), pixel_mm)
    spread = np.array([np.nanstd(population[n]) for n in names])
    bases = sample_latents(model, n_bases, seed).numpy()
    table = np.zeros((len(directions.vectors), len(names)))
    for k in range(len(directions.vectors)):
        cancel.check()
        xs, ys = [], {n: [] for n in names}
        for z in bases:
            f = phantom_factors(walk(model, z, directions, k, alphas), pixel_mm)
            xs.append(alphas - alphas.mean())
            for n in names:
                ys[n].append(f[n] - f[n].mean())
        x = np.concatenate(xs)
        for j, n in enumerate(names):
            y = np.nan_to_num(np.concatenate(ys[n]))
            moves = y.std() > static * spread[j]
            table[k, j] = float(np.corrcoef(x, y)[0, 1]) if moves and y.std() > 1e-12 else 0.0
        yield Progress(k + 1, len(directions.vectors), f"measured direction {k + 1}")
    return table, names


def dominated(table: np.ndarray, strong: float = 0.7, weak: float = 0.3) -> list[tuple[int, int]]:
    """(direction, factor) pairs where |r| >= strong for that factor and <= weak for all others."""
    out = []
    for k, row in enumerate(np.abs(table)):
        j = int(row.argmax())
        if row[j] >= strong and np.all(np.delete(row, j) <= weak):
            out.append((k, j))
    return out


@torch.inference_mode()
def reconstruction_quality(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 64) -> dict[str, Any]:
    """How well a VAE reproduces real data: encode images (N, H, W) in [0, 1], decode the posterior means.

    Returns {"dice": {class: mean Dice over the images whose true map holds it}, "psnr_db": mean PSNR
    of the decoded image (peak 1), "n_images": N}; labels (N, H, W) integer classes.
    """
    from .usefulness import dice_per_class

    if not hasattr(model, "encode"):
        raise InputError("The reconstruction check needs a VAE (a model with an encoder).")
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None]
    out = torch.cat([model.decode(model.encode(x[i:i + batch])[0]) for i in range(0, len(x), batch)]).numpy()
    per_class = dice_per_class(out[:, 1:].argmax(1), np.asarray(labels), out.shape[1] - 1)
    dice = {str(c + 1): round(float(d), 4) for c, d in enumerate(per_class) if np.isfinite(d)}
    mse = ((out[:, 0] - np.asarray(images)) ** 2).mean(axis=(1, 2))
    psnr = float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))
    return {"dice": dice, "psnr_db": round(psnr, 2), "n_images": len(x)}


class LatentEditor:
    """A latent model, its directions and a current base latent: the fast path behind the sliders.

    model_path: a "vae" or "gan" model. Directions saved for it live next to it as
    ``NAME.directions.json`` (:meth:`directions_path`). Images are 2D (H, W) in the model's input
    intensity units; ``render`` returns them at ``out_shape`` (the inverted image's shape, else
    the model's size). A brain model (trained on :data:`..training.latent_trainers.BRAIN_DATA`)
    inverts a scan's slice as its training slices were prepared (:mod:`..data.brain_slices`: brain
    mask, in-brain percentiles, pixel size, centring) and renders back into that slice, in its units.
    """

    def __init__(self, model_path: str | Path, device: str = "cpu"):
        modules, self.card = load_model(model_path, device)
        if self.card["family"] not in ("vae", "gan"):
            raise ModelError(f"Model '{model_path}' is a '{self.card['family']}' model; latent editing needs a "
                             f"'vae' or 'gan' model.")
        self.path = Path(model_path)
        self.model = modules.get("model") or modules["generator"]
        self.size = int(self.model.size)
        self.pixel_mm = float((self.card.get("voxel_mm") or [384.0 / self.size])[0])
        self.z = np.zeros(latent_dim(self.model), dtype=np.float32)
        self.out_shape = (self.size, self.size)
        self.prepared: PreparedSlice | None = None  # the inverted brain slice's preparation (its units, grid)
        saved = self.directions_path()
        self.directions: Directions | None = Directions.load(saved) if saved.is_file() else None

    def directions_path(self) -> Path:
        return model_paths(self.path)[1].with_suffix(".directions.json")

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

            raw, labels, _ = training_slices(self.size)
            raw, labels = raw[:n], labels[:n]
        return normalize(raw, self.card["normalization"]), labels

    def random_base(self, seed: int) -> None:
        self.z = sample_latents(self.model, 1, seed).numpy()[0]
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
        out = decode(self.model, z[None])[0]
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
