"""Unconditional 2D generators with an explicit latent space: families "vae" and "gan".

Both generate an image **and its label map** from a latent vector, so that every generated
sample carries its own segmentation (used to measure what a latent direction changes).

Output of ``decode(z)`` for z of shape (B, latent_dim): (B, 1 + C, H, W) where channel 0 is the
image in [0, 1] (normalised units, see the card's ``normalization``) and channels 1..C are
label probabilities (softmax over C classes, class 0 = background).

* "vae": MONAI ``VarAutoEncoder``; ``encode(image)`` gives the posterior (mu, logvar), (B, latent_dim) each.
  Its decoder is MONAI's (``decoder="conv"``: a linear layer, then up-convolutions) or a spatial
  broadcast decoder (``decoder="broadcast"``, :class:`BroadcastDecoder`) or a decoder with one latent
  group per labelled structure (``decoder="parts"``, :class:`PartsDecoder`).
* "gan": MONAI ``Generator`` (a linear layer, then up-convolutions); no encoder, real images are
  inverted by optimisation (see :mod:`napari_medgen.tasks.latent_editor`).

``first_layer_weight()`` returns the (out_features, latent_dim) weight of the layer that reads the
latent vector: closed-form factorisation (SeFa) works on it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.nets import Discriminator, Generator, VarAutoEncoder
from torch import nn



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

    def first_layer_weight(self) -> torch.Tensor:
        """(channels, d): the linear layer that reads the latent vector."""
        return self.read.weight


def layered_log_probs(masks: torch.Tensor) -> torch.Tensor:
    """Mask logits (B, C - 1, H, W) of classes 1..C-1 -> log-probabilities (B, C, H, W) of classes 0..C-1.

    Painter's algorithm: class c shows where its mask is on and no later class's mask is, so
    p_c = m_c * prod_{c' > c} (1 - m_c') with m = sigmoid(logit); the background shows where no mask is.
    """
    off = F.logsigmoid(-masks)
    above = off.flip(1).cumsum(1).flip(1)  # sum over c' >= c of log(1 - m_c')
    later = torch.cat([above[:, 1:], torch.zeros_like(above[:, :1])], 1)  # sum over c' > c
    return torch.cat([above[:, :1], F.logsigmoid(masks) + later], 1)


class PartMLPs(nn.Module):
    """``parts`` independent coordinate MLPs, evaluated as batched matrix products.

    forward(coords (B, 2, h, w), codes (B, parts, k)) -> (B, parts, h, w): MLP p maps each pixel's
    coordinates and codes[:, p] to one value.
    """

    def __init__(self, parts: int, k: int, channels: int, layers: int):
        super().__init__()
        sizes = [2 + k] + [channels] * layers + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for cin, cout in zip(sizes[:-1], sizes[1:]):
            bound = cin ** -0.5  # nn.Linear's default initialisation range
            self.weights.append(nn.Parameter(torch.empty(parts, cin, cout).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(parts, 1, cout).uniform_(-bound, bound)))

    def forward(self, coords: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        (b, _, h, w), parts = coords.shape, codes.shape[1]
        w0 = self.weights[0]
        xy = torch.einsum("bkn,pkc->pbnc", coords.flatten(2), w0[:, :2])
        x = xy + torch.einsum("bpk,pkc->pbc", codes, w0[:, 2:])[:, :, None] + self.biases[0][:, None]
        x = x.flatten(1, 2)  # (parts, B * h * w, channels)
        for weight, bias in zip(self.weights[1:], self.biases[1:]):
            x = torch.baddbmm(bias, F.silu(x), weight)
        return x.view(parts, b, h, w).transpose(0, 1)

    def code_weights(self) -> list[torch.Tensor]:
        """Per MLP, the (channels, k) weights that read its code."""
        return [w.T for w in self.weights[0][:, 2:]]


class PartsDecoder(nn.Module):
    """Decoder with one latent group per labelled structure: z (B, d) -> logits (B, 1 + C, H, W).

    d = 1 + style_dims + (C - 1) * part_dims, read in this order:

    * z[:, 0], pose: turns the pixel coordinate grid (angle = a learned factor x z[:, 0], radians)
      for every structure at once;
    * the next ``style_dims``, appearance: each class's image intensity, decoded by a small MLP;
    * then ``part_dims`` per foreground class c = 1..C-1, its shape: class c's mask logit at each
      pixel is a coordinate MLP of the turned coordinates and this group alone (:class:`PartMLPs`,
      on a half-resolution grid, upsampled bilinearly).

    The masks are painted as layers, later classes over earlier ones (:func:`layered_log_probs`),
    and the image is the label probabilities' mix of the class intensities. A structure's shape
    can only follow its own group and the pose, what shows of it only the layers above it, and
    intensities only the appearance group, so the decoder cannot entangle structures with each
    other or with contrast; which factor each coordinate of a group learns is still left to the
    data (no factor labels are used). The label channels it returns are log-probabilities (valid
    logits: their softmax is the probabilities).
    """

    def __init__(self, n_classes: int, size: int, part_dims: int = 1, style_dims: int = 2, channels: int = 32,
                 layers: int = 3):
        super().__init__()
        self.parts, self.part_dims, self.style_dims, self.size = n_classes - 1, part_dims, style_dims, size
        self.latent_dim = 1 + style_dims + self.parts * part_dims
        self.turn = nn.Parameter(torch.tensor(0.3))
        self.style = nn.Sequential(nn.Linear(style_dims, channels), nn.SiLU(), nn.Linear(channels, n_classes))
        self.shape = PartMLPs(self.parts, part_dims, channels, layers)
        axis = torch.linspace(-1.0, 1.0, size // 2)
        self.register_buffer("coords", torch.stack(torch.meshgrid(axis, axis, indexing="ij")), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b = len(z)
        angle = self.turn * z[:, 0]
        cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
        y, x = self.coords[0], self.coords[1]
        turned = torch.stack([cos * y - sin * x, sin * y + cos * x], 1)  # (B, 2, H / 2, W / 2)
        logits = self.shape(turned, z[:, 1 + self.style_dims:].view(b, self.parts, self.part_dims))
        logits = F.interpolate(logits, size=(self.size, self.size), mode="bilinear", align_corners=False)
        log_p = layered_log_probs(logits)
        intensity = self.style(z[:, 1:1 + self.style_dims])[:, :, None, None]  # (B, C, 1, 1), logit units
        image = (log_p.exp() * intensity).sum(1, keepdim=True)
        return torch.cat([image, log_p], 1)

    def first_layer_weight(self) -> torch.Tensor:
        """(out_features, d): the weights that read each latent coordinate, block-diagonal by group."""
        return torch.block_diag(self.turn.view(1, 1), self.style[0].weight, *self.shape.code_weights())


class ImageLabelVAE(nn.Module):
    """VAE: image (B, 1, H, W) -> latent -> (image, label probabilities) (B, 1 + C, H, W).

    The encoder reads the image alone, so a real image without labels can be encoded.
    decoder: "conv" (MONAI's), "broadcast" (:class:`BroadcastDecoder`) or "parts" (:class:`PartsDecoder`,
    which fixes latent_dim = 1 + style_dims + (n_classes - 1) * part_dims; latent_dim None takes it).
    """

    def __init__(self, n_classes: int, size: int = 64, latent_dim: int | None = 16,
                 channels: tuple[int, ...] = (16, 32, 64), decoder: str = "conv", part_dims: int = 1,
                 style_dims: int = 2):
        super().__init__()
        if decoder not in ("conv", "broadcast", "parts"):
            raise ValueError(f"decoder must be 'conv', 'broadcast' or 'parts', got {decoder!r}")
        parts = PartsDecoder(n_classes, size, part_dims, style_dims) if decoder == "parts" else None
        if parts is not None and latent_dim not in (None, parts.latent_dim):
            raise ValueError(f"the parts decoder of {n_classes} classes with {part_dims} dimension(s) per part and "
                             f"{style_dims} for style reads {parts.latent_dim} latent dimensions, not {latent_dim}")
        latent_dim = parts.latent_dim if parts is not None else int(latent_dim or 16)
        self.n_classes, self.size, self.latent_dim = n_classes, size, latent_dim
        self.config = {"n_classes": n_classes, "size": size, "latent_dim": latent_dim, "channels": list(channels)}
        if decoder != "conv":
            self.config["decoder"] = decoder
        if parts is not None:
            self.config.update(part_dims=part_dims, style_dims=style_dims)
        self.net = VarAutoEncoder(spatial_dims=2, in_shape=(1, size, size), out_channels=1 + n_classes,
                                  latent_size=latent_dim, channels=tuple(channels), strides=(2,) * len(channels),
                                  use_sigmoid=False)
        self.decoder: BroadcastDecoder | PartsDecoder | None = parts  # None: MONAI's decoder
        if decoder == "broadcast":
            self.decoder = BroadcastDecoder(latent_dim, 1 + n_classes, size)
        if self.decoder is not None:
            self.net.decodeL, self.net.decode = None, None  # only MONAI's encoder is used

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: image (B, 1, H, W) in [0, 1] -> (mu, logvar), each (B, latent_dim)."""
        return self.net.encode_forward(x)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        if self.decoder is not None:
            return self.decoder(z)
        return self.net.decode_forward(z, use_sigmoid=False)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return split_output(self.decode_raw(z))

    def first_layer_weight(self) -> torch.Tensor:
        return self.decoder.first_layer_weight() if self.decoder is not None else self.net.decodeL.weight


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


def build_vae(cfg: dict[str, Any]) -> nn.Module:
    return ImageLabelVAE(**cfg)


def build_gan(cfg: dict[str, Any]) -> dict[str, nn.Module]:
    return {"generator": ImageLabelGAN(**cfg)}
