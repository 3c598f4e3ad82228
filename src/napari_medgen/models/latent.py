"""Unconditional 2D generators with an explicit latent space: families "vae" and "gan".

Both generate an image **and its label map** from a latent vector, so that every generated
sample carries its own segmentation (used to measure what a latent direction changes).

Output of ``decode(z)`` for z of shape (B, latent_dim): (B, 1 + C, H, W) where channel 0 is the
image in [0, 1] (normalised units, see the card's ``normalization``) and channels 1..C are
label probabilities (softmax over C classes, class 0 = background).

* "vae": MONAI ``VarAutoEncoder``; ``encode(image)`` gives the posterior (mu, logvar), (B, latent_dim) each.
  Its decoder is MONAI's (``decoder="conv"``: a linear layer, then up-convolutions) or a spatial
  broadcast decoder (``decoder="broadcast"``, :class:`BroadcastDecoder`).
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


class BroadcastDecoder(nn.Module):
    """Spatial broadcast decoder (Watters et al. 2019): z (B, d) -> logits (B, out_channels, size, size).

    The latent vector is read by one linear layer, tiled over a (size / 2)^2 grid together with the
    grid's pixel coordinates, decoded there by 3x3 convolutions and upsampled once. Every pixel
    sees the whole latent vector and its own position, so position, size and rotation need not be
    spread over many latent units; this favours latent spaces whose directions change one
    anatomical factor at a time.
    """

    def __init__(self, latent_dim: int, out_channels: int, size: int, channels: int = 32, layers: int = 3):
        super().__init__()
        self.grid = size // 2
        self.read = nn.Linear(latent_dim, channels)
        self.where = nn.Conv2d(2, channels, 1, bias=False)
        body: list[nn.Module] = []
        for _ in range(layers):
            body += [nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1)]
        self.body = nn.Sequential(*body, nn.ReLU(), nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1),
                                  nn.ReLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        axis = torch.linspace(-1.0, 1.0, self.grid)
        self.register_buffer("coords", torch.stack(torch.meshgrid(axis, axis, indexing="ij"))[None], persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.read(z)[:, :, None, None] + self.where(self.coords))


class ImageLabelVAE(nn.Module):
    """VAE: image (B, 1, H, W) -> latent -> (image, label probabilities) (B, 1 + C, H, W).

    The encoder reads the image alone, so a real image without labels can be encoded.
    decoder: "conv" (MONAI's) or "broadcast" (:class:`BroadcastDecoder`).
    """

    def __init__(self, n_classes: int, size: int = 64, latent_dim: int = 16, channels: tuple[int, ...] = (16, 32, 64),
                 decoder: str = "conv"):
        super().__init__()
        if decoder not in ("conv", "broadcast"):
            raise ValueError(f"decoder must be 'conv' or 'broadcast', got {decoder!r}")
        self.n_classes, self.size, self.latent_dim = n_classes, size, latent_dim
        self.config = {"n_classes": n_classes, "size": size, "latent_dim": latent_dim, "channels": list(channels)}
        if decoder != "conv":
            self.config["decoder"] = decoder
        self.net = VarAutoEncoder(spatial_dims=2, in_shape=(1, size, size), out_channels=1 + n_classes,
                                  latent_size=latent_dim, channels=tuple(channels), strides=(2,) * len(channels),
                                  use_sigmoid=False)
        self.broadcast = None
        if decoder == "broadcast":
            self.net.decodeL, self.net.decode = None, None  # only MONAI's encoder is used
            self.broadcast = BroadcastDecoder(latent_dim, 1 + n_classes, size)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: image (B, 1, H, W) in [0, 1] -> (mu, logvar), each (B, latent_dim)."""
        return self.net.encode_forward(x)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        if self.broadcast is not None:
            return self.broadcast(z)
        return self.net.decode_forward(z, use_sigmoid=False)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return split_output(self.decode_raw(z))

    def first_layer_weight(self) -> torch.Tensor:
        return self.broadcast.read.weight if self.broadcast is not None else self.net.decodeL.weight


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
