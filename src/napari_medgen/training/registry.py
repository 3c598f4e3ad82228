"""Which model families can be trained, and the configuration every trainer is built from.

A family module calls ``register_trainer("spade", make_spade_trainer, "label-to-image GAN")`` at
import; ``make(config)`` returns an object implementing :class:`~.loop.Trainer`. The modules are
imported by listing them in :mod:`napari_medgen.training.trainers` (one line each).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .checkpoint import seed_everything
from .loop import Trainer


@dataclass
class TrainConfig:
    """Everything a trainer is built from.

    images/labels: folders of volumes matched by file name (see ``data.datasets.load_pairs``), or
    sample: "brain" | "phantom" to train on the shipped sample data instead. seed: seeds weights
    and batch order. steps: planned optimisation steps (some trainers use it for schedules).
    device: "auto", "cpu", "cuda", ... extra: family-specific settings from ``--set key=value``.
    """

    images: Path | None = None
    labels: Path | None = None
    seed: int = 0
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-3
    device: str = "auto"
    sample: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def data_description(self) -> str:
        """Plain-words description of the training data, for the model card."""
        if self.sample:
            return f"shipped sample '{self.sample}'"
        return f"images {self.images}, labels {self.labels}"


@dataclass(frozen=True)
class TrainerSpec:
    family: str
    make: Callable[[TrainConfig], Trainer]
    help: str


_TRAINERS: dict[str, TrainerSpec] = {}


def register_trainer(family: str, make: Callable[[TrainConfig], Trainer], help: str = "") -> None:
    """Make ``family`` trainable: ``make(config)`` builds its trainer. ``help``: one line for ``--list``."""
    _TRAINERS[family] = TrainerSpec(family, make, help)


def trainers() -> dict[str, TrainerSpec]:
    """Every registered family (after importing the modules listed in ``training/trainers.py``)."""
    from . import trainers as _  # noqa: F401  (registers the families)

    return dict(sorted(_TRAINERS.items()))


def make_trainer(family: str, config: TrainConfig) -> Trainer:
    """Seed the global RNGs with ``config.seed``, then build the family's trainer."""
    specs = trainers()
    if family not in specs:
        known = ", ".join(specs) or "none registered"
        raise InputError(f"Unknown model family '{family}' for training (known: {known}).")
    if config.sample is None and (config.images is None or config.labels is None):
        raise InputError("Training needs data: give both an images and a labels folder, or a shipped sample "
                         "('brain' or 'phantom').")
    seed_everything(config.seed)
    return specs[family].make(config)


def parse_settings(items: Iterable[str]) -> dict[str, Any]:
    """``["lr_d=2e-4", "channels=[32,64]", "name=x"]`` -> {"lr_d": 0.0002, "channels": [32, 64], "name": "x"}.

    Values are read as JSON where they parse (numbers, true/false, lists), else kept as text.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"Setting '{item}' must look like key=value.")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
