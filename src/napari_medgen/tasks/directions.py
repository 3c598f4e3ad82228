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
``z + alpha * scale_k * v_k``. Outputs are (B, 1 + C, H, W) arrays from the model's ``decode``
(:mod:`..models.latent_handle`). What a direction changes is measured in :mod:`.direction_measures`;
the editor behind the sliders (inversion of a slice, rendering) is :mod:`.latent_editor`.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_bytes
from ..errors import InputError, ModelError
from ..models.latent_handle import decode, latent_dim, sample_latents
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
