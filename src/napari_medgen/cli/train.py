"""``medgen train FAMILY ...``: train a registered model family and export it with its card.

Runs :func:`napari_medgen.training.loop.train` with a text progress bar (Ctrl-C once stops after
the current step and saves a checkpoint; running the same command again resumes), then writes
``OUT.safetensors`` + ``OUT.json`` through the family's ``export`` and the loss curve as
``OUT.loss.png``. The card's ``training`` entry records the exact command, seed, data, wall time,
steps, git commit, torch/monai versions and date.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError, TrainingError
from ..models.store import model_paths
from ..progress import CancelToken, run_with_bar
from ..training.history import save_loss_plot
from ..training.loop import TrainResult, train
from ..training.registry import TrainConfig, make_trainer, parse_settings, trainers


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="train a model family on image+label folders or on the shipped sample data",
        description="Train a model family and export it (OUT.safetensors, OUT.json card, OUT.loss.png). "
                    "Running the same command again resumes from the newest checkpoint in the work folder.")
    p.add_argument("family", nargs="?", help="model family to train (see --list)")
    p.add_argument("--list", action="store_true", help="list the trainable families and exit")
    p.add_argument("--images", type=Path, help="folder of image volumes")
    p.add_argument("--labels", type=Path, help="folder of label volumes, matched to the images by file name")
    p.add_argument("--sample", choices=["brain", "phantom"], help="train on shipped sample data instead of folders")
    p.add_argument("--steps", type=int, default=1000, help="optimisation steps (default 1000)")
    p.add_argument("--out", type=Path, help="model to write: OUT.safetensors + OUT.json + OUT.loss.png")
    p.add_argument("--workdir", type=Path, help="checkpoints and loss history (default: medgen-runs/NAME)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
    p.add_argument("--no-resume", action="store_true", help="start over, deleting the work folder's checkpoints")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="family-specific setting (repeatable; values read as JSON where possible)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _print_families()
    if not args.family or args.out is None:
        raise InputError("medgen train needs a FAMILY and --out MODEL (see 'medgen train --list').")
    if args.sample and (args.images or args.labels):
        raise InputError("Give either --sample or --images/--labels, not both.")
    config = TrainConfig(images=args.images, labels=args.labels, seed=args.seed, steps=args.steps,
                         batch_size=args.batch_size, lr=args.lr, device=args.device, sample=args.sample,
                         extra=parse_settings(args.settings))
    trainer = make_trainer(args.family, config)
    name = model_paths(args.out)[0].with_suffix("")
    workdir = args.workdir or Path("medgen-runs") / name.name
    with _ctrl_c_cancels() as cancel:
        task = train(trainer, args.steps, workdir, checkpoint_every=args.checkpoint_every,
                     resume=not args.no_resume, keep=args.keep, seed=args.seed, cancel=cancel)
        result: TrainResult = run_with_bar(task, desc=f"train {args.family}", disable=args.quiet)
    for note in result.notes:
        print(f"medgen: {note}", file=sys.stderr)
    if result.status == "diverged":
        raise TrainingError(result.message)
    if result.status == "cancelled":
        print(f"medgen: {result.message}", file=sys.stderr)
        return 130
    png = name.with_name(name.name + ".loss.png")
    card = {"training": _training_record(args, config, result), "loss_curve": png.name}
    trainer.export(name, card)
    save_loss_plot(result.history, png, title=f"{args.family}: {name.name}")
    weights, card_path = model_paths(name)
    print(f"wrote {weights}, {card_path}, {png}")
    return 0


def _print_families() -> int:
    specs = trainers()
    if not specs:
        print("No trainable model families are registered.")
    for family, spec in specs.items():
        print(f"{family:16s} {spec.help}")
    return 0


@contextlib.contextmanager
def _ctrl_c_cancels() -> Iterator[CancelToken]:
    """Yield a token that the first Ctrl-C sets (a second one interrupts at once); restores the handler."""
    token = CancelToken()
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    def handler(signum: int, frame: Any) -> None:
        print("\nmedgen: stopping after this step (Ctrl-C again to abort)...", file=sys.stderr)
        token.cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


def _training_record(args: argparse.Namespace, config: TrainConfig, result: TrainResult) -> dict[str, Any]:
    import monai
    import torch

    argv = getattr(args, "argv", None)
    command = "medgen " + shlex.join(argv) if argv is not None else shlex.join(sys.argv)
    return {
        "command": command,
        "family": args.family,
        "seed": config.seed,
        "data": config.data_description(),
        "steps": result.step,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "settings": config.extra,
        "final_losses": {k: v for k, v in (result.history[-1] if result.history else {}).items() if k != "step"},
        "wall_time_s": round(result.elapsed_s, 2),
        "commit": _git_commit(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _git_commit() -> str:
    """``git rev-parse HEAD`` of the code's checkout, or "unknown" (e.g. an installed wheel)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
