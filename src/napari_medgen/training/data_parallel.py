"""One trainer trained by every process of a ``torchrun`` job as one (see :mod:`.distributed`)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from .distributed import DistEnv, derived_seed, trainable_modules

if TYPE_CHECKING:
    from .loop import Trainer


class DataParallelTrainer:
    """Wraps a family's trainer so that N processes train it as one, with a global batch (see :mod:`.distributed`)."""

    def __init__(self, trainer: Trainer, env: DistEnv, seed: int, comm_device: torch.device):
        self.inner = trainer
        self.env = env
        self.seed = seed
        self.comm_device = comm_device
        self._reseed_pending = not env.primary
        params: dict[int, torch.nn.Parameter] = {}
        for module in trainable_modules(trainer):
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)
            params.update((id(p), p) for p in module.parameters() if p.requires_grad)
        for p in params.values():
            p.register_post_accumulate_grad_hook(self._average_grad)

    def _average_grad(self, p: torch.Tensor) -> None:
        dist.all_reduce(p.grad)
        p.grad.div_(self.env.world_size)

    def _reseed(self, step: int) -> None:
        """Rank > 0: new streams for the trainer's generators and the global RNGs, from (seed, rank, step)."""
        s = derived_seed(self.seed, self.env.rank, step)
        torch.manual_seed(s)
        np.random.seed(s % 2**32)
        random.seed(s)
        for name, value in vars(self.inner).items():
            if isinstance(value, torch.Generator):
                value.manual_seed(s)
            elif isinstance(value, np.random.Generator):
                setattr(self.inner, name, np.random.default_rng(s))
            elif isinstance(value, np.random.RandomState):
                value.seed(s % 2**32)

    def train_step(self, step: int) -> dict[str, float]:
        """The trainer's step on this rank's shard; returns the losses averaged over ranks."""
        if self._reseed_pending:  # after the loop restored the (rank 0) RNG states of a checkpoint
            self._reseed(step)
            self._reseed_pending = False
        losses = self.inner.train_step(step)
        values = torch.tensor([float(v) for v in losses.values()], dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(values)
        return dict(zip(losses, (values / self.env.world_size).tolist()))

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)
        self._reseed_pending = not self.env.primary

    def preview(self) -> np.ndarray | None:
        return self.inner.preview() if self.env.primary else None

    def export(self, path: Any, card: dict[str, Any]) -> None:
        if self.env.primary:
            self.inner.export(path, {**card, "distributed": {"world_size": self.env.world_size}})

    def __getattr__(self, name: str) -> Any:  # e.g. the trainer's data_description
        return getattr(self.inner, name)
