"""``medgen train FAMILY ...``: train a registered model family and export it with its card.

Drives :func:`napari_medgen.tasks.train.train_model` with a text progress bar: Ctrl-C once stops
after the current step and saves a checkpoint; running the same command again resumes (a work
folder is locked while a run uses it, and resumes only the run it was made for). Writes
``OUT.safetensors`` + ``OUT.json`` (its card records this exact command) and ``OUT.loss.png``; an
existing model OUT is refused before training unless ``--overwrite``, and then replaced as a whole.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError, TrainingError
from ..progress import CancelToken, run_with_bar
from . import options


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="train a model family on image+label folders or on the shipped sample data",
        description="Train a model family and export it (OUT.safetensors, OUT.json card, OUT.loss.png). "
                    "Running the same command again resumes from the newest checkpoint in the work folder; "
                    "a work folder serves one run at a time, and only the run it was made for.")
    p.add_argument("family", nargs="?", help="model family to train (see --list)")
    p.add_argument("--list", action="store_true", help="list the trainable families and exit")
    p.add_argument("--images", type=Path, help="folder of image volumes")
    p.add_argument("--labels", type=Path, help="folder of label volumes, matched to the images by file name")
    p.add_argument("--sample", choices=["brain", "phantom"], help="train on shipped sample data instead of folders")
    p.add_argument("--steps", type=options.integer(1, 10**8), default=1000, help="optimisation steps (default 1000)")
    p.add_argument("--out", type=Path, help="model to write: OUT.safetensors + OUT.json + OUT.loss.png")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model OUT (all its files)")
    p.add_argument("--workdir", type=Path, help="checkpoints and loss history (default: medgen-runs/NAME)")
    p.add_argument("--seed", type=options.seed, default=0, help=f"0 .. {options.SEED_MAX} (default 0)")
    p.add_argument("--batch-size", type=options.integer(1, 4096), default=4, help="default 4")
    p.add_argument("--lr", type=options.number(high=10.0, above=0.0), default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--checkpoint-every", type=options.integer(1), default=100, help="steps between checkpoints")
    p.add_argument("--keep", type=options.integer(1), default=3, help="checkpoints to keep (the newest good one is "
                                                                     "always kept)")
    p.add_argument("--no-resume", action="store_true", help="start over, deleting the work folder's checkpoints")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="family-specific setting (repeatable; values read as JSON where possible, "
                        "e.g. --set channels=[8,16] --set lr_d=2e-4)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models.store import model_paths
    from ..tasks.train import TrainJob, check_model_output, train_model
    from ..training.distributed import process_group
    from ..training.registry import TrainConfig, parse_settings

    if args.list:
        return _print_families()
    if not args.family or args.out is None:
        raise InputError("medgen train needs a FAMILY and --out MODEL (see 'medgen train --list').")
    if args.sample and (args.images or args.labels):
        raise InputError("Give either --sample or --images/--labels, not both.")
    check_model_output(args.out, args.overwrite)  # before the progress bar
    config = TrainConfig(images=args.images, labels=args.labels, seed=args.seed, steps=args.steps,
                         batch_size=args.batch_size, lr=args.lr, device=args.device, sample=args.sample,
                         extra=parse_settings(args.settings))
    argv = getattr(args, "argv", None)
    job = TrainJob(args.family, config, workdir=args.workdir or Path("medgen-runs") / Path(args.out).name,
                   out=args.out, checkpoint_every=args.checkpoint_every, keep=args.keep, resume=not args.no_resume,
                   command="medgen " + shlex.join(argv) if argv is not None else shlex.join(sys.argv),
                   overwrite=args.overwrite)
    with _ctrl_c_cancels() as cancel, process_group(args.device) as dist_env:  # a rank of a torchrun job, or alone
        outcome = run_with_bar(train_model(job, cancel), desc=f"train {args.family}",
                               disable=args.quiet or not dist_env.primary)
    result = outcome.result
    for note in result.notes:
        print(f"medgen: {note}", file=sys.stderr)
    if result.status == "diverged":
        raise TrainingError(result.message)
    if result.status == "cancelled":
        print(f"medgen: {result.message}", file=sys.stderr)
        return 130
    if not dist_env.primary:  # rank 0 exported the model
        return 0
    weights, card = model_paths(outcome.model)
    print(f"wrote {weights}, {card}, {outcome.loss_plot}")
    return 0


def _print_families() -> int:
    from ..training.registry import trainers

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
