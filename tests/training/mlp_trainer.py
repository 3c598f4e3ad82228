"""A tiny trainer for the loop's tests: a 2-layer MLP fitting y = sin(3x) on batches it draws itself."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_medgen.data.datasets import load_pairs
from napari_medgen.models.store import save_model
from napari_medgen.training.registry import TrainConfig


class MLPTrainer:
    """Implements the loop's Trainer protocol. ``nan_at``: step at which train_step reports a NaN loss;
    ``step_delay_s``: sleep per step (a slow model, for GUI cancel tests).

    Uses the global torch RNG too (dropout), so resume must restore the global RNG states."""

    def __init__(self, seed: int = 0, lr: float = 1e-2, batch_size: int = 16, nan_at: int | None = None,
                 step_delay_s: float = 0.0):
        self.net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Dropout(0.1),
                                       torch.nn.Linear(16, 1))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.rng = np.random.default_rng(seed)
        self.batch_size = batch_size
        self.nan_at = nan_at
        self.step_delay_s = step_delay_s
        self.steps_run: list[int] = []

    def train_step(self, step: int) -> dict[str, float]:
        self.steps_run.append(step)
        time.sleep(self.step_delay_s)
        x = torch.from_numpy(self.rng.uniform(-1, 1, (self.batch_size, 1)).astype(np.float32))
        loss = torch.nn.functional.mse_loss(self.net(x), torch.sin(3 * x))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        if self.nan_at is not None and step >= self.nan_at:
            return {"loss": float("nan"), "mse": loss.item()}
        return {"loss": loss.item(), "mse": loss.item()}

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.rng.bit_generator.state = state["rng"]

    def preview(self) -> np.ndarray:
        x = torch.linspace(-1, 1, 32)[:, None]
        self.net.eval()
        with torch.no_grad():
            y = self.net(x).numpy().reshape(4, 8)
        self.net.train()
        return y

    def export(self, path: str | Path, card: dict[str, Any]) -> None:
        save_model(path, {"net": self.net}, {**card, "family": "mlp-test", "network": {"hidden": 16}})

    def weights(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.net.parameters()]


def make_mlp_trainer(config: TrainConfig) -> MLPTrainer:
    """Checks data folders as a real family would (the MLP itself needs no data)."""
    if config.sample is None:
        load_pairs(config.images, config.labels)
    return MLPTrainer(seed=config.seed, lr=config.lr, batch_size=config.batch_size,
                      nan_at=config.extra.get("nan_at"), step_delay_s=config.extra.get("step_delay_s", 0.0))
