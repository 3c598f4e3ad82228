"""The scanner's noise, kept apart from the anatomy a generator draws.

A deterministic generator cannot draw a scan's random acquisition noise pixel for pixel; asked to
fool a discriminator that sees noisy real images, it invents structured texture instead (swirls in
the air around the body). So a model may carry an explicit noise model, measured on its training
images: the generator draws the noise-free image, and the noise is added after it, at training
(before the discriminator) and at synthesis.

* ``rician``: MR magnitude images, ``|s + n1 + i n2|`` with n1, n2 ~ N(0, sigma^2). In air (s = 0) the
  magnitude is Rayleigh distributed with E[m^2] = 2 sigma^2, so sigma = sqrt(mean(m^2) / 2) over
  background pixels far from any label.
* ``gaussian``: CT, ``s + n`` with n ~ N(0, sigma^2); sigma = the background's standard deviation.

sigma is in the images' raw intensity units. The card entry is ``acquisition_noise``:
``{"kind": "rician", "sigma": 0.02, "measured_on": "..."}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage, special

from ..errors import InputError, ModelError

KINDS = ("rician", "gaussian")
BACKGROUND_MARGIN_PX = 3  # background pixels at least this far from any label measure the noise


def check_kind(kind: str) -> None:
    """InputError unless ``kind`` is one of KINDS."""
    if kind not in KINDS:
        raise InputError(f"Unknown acquisition noise '{kind}': use {' or '.join(KINDS)}.")


@dataclass(frozen=True)
class NoiseModel:
    """Additive acquisition noise of ``kind`` with standard deviation ``sigma`` (raw intensity units)."""

    kind: str
    sigma: float

    def __post_init__(self) -> None:
        check_kind(self.kind)
        if not np.isfinite(self.sigma) or self.sigma < 0:
            raise InputError(f"The acquisition noise sigma must be a finite number >= 0, not {self.sigma}.")

    def apply(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise-free image (any shape, raw units) -> the same with noise; differentiable in ``image``.
        Noise is drawn on the CPU with ``generator`` (reproducible across devices)."""
        n = torch.randn((2 if self.kind == "rician" else 1, *image.shape), generator=generator).to(image) * self.sigma
        if self.kind == "gaussian":
            return image + n[0]
        return torch.sqrt((image + n[0]) ** 2 + n[1] ** 2 + 1e-12)

    def mean_level(self, signal: np.ndarray) -> np.ndarray:
        """Expected recorded intensity of a noise-free ``signal`` (raw units): the Rician mean
        sigma sqrt(pi/2) L_1/2(-s^2 / 2 sigma^2) (sigma sqrt(pi/2) in air), or the signal itself for Gaussian noise."""
        if self.kind == "gaussian":
            return np.asarray(signal, np.float64)
        s = np.abs(np.asarray(signal, np.float64))
        if self.sigma == 0:
            return s
        x = s ** 2 / (4.0 * self.sigma ** 2)  # exponentially scaled Bessel functions keep large x finite
        return self.sigma * np.sqrt(np.pi / 2.0) * ((1.0 + 2.0 * x) * special.i0e(x) + 2.0 * x * special.i1e(x))

    def signal_for_level(self, level: np.ndarray) -> np.ndarray:
        """The noise-free signal whose expected recorded intensity is ``level`` (inverse of :meth:`mean_level`;
        levels at or below the noise floor sigma sqrt(pi/2) give 0)."""
        level = np.asarray(level, np.float64)
        if self.kind == "gaussian" or self.sigma == 0:
            return level
        grid = np.linspace(0.0, float(np.nanmax(level, initial=0.0)) + 10.0 * self.sigma, 4096)
        return np.interp(level, self.mean_level(grid), grid)

    def to_card(self, measured_on: str) -> dict[str, Any]:
        return {"kind": self.kind, "sigma": round(float(self.sigma), 6), "measured_on": measured_on}

    @classmethod
    def from_card(cls, entry: Any, where: str) -> NoiseModel | None:
        """The card's ``acquisition_noise`` entry (or None) -> NoiseModel; ModelError naming ``where``."""
        if entry is None:
            return None
        try:
            return cls(str(entry["kind"]), float(entry["sigma"]))
        except (KeyError, TypeError, ValueError, InputError) as exc:
            raise ModelError(f"Model card '{where}': entry 'acquisition_noise' is not a noise model ({exc}).") from exc


def estimate(images: np.ndarray, labels: np.ndarray, kind: str) -> NoiseModel:
    """Measure the noise of raw ``images`` (n, y, x) in their background: label-0 pixels at least
    BACKGROUND_MARGIN_PX from any label in ``labels`` (n, y, x). InputError for an unknown kind or when too few exist."""
    check_kind(kind)
    far = ~ndimage.binary_dilation(labels > 0, np.ones((1, 3, 3), bool), iterations=BACKGROUND_MARGIN_PX)
    values = np.asarray(images, np.float64)[far]
    if values.size < 1000:
        raise InputError(f"Only {values.size} background pixels lie {BACKGROUND_MARGIN_PX}+ pixels from every label: "
                         "too few to measure the acquisition noise. Train without a noise model.")
    sigma = np.sqrt(np.mean(values ** 2) / 2.0) if kind == "rician" else float(values.std())
    return NoiseModel(kind, float(sigma))
