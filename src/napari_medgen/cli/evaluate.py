"""``medgen evaluate`` / ``experiment usefulness`` / ``quantize`` / ``anomaly``: evaluation of synthetic data.

Each drives the same task generator as the Evaluate dock (tasks/evaluate, usefulness, quantize,
anomaly) with a text progress bar and prints its table.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import run_with_bar
from . import options


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("evaluate", help="quality of synthetic images: SSIM/PSNR, MS-SSIM, FD, MMD, memorisation")
    p.add_argument("--real", type=Path, required=True, help="folder (or file) of real images/volumes")
    p.add_argument("--synthetic", type=Path, required=True, help="folder (or file) of synthetic images/volumes")
    p.add_argument("--training", type=Path, help="the generator's training images for the memorisation check "
                                                 "(default: --real)")
    p.add_argument("--extractor", default="default", help="'default' (shipped encoder), a medgen feature_encoder "
                   "model, or a local ResNet/MedicalNet state dict (.pt/.pth/.safetensors)")
    p.add_argument("--threshold", type=options.number(0.0, 1.0), default=0.03,
                   help="near-copy threshold: RMS distance of [0, 1]-scaled images")
    options.output(p, "file", "write the table as CSV", "--csv", required=False)
    options.output(p, "file", "write the plots as PNG", "--plot", required=False)
    p.set_defaults(func=run_evaluate)

    e = subparsers.add_parser("experiment", help="experiments on synthetic data")
    esub = e.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    u = esub.add_parser("usefulness", help="UNet Dice on held-out real data: real vs real+synthetic vs reduced real")
    u.add_argument("--dataset", choices=["phantom", "brain"], default="phantom")
    u.add_argument("--model", help="spade or mask-conditioned diffusion model making the synthetic images (default "
                                   "spade_phantom / spade_brain; "
                                   "'renderer' = the phantom renderer, for checks only)")
    u.add_argument("--steps", type=options.integer(1, 10**6), default=300, help="UNet training steps per arm")
    u.add_argument("--fraction", type=options.number(high=1.0, above=0.0), default=0.25,
                   help="real-data fraction of the reduction arms")
    u.add_argument("--seed", type=options.seed, default=0)
    u.add_argument("--quick", action="store_true", help="tiny run (64 px, few slices, 30 steps) to check the set-up")
    options.output(u, "file", "write the table as CSV", "--csv", required=False)
    options.output(u, "file", "write the plot as PNG", "--plot", required=False)
    u.set_defaults(func=run_usefulness)

    q = subparsers.add_parser("quantize", help="fp32 vs bf16 vs int8: weight size, memory, time, quality lost")
    q.add_argument("--model", default="spade_phantom", help="a spade or anomaly_ae model (name of a shipped one or path)")
    q.add_argument("--samples", type=options.integer(1, 1024), default=8)
    q.add_argument("--repeats", type=options.integer(1, 100), default=3)
    options.output(q, "file", "write the table as CSV", "--csv", required=False)
    options.output(q, "file", "write the plot as PNG", "--plot", required=False)
    q.set_defaults(func=run_quantize)

    a = subparsers.add_parser("anomaly", help="per-voxel anomaly map from a model of normal anatomy")
    a.add_argument("--image", type=Path, required=True)
    a.add_argument("--model", type=Path, help="anomaly_ae model (default: the shipped one)")
    options.output(a, "file", "heat map volume (.nii.gz, .nrrd, .mha)")
    a.add_argument("--smoothing-mm", type=options.number(0.0, 100.0), default=3.0)
    a.add_argument("--labels", type=Path, help="label map: also print the voxel-wise ROC AUC of --label")
    a.add_argument("--label", type=options.integer(0, 2**31 - 1), default=7,
                   help="label value scored by --labels (phantom tumour: 7)")
    a.set_defaults(func=run_anomaly)


def _print_rows(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))


def run_evaluate(args: argparse.Namespace) -> int:
    from ..tasks.evaluate import evaluate, table_rows

    result = run_with_bar(evaluate(args.real, args.synthetic, training=args.training, extractor=args.extractor,
                                   threshold=args.threshold, csv_path=args.csv, plot_path=args.plot,
                                   device="cpu" if args.device == "auto" else args.device),
                          desc="evaluate", disable=args.quiet)
    for name, value in table_rows(result):
        print(f"{name:32s} {value}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def run_usefulness(args: argparse.Namespace) -> int:
    from ..tasks.usefulness import experiment

    result = run_with_bar(experiment(args.dataset, args.model, steps=args.steps, fraction=args.fraction,
                                     quick=args.quick, seed=args.seed, csv_path=args.csv, plot_path=args.plot),
                          desc="usefulness", disable=args.quiet)
    _print_rows(result.rows)
    print("\n".join(result.notes))
    return 0


def run_quantize(args: argparse.Namespace) -> int:
    from ..tasks.quantize import format_table, quantize
    from ..models.store import resolve_model

    result = run_with_bar(quantize(resolve_model(args.model), n_samples=args.samples, repeats=args.repeats,
                                   csv_path=args.csv, plot_path=args.plot), desc="quantize", disable=args.quiet)
    print(format_table(result))
    return 0


def run_anomaly(args: argparse.Namespace) -> int:
    from ..io.readers import read_volume
    from ..io.writers import write_volume
    from ..tasks.anomaly import DEFAULT_MODEL, anomaly_map, tumour_auc

    image = read_volume(args.image, as_label=False)
    heat = run_with_bar(anomaly_map(image, args.model or DEFAULT_MODEL, smoothing_mm=args.smoothing_mm,
                                    device="cpu" if args.device == "auto" else args.device),
                        desc="anomaly", disable=args.quiet)
    write_volume(heat, args.out)
    print(f"wrote {args.out}")
    if args.labels is not None:
        print(f"ROC AUC (label {args.label}): {tumour_auc(heat, read_volume(args.labels, as_label=True), args.label):.4f}")
    return 0
