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
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.nets import PatchDiscriminator
from torch import nn



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
