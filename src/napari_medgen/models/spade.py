"""Family "spade": label-to-image synthesis with MONAI's SPADENet (a VAE-GAN with a style encoder).

Shapes: labels are one-hot ``(B, n_classes, *input_shape)`` float; images ``(B, 1, *input_shape)``
in normalised intensity units; a style is a vector ``(B, z_dim)``. ``input_shape`` is ``(y, x)``
for the default 2D model (``spatial_dims=2``) or ``(z, y, x)`` for the 3D option; every entry
must be divisible by ``2 ** len(channels)``.

MONAI's decoder runs its last SPADE block at half the input resolution. A small head at full
resolution (a 3x3 convolution over the decoder's features concatenated with the one-hot
labels) restores sharp label borders.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import SPADENet

from .store import register_family

DEFAULTS: dict[str, Any] = {
    "spatial_dims": 2,
    "n_classes": 4,
    "input_shape": [128, 128],
    "channels": [16, 32, 64],
    "z_dim": 8,
    "spade_hidden": 32,
    "head_channels": 8,
}


class SpadeGenerator(torch.nn.Module):
    """SPADENet (style encoder + SPADE decoder) followed by a full-resolution, label-aware head."""

    def __init__(self, spatial_dims: int, n_classes: int, input_shape: list[int], channels: list[int],
                 z_dim: int, spade_hidden: int, head_channels: int):
        super().__init__()
        self.n_classes = n_classes
        self.z_dim = z_dim
        self.input_shape = tuple(input_shape)
        act = ("LEAKYRELU", {"negative_slope": 0.2})
        # SPADENet reverses and extends the channel list it is given: pass a copy.
        self.net = SPADENet(spatial_dims=spatial_dims, in_channels=1, out_channels=head_channels,
                            label_nc=n_classes, input_shape=list(input_shape), channels=list(channels),
                            z_dim=z_dim, is_vae=True, spade_intermediate_channels=spade_hidden,
                            norm="INSTANCE", act=act, last_act=act, upsampling_mode="bilinear")
        self.head = Convolution(spatial_dims, head_channels + n_classes, 1, kernel_size=3,
                                act=None, norm=None, conv_only=True)

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image (B, 1, *input_shape) -> (mu, logvar), each (B, z_dim)."""
        return self.net.encoder(image)

    def decode(self, onehot: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """One-hot labels (B, C, *input_shape) and style z (B, z_dim) -> image (B, 1, *input_shape)."""
        features = self.net.decode(onehot, z)
        return self.head(torch.cat([features, onehot], dim=1))

    def forward(self, onehot: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """VAE pass for training: (reconstruction, mu, logvar), z drawn by reparameterisation."""
        mu, logvar = self.encode(image)
        z = self.net.encoder.reparameterize(mu, logvar)
        return self.decode(onehot, z), mu, logvar


def network_config(**overrides: Any) -> dict[str, Any]:
    """The card's ``network`` entry: DEFAULTS updated with ``overrides`` (plain JSON values)."""
    cfg = {**DEFAULTS, **overrides}
    cfg["input_shape"] = [int(s) for s in cfg["input_shape"]]
    cfg["channels"] = [int(c) for c in cfg["channels"]]
    return cfg


@register_family("spade")
def build_spade(config: dict[str, Any]) -> dict[str, torch.nn.Module]:
    """Network config (see DEFAULTS) -> {"generator": SpadeGenerator}."""
    cfg = network_config(**config)
    return {"generator": SpadeGenerator(cfg["spatial_dims"], cfg["n_classes"], cfg["input_shape"], cfg["channels"],
                                        cfg["z_dim"], cfg["spade_hidden"], cfg["head_channels"])}
