"""Unconditional 2D generators with an explicit latent space: families "vae" and "gan".

Both generate an image **and its label map** from a latent vector, so that every generated
sample carries its own segmentation (used to measure what a latent direction changes).

Output of ``decode(z)`` for z of shape (B, latent_dim): (B, 1 + C, H, W) where channel 0 is the
image in [0, 1] (normalised units, see the card's ``normalization``) and channels 1..C are
label probabilities (softmax over C classes, class 0 = background).

* "vae": MONAI ``VarAutoEncoder``; ``encode(image)`` gives the posterior (mu, logvar), (B, latent_dim) each.
* "gan": MONAI ``Generator`` (a linear layer, then up-convolutions); no encoder, real images are
  inverted by optimisation (see :mod:`napari_medgen.tasks.directions`).

``first_layer_weight()`` returns the (out_features, latent_dim) weight of the layer that reads the
latent vector: closed-form factorisation (SeFa) works on it.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets import Discriminator, Generator, VarAutoEncoder
from torch import nn

from .store import register_family


def split_output(raw: torch.Tensor) -> torch.Tensor:
    """Raw network output (B, 1 + C, H, W) -> image in [0, 1] and label probabilities."""
    return torch.cat([torch.sigmoid(raw[:, :1]), torch.softmax(raw[:, 1:], dim=1)], dim=1)


class ImageLabelVAE(nn.Module):
    """VAE: image (B, 1, H, W) -> latent -> (image, label probabilities) (B, 1 + C, H, W).

    The encoder reads the image alone, so a real image without labels can be encoded.
    """

    def __init__(self, n_classes: int, size: int = 64, latent_dim: int = 16, channels: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        self.n_classes, self.size, self.latent_dim = n_classes, size, latent_dim
        self.config = {"n_classes": n_classes, "size": size, "latent_dim": latent_dim, "channels": list(channels)}
        self.net = VarAutoEncoder(spatial_dims=2, in_shape=(1, size, size), out_channels=1 + n_classes,
                                  latent_size=latent_dim, channels=tuple(channels), strides=(2,) * len(channels),
                                  use_sigmoid=False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: image (B, 1, H, W) in [0, 1] -> (mu, logvar), each (B, latent_dim)."""
        return self.net.encode_forward(x)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.decode_forward(z, use_sigmoid=False)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return split_output(self.decode_raw(z))

    def first_layer_weight(self) -> torch.Tensor:
        return self.net.decodeL.weight


class ImageLabelGAN(nn.Module):
    """GAN generator z (B, latent_dim) -> (B, 1 + C, H, W) logits, built on MONAI's Generator."""

    def __init__(self, n_classes: int, size: int = 64, latent_dim: int = 32, channels: tuple[int, ...] = (64, 32, 16)):
        super().__init__()
        self.n_classes, self.size, self.latent_dim = n_classes, size, latent_dim
        self.config = {"n_classes": n_classes, "size": size, "latent_dim": latent_dim, "channels": list(channels)}
        n_up = len(channels)
        start = size // 2 ** n_up
        self.net = Generator(latent_shape=(latent_dim,), start_shape=(channels[0], start, start),
                             channels=tuple(channels[1:]) + (1 + n_classes,), strides=(2,) * n_up, num_res_units=1)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return split_output(self.decode_raw(z))

    def first_layer_weight(self) -> torch.Tensor:
        return self.net.linear.weight


def make_discriminator(n_classes: int, size: int, channels: tuple[int, ...] = (16, 32, 64)) -> nn.Module:
    """MONAI Discriminator over (image, label probabilities), outputs one logit per sample."""
    return Discriminator(in_shape=(1 + n_classes, size, size), channels=tuple(channels) + (1,),
                         strides=(2,) * len(channels) + (1,), num_res_units=1, last_act=None, dropout=0.1)


@register_family("vae")
def build_vae(cfg: dict[str, Any]) -> nn.Module:
    return ImageLabelVAE(**cfg)


@register_family("gan")
def build_gan(cfg: dict[str, Any]) -> dict[str, nn.Module]:
    return {"generator": ImageLabelGAN(**cfg)}
