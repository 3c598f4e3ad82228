"""What every trainer is built from: :class:`TrainConfig`, and ``--set key=value`` settings."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError


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
