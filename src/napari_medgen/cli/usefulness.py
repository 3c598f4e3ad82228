"""``medgen usefulness``: does synthetic data help a segmentation network on domains it has never seen?

Trains a small UNet on one domain (``phantom:STYLE`` or a folder with images/ and labels/) and tests
it on others, with the arms of ``tasks.domain_shift`` (real only, conventional augmentation, real +
target-style synthetic, reduced real + synthetic) over several seeds; prints mean foreground Dice
with 95 % confidence intervals and writes the full table (per class, per domain, per seed) and a plot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import options

_TASK = "napari_medgen.tasks.domain_shift"


def _arms(text: str) -> tuple[str, ...]:
    known = options.names(_TASK, "ARMS")
    arms = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = [a for a in arms if a not in known]
    if bad or not arms:
        raise argparse.ArgumentTypeError(f"unknown arm {bad[0] if bad else text!r}; choose from {', '.join(known)}")
    return arms


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "usefulness", help="segmentation on unseen domains: real vs augmentation vs target-style synthetic data",
        description="Train a small UNet on one domain and test it on others, per arm and seed (Dice per class and "
                    "domain, 95 % confidence intervals). A domain is phantom:STYLE (mr_vendor_a, mr_vendor_b, "
                    "mr_vendor_c, ct) or a folder with images/ and labels/ holding files of the same names.")
    p.add_argument("--train", default="phantom:mr_vendor_a", metavar="DOMAIN",
                   help="labelled training domain (default %(default)s)")
    p.add_argument("--test", nargs="+", default=list(options.names(_TASK, "DEFAULT_TESTS")), metavar="DOMAIN",
                   help=f"test domains (default: {' '.join(options.names(_TASK, 'DEFAULT_TESTS'))}); those other "
                        "than --train are the unseen targets")
    p.add_argument("--arms", type=_arms, default=options.names(_TASK, "DEFAULT_ARMS"),
                   help=f"comma-separated, from {', '.join(options.names(_TASK, 'ARMS'))} (default: "
                        f"{','.join(options.names(_TASK, 'DEFAULT_ARMS'))})")
    p.add_argument("--seeds", type=options.integer(1, 100), default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--style", choices=options.names("napari_medgen.tasks.target_synthesis", "STYLE_SOURCES"),
                   default="target", help="synthetic styles from a few unlabelled images of each unseen domain "
                                          "(target) or from the model's style prior (prior)")
    p.add_argument("--style-images", type=options.integer(1, 1000), default=4,
                   help="unlabelled images per unseen domain for --style target (folders: its first cases)")
    p.add_argument("--model", default="spade_phantom", help="spade model making the synthetic images; its classes "
                                                            "are the segmentation classes (default %(default)s)")
    p.add_argument("--label-vae", default="auto", help="label VAE for new label maps: a model, 'none', or 'auto' "
                                                       "(label_vae_phantom for a phantom training domain, else none)")
    p.add_argument("--map", action="append", default=[], metavar="VALUE=CLASS",
                   help="a folder's label value -> model class (number or name), e.g. --map 3=tumour; repeatable "
                        "or comma-separated; 'identity' confirms unnamed values are the model's class numbers")
    p.add_argument("--steps", type=options.integer(1, 10**6), default=300, help="UNet training steps per arm and seed")
    p.add_argument("--batch-size", type=options.integer(1, 1024), default=8)
    p.add_argument("--fraction", type=options.number(above=0.0, high=0.99), default=0.25,
                   help="real fraction of the reduced arms (default 0.25)")
    p.add_argument("--subjects", type=options.integer(1, 10_000), default=24, help="phantom training subjects")
    p.add_argument("--test-subjects", type=options.integer(1, 10_000), default=24, help="phantom test subjects")
    p.add_argument("--synthetic", type=options.integer(0, 10_000), default=24,
                   help="elastic copies and, as many, label-VAE samples per synthetic arm")
    options.output(p, "file", "write the table (summary and per-seed rows) as CSV", "--csv", required=False)
    options.output(p, "file", "write the plot as PNG", "--plot", required=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..progress import run_with_bar
    from ..tasks.domain_shift import ShiftSettings, experiment, table_text

    settings = ShiftSettings(train=args.train, tests=tuple(args.test), arms=tuple(args.arms), seeds=args.seeds,
                             style=args.style, model=args.model, label_vae=args.label_vae, steps=args.steps,
                             batch_size=args.batch_size, fraction=args.fraction, n_train=args.subjects,
                             n_test=args.test_subjects, n_style=args.style_images, n_synthetic=args.synthetic,
                             label_map=tuple(args.map))
    result = run_with_bar(experiment(settings, csv_path=args.csv, plot_path=args.plot), desc="usefulness",
                          disable=args.quiet)
    print(table_text(result))
    for note in result.notes:
        print(f"note: {note}")
    for path in (args.csv, args.plot):
        if path is not None:
            print(f"wrote {Path(path)}", file=sys.stderr)
    return 0
