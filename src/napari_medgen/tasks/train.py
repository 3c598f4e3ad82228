"""Train a registered model family and export it: the task behind ``medgen train`` and the Train dock.

:func:`train_model` builds the trainer (``training.registry.make_trainer``), runs the generic loop
(``training.loop.train``: checkpoints, resume, cancel, NaN stop) and, when the run finished,
writes ``OUT.safetensors`` + ``OUT.json`` through the trainer's ``export`` and the loss curve as
``OUT.loss.png``. The card's ``training`` entry records the command, seed, data, wall time,
steps, git commit, torch/monai versions and date.

An existing model OUT is replaced only when the job says ``overwrite``, and then as a whole: the
new files are written into a temporary folder next to it, the older model's files (its sidecars
too) are removed, and the new ones moved in, the card last. The work folder is keyed to
:func:`run_key` (family, data, seed, batch size, learning rate, settings): a job with other values
does not resume its checkpoints (``training.workdir``).
"""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import check_output_file, replaced_files
from ..errors import InputError
from ..models.store import model_paths
from ..progress import CancelToken, Progress
from ..training.history import save_loss_plot
from ..training.loop import TrainResult, train
from ..training import distributed
from ..training.registry import TrainConfig, make_trainer
from ..training.source import TrainingSource


@dataclass
class TrainJob:
    """What to train and where. out: model path without extension (None: train only, no export).
    workdir: checkpoints and ``history.jsonl``. resume: continue from the newest good checkpoint
    (False deletes the old ones). command: how the run was started, recorded in the card.
    overwrite: replace an existing model ``out`` (else WriteError before training starts)."""

    family: str
    config: TrainConfig
    workdir: Path
    out: Path | None = None
    checkpoint_every: int = 100
    preview_every: int = 0
    keep: int = 3
    resume: bool = True
    command: str = ""
    overwrite: bool = False


@dataclass
class TrainOutcome:
    """The loop's result plus the exported files (None when not exported: cancelled, diverged, no out)."""

    result: TrainResult
    model: Path | None = None
    loss_plot: Path | None = None


def train_model(job: TrainJob, cancel: CancelToken | None = None) -> Generator[Progress, None, TrainOutcome]:
    """Build, train and (if the run is done and ``job.out`` is set) export; yields the loop's Progress."""
    if job.out is not None:
        check_model_output(job.out, job.overwrite)
    commit = git_commit()  # the code this run starts with (the checkout may change while it trains)
    yield Progress(0, job.config.steps, f"preparing {job.family} (data, network)")
    trainer = build_trainer(job)
    cancel = distributed.agreed_cancel(cancel, job.config.device)
    result = yield from train(trainer, job.config.steps, job.workdir, checkpoint_every=job.checkpoint_every,
                              preview_every=job.preview_every, cancel=cancel, resume=job.resume, keep=job.keep,
                              seed=job.config.seed, key=run_key(job))
    if result.status != "done" or job.out is None or not distributed.is_primary():
        return TrainOutcome(result)
    name = model_paths(job.out)[0].with_suffix("")
    png = name.with_name(name.name + ".loss.png")
    yield Progress(result.step, job.config.steps, f"exporting {name.name}")
    data = getattr(trainer, "data_description", None) or TrainingSource.of(job.config).describe()
    device = str(getattr(trainer, "device", job.config.device))  # what the trainer ran on
    with replaced_files(model_files(name), overwrite=job.overwrite) as staged:
        trainer.export(staged / name.name, {"training": training_record(job, result, data, device, commit),
                                            "loss_curve": png.name})
        save_loss_plot(result.history, staged / png.name, title=f"{job.family}: {name.name}")
    return TrainOutcome(result, name, png)


def build_trainer(job: TrainJob) -> Any:
    """``registry.make_trainer`` (data-parallel under torchrun); a network that the job's ``--set`` settings
    cannot build (e.g. channels and strides of different lengths) is an InputError naming the settings."""
    try:
        return make_trainer(job.family, job.config)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        if not job.config.extra:
            raise
        settings = " ".join(f"{k}={json.dumps(v)}" for k, v in job.config.extra.items())
        raise InputError(f"Training '{job.family}' cannot be built with the settings {settings}: "
                         f"{type(exc).__name__}: {exc}") from None


MODEL_FILES = (".safetensors", ".loss.png", ".directions.json", ".json")  # NAME + each; the card last


def model_files(out: str | Path) -> list[Path]:
    """Every file that belongs to model ``out`` (``NAME``, ``NAME.json`` or ``NAME.safetensors``): weights,
    sidecars (loss curve, directions) and card, whether they exist or not."""
    name = model_paths(out)[0].with_suffix("")
    return [name.with_name(name.name + suffix) for suffix in MODEL_FILES]


def check_model_output(out: str | Path, overwrite: bool) -> None:
    """Refuse (WriteError) to write model ``out`` over an existing one unless ``overwrite``."""
    for path in model_files(out):
        check_output_file(path, overwrite)


def run_key(job: TrainJob) -> dict[str, Any]:
    """What a work folder's checkpoints are for: family, data (absolute folders or the sample), seed,
    batch size, learning rate and the family's settings. Steps, checkpointing and the device may
    change between resumes."""
    c = job.config
    data = {"sample": c.sample} if c.sample else {"images": str(Path(c.images).resolve()) if c.images else None,
                                                  "labels": str(Path(c.labels).resolve()) if c.labels else None}
    key = {"family": job.family, "data": data, "seed": c.seed, "batch_size": c.batch_size, "lr": c.lr,
           "settings": c.extra}
    return json.loads(json.dumps(key))  # as the folder will record it (tuples become lists)


def training_record(job: TrainJob, result: TrainResult, data: str, device: str, commit: str) -> dict[str, Any]:
    """The card's ``training`` entry. data: plain-words description of the training data (a trainer's
    optional ``data_description`` attribute, else the config's); device: the one the trainer ran on
    (its ``device`` attribute, else the config's); commit: the checkout's commit when the run (its
    last resumed part) started."""
    import monai
    import torch

    config = job.config
    last = result.history[-1] if result.history else {}
    return {
        "command": job.command,
        "family": job.family,
        "seed": config.seed,
        "data": data,
        "steps": result.step,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "settings": config.extra,
        "final_losses": {k: v for k, v in last.items() if k != "step"},
        "wall_time_s": round(result.elapsed_s, 3),
        "device": device_name(device),
        "hardware": hardware(),
        "commit": commit,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def device_name(device: str) -> str:
    """What ``device`` ("auto", "cpu", "cuda", ...) trains on here, for a card: "cpu", or "cuda (GPU name)"."""
    import torch

    from ..device import resolve_device

    resolved = resolve_device(device)
    return f"cuda ({torch.cuda.get_device_name(resolved)})" if resolved.type == "cuda" else resolved.type


def hardware() -> str:
    """The machine a run trains on, for a card (one step's time differs between machines of one kind), e.g.
    "AMD EPYC 9R14, 2 logical CPUs, 2 torch threads"."""
    import torch

    from ..device import cpu_model, usable_cpus

    return f"{cpu_model()}, {usable_cpus()} logical CPUs, {torch.get_num_threads()} torch threads"


def git_commit() -> str:
    """``git rev-parse HEAD`` of the code's checkout, or "unknown" (e.g. an installed wheel)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
