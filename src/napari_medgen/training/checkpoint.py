"""Training checkpoints in a work folder: ``ckpt-STEP.pt`` files plus a ``latest.json`` pointer.

Pruning keeps the newest ``keep`` checkpoints, the file just written always among them; a damaged file
found at resume is set aside (``ckpt-STEP.pt.damaged``) so that it never displaces a good one.

A checkpoint is ``{"format": 1, "step": int, "elapsed_s": float, "trainer": trainer.state_dict(),
"rng": global RNG states}`` holding tensors and plain values only, so that
``torch.load(weights_only=True)`` reads it (nothing arbitrary is unpickled). Each file is written
atomically (temporary file, fsync, rename; see :mod:`napari_medgen.atomic`); the pointer is written
afterwards, so it never names a file that is not complete.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_bytes, atomic_write_with

FORMAT = 1
LATEST = "latest.json"
DAMAGED = ".damaged"  # suffix of a checkpoint that failed to load, set aside at resume
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def seed_everything(seed: int) -> None:
    """Seed the global RNGs a trainer may use: torch, numpy's legacy global RNG, python ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors and plain values (numpy's as its plain dict, key as a list)."""
    np_state = np.random.get_state(legacy=False)
    np_state = {**np_state, "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()}}
    return {"torch": torch.get_rng_state(), "numpy": np_state, "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np_state = {**np_state, "state": {**np_state["state"], "key": np.asarray(np_state["state"]["key"], np.uint32)}}
    np.random.set_state(np_state)
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def checkpoint_path(workdir: Path, step: int) -> Path:
    return Path(workdir) / f"ckpt-{step}.pt"


def list_checkpoints(workdir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every file named ``ckpt-STEP.pt``, newest first (temporary files never match)."""
    found = []
    for p in Path(workdir).glob("ckpt-*.pt"):
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found, reverse=True)


def save_checkpoint(workdir: Path, step: int, trainer_state: dict[str, Any], elapsed_s: float, keep: int = 3) -> Path:
    """Write ``ckpt-STEP.pt`` atomically, then ``latest.json``, then delete all but the newest ``keep``."""
    path = checkpoint_path(workdir, step)
    payload = {"format": FORMAT, "step": int(step), "elapsed_s": float(elapsed_s), "trainer": trainer_state,
               "rng": rng_state()}
    atomic_write_with(path, lambda tmp: torch.save(payload, tmp))
    pointer = {"step": int(step), "file": path.name}
    atomic_write_bytes(Path(workdir) / LATEST, (json.dumps(pointer) + "\n").encode())
    prune(workdir, step, keep)
    return path


def prune(workdir: Path, step: int, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints up to ``step`` (the one just written, which is always
    kept). Files named for a later step are not this run's history and are never counted or deleted."""
    ours = [p for s, p in list_checkpoints(workdir) if s <= step]
    for old in ours[max(1, keep):]:
        old.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load one checkpoint (weights_only) and check its layout; raises ValueError when it is not usable."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to unpickle means the file is damaged
        raise ValueError(f"cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from None
    m = _NAME.match(Path(path).name)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or not {"trainer", "rng"} <= payload.keys():
        raise ValueError("is not a napari-medgen checkpoint")
    if m and payload.get("step") != int(m.group(1)):
        raise ValueError(f"holds step {payload.get('step')}, not the step in its name")
    return payload


def latest_good_checkpoint(workdir: Path, set_aside: bool = False) -> tuple[Path | None, dict[str, Any] | None,
                                                                        list[str]]:
    """Newest checkpoint that loads cleanly: (path, payload, notes about damaged files skipped).

    set_aside: rename each damaged newer file to ``ckpt-STEP.pt.damaged`` (kept for a look, no longer a
    checkpoint), so that it is neither tried again nor counted when old checkpoints are pruned."""
    notes: list[str] = []
    for _, path in list_checkpoints(workdir):
        try:
            return path, load_checkpoint(path), notes
        except ValueError as exc:
            note = f"Skipped checkpoint '{path}': it {exc}"
            if set_aside:
                path.replace(path.with_name(path.name + DAMAGED))
                note += f"; renamed it to '{path.name + DAMAGED}'"
            notes.append(note + ".")
    return None, None, notes


def remove_leftovers(workdir: Path) -> list[Path]:
    """Delete temporary files an interrupted atomic write left behind (``.NAME.XXXX.part*``)."""
    leftovers = [p for p in Path(workdir).glob(".*.part*") if p.is_file()]
    for p in leftovers:
        p.unlink(missing_ok=True)
    return leftovers


def clear_checkpoints(workdir: Path) -> None:
    """Remove every checkpoint and the pointer (a fresh run in a used work folder)."""
    for _, p in list_checkpoints(workdir):
        p.unlink(missing_ok=True)
    (Path(workdir) / LATEST).unlink(missing_ok=True)


class AttributeState:
    """Mixin giving a trainer ``state_dict``/``load_state_dict`` over the attributes named in
    ``state_attrs``: modules and optimisers by their own ``state_dict``, ``torch.Generator`` by
    its state tensor. The checkpoint keys are the attribute names."""

    state_attrs: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        return {name: _state_of(getattr(self, name)) for name in self.state_attrs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.state_attrs:
            part = getattr(self, name)
            if isinstance(part, torch.Generator):
                part.set_state(state[name])
            else:
                part.load_state_dict(state[name])


def _state_of(part: Any) -> Any:
    return part.get_state() if isinstance(part, torch.Generator) else part.state_dict()
