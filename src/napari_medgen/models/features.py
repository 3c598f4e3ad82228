"""Feature extractors for Fréchet distance / MMD: the shipped encoder, or a user's local ResNet.

* Family ``feature_encoder``: a small 2D MONAI ResNet (``feed_forward=False``: global-average-pooled
  features) trained by :mod:`napari_medgen.training.feature_trainer` on the sample data and shipped
  as ``sample_data/models/feature_encoder``.
* A local torchvision-style ResNet (e.g. RadImageNet ResNet-50) or MedicalNet 3D ResNet state dict
  (``.pt``/``.pth`` read with ``torch.load(weights_only=True)``, or ``.safetensors``): its depth,
  block type, shortcut type, dimensionality and input channels are read from the keys and the
  weights are loaded into MONAI's :class:`~monai.networks.nets.ResNet`. Nothing is downloaded and
  nothing is unpickled.

Every extractor maps images ``(n, y, x)`` (any intensity unit) to features ``(n, d)``: each image
is scaled to [0, 1] by its own 1st/99th percentiles and resized to the network's input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet

from ..errors import ModelError
from .store import load_family, model_paths

FAMILY = "feature_encoder"
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "sample_data" / "models" / "feature_encoder"


def build_feature_encoder(cfg: dict[str, Any]) -> dict[str, torch.nn.Module]:
    """A 2D ResNet encoder: (b, 1, s, s) -> (b, block_inplanes[-1]) pooled features."""
    return {"encoder": ResNet(block="basic", layers=list(cfg.get("layers", [1, 1, 1, 1])),
                              block_inplanes=list(cfg.get("block_inplanes", [16, 32, 64, 128])), spatial_dims=2,
                              n_input_channels=1, conv1_t_size=5, conv1_t_stride=1, no_max_pool=True,
                              feed_forward=False)}


def scale_unit(images: np.ndarray) -> np.ndarray:
    """Scale each image of (n, ...) to [0, 1] by its own 1st/99th percentiles (clipped); float32."""
    x = np.asarray(images, dtype=np.float32)
    flat = x.reshape(len(x), -1)
    lo = np.percentile(flat, 1, axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    hi = np.percentile(flat, 99, axis=1).reshape((-1,) + (1,) * (x.ndim - 1))
    return np.clip((x - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


@dataclass
class FeatureExtractor:
    """A network mapping (b, c, *size) in [0, 1] to (b, d); call it with images (n, y, x) or (n, z, y, x)."""

    net: torch.nn.Module
    size: tuple[int, ...]
    in_channels: int
    name: str
    device: torch.device = torch.device("cpu")

    @property
    def spatial_dims(self) -> int:
        return len(self.size)

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """images (n, y, x) for a 2D network or (n, z, y, x) for a 3D one -> features (n, d) float64."""
        x = np.asarray(images)
        if x.ndim != self.spatial_dims + 1:
            raise ModelError(f"Feature extractor '{self.name}' is {self.spatial_dims}D: it needs "
                             f"{self.spatial_dims + 1}D input (n, ...), got shape {x.shape}.")
        out = []
        self.net.eval()
        for i in range(0, len(x), batch_size):
            t = prepare(x[i:i + batch_size], self.size).to(self.device)
            out.append(self.net(t.expand(-1, self.in_channels, *self.size)).flatten(1).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0))


def prepare(images: np.ndarray, size: tuple[int, ...]) -> torch.Tensor:
    """Images (n, y, x) or (n, z, y, x), any units -> (n, 1, *size) float32 in [0, 1] (scale_unit + resize)."""
    t = torch.from_numpy(scale_unit(images)).unsqueeze(1)
    if tuple(t.shape[2:]) == tuple(size):
        return t
    return F.interpolate(t, size=tuple(size), mode="bilinear" if len(size) == 2 else "trilinear", align_corners=False)


def load_extractor(spec: str | Path = "default", device: torch.device | str = "cpu") -> FeatureExtractor:
    """"default" = the shipped encoder; a model NAME/.json with a medgen card; or a local ResNet state dict."""
    device = torch.device(device)
    path = DEFAULT_MODEL if str(spec) == "default" else Path(spec)
    weights, card_path = model_paths(path)
    if card_path.is_file() and weights.is_file():
        modules, card = load_family(path, FAMILY, build_feature_encoder, device)
        size = int(card["network"].get("input_size", 64))
        return FeatureExtractor(modules["encoder"], (size, size), 1, card_path.stem, device)
    if str(spec) == "default":
        raise ModelError(f"The shipped feature encoder '{card_path}' is missing: reinstall napari-medgen "
                         "or train it with scripts/train_models.sh.")
    return load_resnet_extractor(path, device)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local checkpoint (.safetensors, or .pt/.pth via torch.load(weights_only=True)).

    Unwraps {"state_dict": ...}/{"model": ...} and strips DataParallel's ``module.`` prefixes.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Feature extractor weights '{path}' do not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable/unsafe file ends here, as a plain message
        raise ModelError(f"Cannot read '{path}' as a weights file (safetensors, or a plain torch state dict "
                         f"loadable with weights_only=True): {str(exc)[:300]}") from None
    for key in ("state_dict", "model", "net"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"'{path}' does not hold a state dict of tensors.")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_resnet_extractor(path: str | Path, device: torch.device | str = "cpu", size: int | None = None) -> FeatureExtractor:
    """Build MONAI's ResNet matching a torchvision/RadImageNet (2D) or MedicalNet (3D) state dict.

    Features are the pooled output of the last stage (2048-d for ResNet-50, 512-d for ResNet-18).
    size: input edge length (default 224 for 2D, 64 for 3D).
    """
    sd = read_state_dict(path)
    if "conv1.weight" not in sd or "layer1.0.conv1.weight" not in sd:
        raise ModelError(f"'{path}' is not a ResNet state dict (no conv1/layer1 weights found).")
    w = sd["conv1.weight"]
    dims = w.ndim - 2
    bottleneck = "layer1.0.conv3.weight" in sd
    layers = [len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    inplanes = [int(sd[f"layer{i}.0.conv1.weight"].shape[0]) for i in range(1, 5)]
    has_down = "layer2.0.downsample.0.weight" in sd
    net = ResNet(block="bottleneck" if bottleneck else "basic", layers=layers, block_inplanes=inplanes,
                 spatial_dims=dims, n_input_channels=int(w.shape[1]), conv1_t_size=int(w.shape[-1]),
                 conv1_t_stride=2, shortcut_type="B" if has_down else "A",
                 bias_downsample="layer2.0.downsample.0.bias" in sd, feed_forward=False)
    body = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(body, strict=False)
    except RuntimeError as exc:
        raise ModelError(f"'{path}': weights do not fit a ResNet{sum(layers) * (3 if bottleneck else 2) + 2}: "
                         f"{str(exc)[:300]}") from None
    if missing or unexpected:
        raise ModelError(f"'{path}' does not match a standard ResNet: missing {missing[:5]}, unexpected {unexpected[:5]}.")
    edge = size or (224 if dims == 2 else 64)
    return FeatureExtractor(net.to(device).eval(), (edge,) * dims, int(w.shape[1]), Path(path).name, torch.device(device))
