"""The small segmentation network the usefulness experiments train: a MONAI UNet on 2D slices.

Images are (n, y, x) float32 in [0, 1] (each scaled by its own percentiles, :func:`..models.features.scale_unit`),
labels (n, y, x) int64 model classes 0..n_classes-1. Training: Adam, Dice + cross-entropy, left-right
flips, optionally MONAI's conventional augmentation (:func:`conventional_augmentation`) and a fixed
share of every batch drawn from a second ("extra") set. Scoring: MONAI's Dice per foreground class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.metrics import compute_dice
from monai.networks.nets import UNet
from monai.transforms import (Compose, Rand2DElasticd, RandAdjustContrastd, RandBiasFieldd, RandGaussianNoised,
                              RandGaussianSmoothd, RandHistogramShiftd, RandScaleIntensityd)

from ..progress import CancelToken, Progress, Task

IMAGE, LABEL = "image", "label"


@dataclass
class SegData:
    """images (n, y, x) float32 in [0, 1], labels (n, y, x) int64 model classes; names {class: name}."""

    images: np.ndarray
    labels: np.ndarray
    names: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray) -> "SegData":
        return SegData(self.images[idx], self.labels[idx], self.names)

    def __add__(self, other: "SegData") -> "SegData":
        return SegData(np.concatenate([self.images, other.images]), np.concatenate([self.labels, other.labels]),
                       self.names)


def build_unet(n_classes: int) -> UNet:
    """A tiny 2D MONAI UNet: (b, 1, y, x) -> (b, n_classes, y, x) logits; y, x divisible by 8."""
    return UNet(spatial_dims=2, in_channels=1, out_channels=n_classes, channels=(8, 16, 32, 64),
                strides=(2, 2, 2), num_res_units=1)


def conventional_augmentation(seed: int) -> Compose:
    """MONAI's usual intensity and shape augmentation of {"image", "label"} (1, y, x) dicts, images in [0, 1]:
    Gaussian noise, bias field, gamma contrast, histogram shift, intensity scaling, blur, elastic + affine."""
    aug = Compose([
        RandGaussianNoised(IMAGE, prob=0.3, std=0.05),
        RandBiasFieldd(IMAGE, degree=3, coeff_range=(0.0, 0.3), prob=0.5),
        RandAdjustContrastd(IMAGE, gamma=(0.5, 2.0), prob=0.5),
        RandHistogramShiftd(IMAGE, num_control_points=(5, 10), prob=0.5),
        RandScaleIntensityd(IMAGE, factors=0.2, prob=0.3),
        RandGaussianSmoothd(IMAGE, sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), prob=0.2),
        Rand2DElasticd((IMAGE, LABEL), spacing=(24, 24), magnitude_range=(0.5, 2.0), prob=0.5,
                       rotate_range=(np.pi / 12,), scale_range=(0.1, 0.1), mode=("bilinear", "nearest"),
                       padding_mode="zeros"),
    ])
    aug.set_random_state(seed=seed)
    return aug


def _augment(aug: Compose, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (b, 1, y, x) in [0, 1], y (b, 1, y, x) int64 -> augmented (same shapes; images clipped to [0, 1])."""
    xs, ys = [], []
    for xi, yi in zip(x, y):
        d = aug({IMAGE: xi, LABEL: yi.float()})
        xs.append(torch.as_tensor(d[IMAGE]).float().clamp(0, 1))
        ys.append(torch.as_tensor(d[LABEL]).round().long())
    return torch.stack(xs), torch.stack(ys)


def train_unet(data: SegData, n_classes: int, steps: int, *, batch_size: int = 8, lr: float = 3e-3, seed: int = 0,
               extra: SegData | None = None, extra_share: float = 0.5, augment: bool = False,
               cancel: CancelToken | None = None, label: str = "") -> Task[UNet]:
    """Generator: train :func:`build_unet` for ``steps`` Adam steps (Dice + cross-entropy); returns the UNet.

    extra: a second set (e.g. synthetic slices) supplying ``round(extra_share * batch_size)`` slices of
    every batch. augment: :func:`conventional_augmentation` on every training slice.
    """
    cancel = cancel or CancelToken()
    torch.manual_seed(seed)
    net = build_unet(n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = DiceCELoss(softmax=True, to_onehot_y=True)
    gen = torch.Generator().manual_seed(seed)
    aug = conventional_augmentation(seed) if augment else None
    pools = [(data, batch_size)]
    if extra is not None and len(extra):
        n_extra = min(batch_size, max(1, round(extra_share * batch_size)))
        pools = [(data, batch_size - n_extra), (extra, n_extra)]
    tensors = [(torch.from_numpy(d.images.astype(np.float32))[:, None],
                torch.from_numpy(d.labels.astype(np.int64))[:, None], n) for d, n in pools if n > 0]
    net.train()
    for step in range(steps):
        cancel.check()
        draws = [torch.randint(len(xs), (n,), generator=gen) for xs, _, n in tensors]
        x = torch.cat([xs[i] for (xs, _, _), i in zip(tensors, draws)])
        y = torch.cat([ys[i] for (_, ys, _), i in zip(tensors, draws)])
        flip = torch.rand(len(x), generator=gen) < 0.5  # left-right flips
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        if aug is not None:
            x, y = _augment(aug, x, y)
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            yield Progress(step + 1, steps, f"{label} step {step + 1}/{steps}", metrics={"loss": loss.item()})
    return net.eval()


@torch.no_grad()
def segment(net: UNet, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Images (n, y, x) in [0, 1] -> label maps (n, y, x) int64 (argmax)."""
    net.eval()
    out = [net(torch.from_numpy(images[i:i + batch_size].astype(np.float32))[:, None]).argmax(1).numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out)


def dice_per_class(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean Dice over slices for each foreground class (n_classes - 1,), NaN where a class never occurs."""
    oh = lambda a: torch.nn.functional.one_hot(torch.from_numpy(a.astype(np.int64)), n_classes).movedim(-1, 1)  # noqa: E731
    d = compute_dice(oh(pred), oh(truth), include_background=False, ignore_empty=True)
    return torch.nanmean(d, dim=0).numpy()
