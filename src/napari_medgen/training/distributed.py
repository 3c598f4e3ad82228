"""Data-parallel training across the processes that ``torchrun`` starts (one or many GPUs or nodes).

``torchrun --nproc_per_node N -m napari_medgen train FAMILY ...`` sets RANK, WORLD_SIZE and
LOCAL_RANK; :func:`process_group` reads them and joins the process group (NCCL when the job
trains on CUDA, gloo on CPU). Then ``registry.make_trainer`` builds every rank's trainer with the
same seed and wraps it in :class:`~.data_parallel.DataParallelTrainer`, which gives any family DDP semantics:

- rank 0's parameters and buffers are broadcast to every rank once, so all start equal;
- every gradient is all-reduced (summed, divided by the world size) as soon as backward has
  accumulated it (``Tensor.register_post_accumulate_grad_hook``), so every optimiser step sees the
  mean gradient of the global batch, also inside GAN steps, gradient clipping and AMP scaling;
- each rank draws ``batch_size / world_size`` samples (its shard of the global batch); ranks
  other than 0 reseed the trainer's own random generators from (seed, rank, step), so shards
  differ, also after a resume;
- the losses each step returns are averaged over ranks, so every rank sees the same value and a
  NaN/Inf on any rank stops all of them at the same step;
- :func:`agreed_cancel`: a cancel on any rank stops every rank at the same step.

Torch's ``DistributedDataParallel`` wrapper is not used because it only synchronises gradients
of calls through its own ``forward``, while trainers call their modules' other methods (e.g. a
VAE's ``encode_forward``) and run several backward passes per step (GANs). The gradient hooks
give the same mathematics for every trainer without changes to it (one collective per
parameter, not bucketed: fine for the project's small models).

Only rank 0 writes (checkpoints, loss history, previews, the exported model); see
:func:`is_primary`, which ``training.loop`` and ``tasks.train`` consult. All ranks resume from
the same checkpoint, so the work folder must be on a file system every node sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from ..errors import InputError
from ..progress import CancelToken

if TYPE_CHECKING:
    from .config import TrainConfig


@dataclasses.dataclass(frozen=True)
class DistEnv:
    """This process's place in the job: rank (global), world_size (processes), local_rank (on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def primary(self) -> bool:
        return self.rank == 0


def env_from_os() -> DistEnv:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as torchrun sets them (absent: a single process)."""
    try:
        env = DistEnv(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                      int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError:
        raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (they are set by torchrun).") from None
    if env.world_size < 1 or not 0 <= env.rank < env.world_size:
        raise InputError(f"Inconsistent torchrun environment: RANK={env.rank}, WORLD_SIZE={env.world_size}.")
    return env


def uses_cuda(device: str) -> bool:
    """True when ``device`` ("auto", "cuda", "cuda:N", "cpu", ...) means training on CUDA here."""
    device = (device or "auto").lower()
    return torch.cuda.is_available() and (device == "auto" or device.startswith("cuda"))


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[DistEnv]:
    """Join the torchrun job (if WORLD_SIZE > 1) for the duration of the block; yields this process's DistEnv.

    NCCL with one GPU per process (cuda:LOCAL_RANK) when ``device`` means CUDA, else gloo.
    MASTER_ADDR/MASTER_PORT come from torchrun (``env://`` rendezvous).
    """
    env = env_from_os()
    if env.world_size == 1 or dist.is_initialized():
        yield env
        return
    cuda = uses_cuda(device)
    if cuda:
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=env.rank, world_size=env.world_size)
    try:
        yield env
    finally:
        dist.destroy_process_group()


def current() -> DistEnv:
    """This process's DistEnv from the live process group (DistEnv() when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistEnv()
    return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_primary() -> bool:
    """True on rank 0 and in single-process runs: the process that writes files."""
    return current().primary


def shard_config(config: TrainConfig, env: DistEnv) -> TrainConfig:
    """The per-rank config: batch_size = global batch / world size; device = cuda:LOCAL_RANK on CUDA."""
    if config.batch_size % env.world_size:
        raise InputError(f"The batch size {config.batch_size} is the global batch: it must divide evenly among "
                         f"the {env.world_size} processes.")
    return dataclasses.replace(config, batch_size=config.batch_size // env.world_size,
                               device=rank_device(config.device, env))


def rank_device(device: str, env: DistEnv) -> str:
    """The device string this rank trains on: cuda:LOCAL_RANK when ``device`` means CUDA, else ``device``."""
    return f"cuda:{env.local_rank}" if uses_cuda(device) else device


def comm_device(device: str) -> torch.device:
    """Where the collectives of a job training on ``device`` run: that CUDA device, else the CPU."""
    return torch.device(device) if uses_cuda(device) else torch.device("cpu")


def trainable_modules(trainer: Any) -> list[torch.nn.Module]:
    """The torch modules a trainer holds as attributes (directly or in a dict/list attribute)."""
    found: list[torch.nn.Module] = []
    for value in vars(trainer).values():
        items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        found += [m for m in items if isinstance(m, torch.nn.Module)]
    return found


def derived_seed(seed: int, rank: int, step: int) -> int:
    """A 63-bit seed for (seed, rank, step), independent between ranks and steps."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class AgreedCancel(CancelToken):
    """A CancelToken whose ``cancelled`` is true on every rank once any rank was cancelled.

    Reading ``cancelled`` is a collective operation: every rank must read it at the same point
    (the training loop reads it once per step).
    """

    def __init__(self, local: CancelToken, comm_device: torch.device):
        super().__init__()
        self._event = local._event
        self.comm_device = comm_device

    @property
    def cancelled(self) -> bool:
        flag = torch.tensor([float(self._event.is_set())], device=self.comm_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            self._event.set()
        return bool(flag.item() > 0)


def agreed_cancel(cancel: CancelToken | None, device: str = "auto") -> CancelToken | None:
    """``cancel`` made collective when a process group is live (a fresh token if None); else unchanged."""
    if current().world_size == 1:
        return cancel
    return AgreedCancel(cancel or CancelToken(), comm_device(rank_device(device, current())))
