"""``medgen longitudinal``: synthetic follow-up scans of a baseline volume (same task as the Longitudinal dock)."""

from __future__ import annotations

import argparse

from . import options

METHODS = options.names("napari_medgen.tasks.longitudinal", "METHODS")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("longitudinal", help="predict synthetic follow-up scans from a baseline (a 'temporal' model)")
    p.add_argument("--baseline", required=True, help="baseline volume (.nii.gz, .nrrd, .mha, DICOM folder)")
    p.add_argument("--labels", help="the baseline's label map (optional; else the model segments the baseline)")
    p.add_argument("--model", required=True, help="a 'temporal' model (NAME.safetensors + NAME.json)")
    p.add_argument("--steps", type=int, default=5, help="number of follow-ups")
    p.add_argument("--time-spacing", type=float, default=3.0, help="time between follow-ups (metadata only)")
    p.add_argument("--time-unit", default="months")
    p.add_argument("--method", default="direction", choices=METHODS,
                   help="learned time direction, or the k nearest training progressions (manifold)")
    p.add_argument("--k", type=int, default=5, help="neighbours for --method manifold")
    p.add_argument("--rate", type=float, default=None,
                   help="model time steps per follow-up (default: the card's calibrated time_rate)")
    p.add_argument("--refine-steps", type=int, default=20, help="latent optimisation steps after encoding")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--single-file", action="store_true", help="one 4D file (image) + one (labels) instead of one per time")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..io.readers import read_volume
    from ..progress import run_with_bar
    from ..tasks.followup import export_series
    from ..tasks.longitudinal import predict_followups

    baseline = read_volume(args.baseline, as_label=False)
    labels = read_volume(args.labels, as_label=True) if args.labels else None
    result = run_with_bar(predict_followups(baseline, args.model, labels=labels, steps=args.steps,
                                            time_spacing=args.time_spacing, time_unit=args.time_unit,
                                            method=args.method, k=args.k, rate=args.rate,
                                            refine_steps=args.refine_steps), "follow-ups", disable=args.quiet)
    for note in result.notes:
        print(f"note: {note}")
    paths = export_series(result, args.out, single_file=args.single_file)
    print(f"{'time':>8} {'tracked volume (ml)':>20}")
    for t, ml in zip(result.times, result.tracked_ml, strict=True):
        print(f"{t:>8.1f} {ml:>20.2f}")
    print(f"wrote {len(paths)} files to {args.out}")
    return 0
