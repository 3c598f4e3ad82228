"""The generic training loop every model family uses.

A family provides a *trainer* object (see :class:`Trainer`); :func:`train` runs it step by step
as a task generator: it yields :class:`~napari_medgen.progress.Progress` (metrics = the step's
losses, preview = the trainer's fixed-input sample every ``preview_every`` steps, as a Volume), writes
checkpoints atomically every ``checkpoint_every`` steps (see :mod:`.checkpoint`), resumes from
the newest checkpoint that loads cleanly, stops between steps when cancelled (after saving),
and stops without saving on a NaN/Inf loss, keeping the last good checkpoint. The work folder
is locked against a second writer and keyed to its run (see :mod:`.workdir`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ..errors import InputError, TrainingError
from ..io.volume import Volume
from ..progress import CancelToken, Progress
from . import checkpoint as ckpt
from .distributed import is_primary
from .history import LossHistory
from .workdir import check_run, locked, write_run


class Trainer(Protocol):
    """What a model family's trainer implements (optionally also a ``data_description`` str attribute,
    which ``tasks.train`` records in the model card)."""

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step (``step`` counts from 0) on a batch the trainer draws itself from its
        own seeded generator; returns the losses as floats (the first one is the main loss)."""

    def state_dict(self) -> dict[str, Any]:
        """Modules, optimisers and the trainer's own RNG state: tensors and plain values only."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def preview(self) -> np.ndarray | None:
        """A sample from a fixed input, for the GUI (e.g. (y, x) float image), or None."""

    def export(self, path: str | Path, card: dict[str, Any]) -> None:
        """Write the model via ``models.store.save_model``, adding family/network/normalization/label_names."""


Status = Literal["done", "cancelled", "diverged"]


@dataclass
class TrainResult:
    """How a run ended. step: optimisation steps done (the weights in ``checkpoint`` match it unless
    diverged, where ``checkpoint`` is the last good one, possibly None). history: all loss records
    ({"step", losses...}) since step 1. elapsed_s: training time over all resumed sessions."""

    status: Status
    step: int
    history: list[dict[str, Any]]
    checkpoint: Path | None
    message: str = ""
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def train(trainer: Trainer, steps: int, workdir: str | Path, *, checkpoint_every: int = 100,
          preview_every: int = 0, cancel: CancelToken | None = None, resume: bool = True, keep: int = 3,
          seed: int = 0, key: dict[str, Any] | None = None) -> Generator[Progress, None, TrainResult]:
    """Train ``trainer`` up to ``steps`` optimisation steps, checkpointing in ``workdir``.

    resume: continue from the newest good checkpoint in ``workdir`` (its global RNG states are
    restored, the loss history is cut back to its step); False starts over and deletes the old
    checkpoints. seed: seeds the global RNGs at a fresh start (build the trainer after
    :func:`~.checkpoint.seed_everything` too, as ``registry.make_trainer`` does). keep: how
    many checkpoints to keep. key: what this run is (JSON values: family, data, options); the
    folder records it, and a resume over checkpoints recorded with another key is refused
    (TrainingError naming the differences; see :mod:`.workdir`). The folder is locked while this
    runs: a second training there is refused.
    """
    if steps < 1 or checkpoint_every < 1 or preview_every < 0 or keep < 1:
        raise InputError(f"Training needs steps >= 1, checkpoint_every >= 1, keep >= 1 and preview_every >= 0 "
                         f"(got {steps}, {checkpoint_every}, {keep}, {preview_every}).")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    primary = is_primary()  # under torchrun only rank 0 writes files (see .distributed)
    with locked(workdir) if primary else contextlib.nullcontext([]) as notes:
        return (yield from _train(trainer, steps, workdir, checkpoint_every, preview_every, cancel, resume, keep,
                                  seed, key, primary, notes))


def _train(trainer: Trainer, steps: int, workdir: Path, checkpoint_every: int, preview_every: int,
           cancel: CancelToken | None, resume: bool, keep: int, seed: int, key: dict[str, Any] | None,
           primary: bool, notes: list[str]) -> Generator[Progress, None, TrainResult]:
    """:func:`train` once the folder is locked (``notes``: the lock's)."""
    notes += [f"Removed unfinished temporary file '{p}'." for p in (ckpt.remove_leftovers(workdir) if primary else [])]
    start, elapsed, last = 0, 0.0, None
    if resume and key is not None and ckpt.list_checkpoints(workdir):
        check_run(workdir, key)
    if resume:
        last, payload, skipped = ckpt.latest_good_checkpoint(workdir, set_aside=primary)
        notes += skipped
        if payload is not None:
            try:
                trainer.load_state_dict(payload["trainer"])
            except (RuntimeError, KeyError, ValueError, TypeError) as exc:
                raise TrainingError(f"Checkpoint '{last}' does not fit this model ({str(exc)[:200]}); use another "
                                    f"work folder or start over without resuming.") from None
            ckpt.set_rng_state(payload["rng"])
            start, elapsed = payload["step"], payload["elapsed_s"]
            notes.append(f"Resumed from '{last}' at step {start}.")
    elif primary:
        ckpt.clear_checkpoints(workdir)
    if start == 0:
        ckpt.seed_everything(seed)
        if key is not None and primary:
            write_run(workdir, key)
    history = LossHistory(workdir, write=primary)
    history.truncate(start)
    yield Progress(start, steps, notes[-1] if notes else "starting")

    step, t0 = start, time.perf_counter()

    def spent() -> float:
        return elapsed + time.perf_counter() - t0

    def save() -> Path:
        if not primary:
            return ckpt.checkpoint_path(workdir, step)
        return ckpt.save_checkpoint(workdir, step, trainer.state_dict(), spent(), keep)

    while step < steps:
        if cancel is not None and cancel.cancelled:
            last = save()
            return TrainResult("cancelled", step, history.records, last,
                               f"Cancelled at step {step}; saved '{last}'. Resume to continue.",
                               spent(), notes)
        losses = {k: float(v) for k, v in trainer.train_step(step).items()}
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            kept = f"the last good checkpoint is '{last}'" if last else "no checkpoint was written yet"
            return TrainResult("diverged", step, history.records, last,
                               f"Training diverged at step {step + 1}: loss {', '.join(bad)} is not finite "
                               f"({', '.join(f'{k}={losses[k]}' for k in bad)}). Nothing was saved for this step; "
                               f"{kept}. Try a lower learning rate.", spent(), notes)
        step += 1
        history.append(step, losses)
        if step % checkpoint_every == 0 or step == steps:
            last = save()
        image = trainer.preview() if preview_every and (step % preview_every == 0 or step == steps) else None
        preview = None if image is None else Volume(image[None] if image.ndim == 2 else image)
        main = next(iter(losses.items()), None)
        message = f"step {step}/{steps}" + (f" {main[0]}={main[1]:.4g}" if main else "")
        yield Progress(step, steps, message, preview=preview, metrics=losses)
    return TrainResult("done", step, history.records, last, f"Trained {step} steps; last checkpoint '{last}'.",
                       spent(), notes)
