"""``medgen longitudinal``: synthetic follow-up scans of a baseline volume (same tasks as the Longitudinal dock).

Without ``--model``: the real-scan path (tasks/followup.py), on any modality, following the lesion
``--tracked`` in ``--labels`` with a volume law in months. With ``--model``: a learned "temporal" model
(tasks/longitudinal.py), on scans like its training data.
"""

from __future__ import annotations

import argparse

from ..progress import run_with_bar
from . import options

METHODS = options.names("napari_medgen.tasks.longitudinal", "METHODS")
LAWS = ("regression", "growth", "percent")  # data.progression.Law


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("longitudinal", help="synthetic follow-up scans of a baseline and its lesion mask")
    p.add_argument("--baseline", required=True, help="baseline volume (.nii.gz, .nrrd, .mha, DICOM folder), any modality")
    p.add_argument("--labels", help="the baseline's label map holding the lesion (needed without --model)")
    p.add_argument("--tracked", help="the lesion's label value or name (default: a label named like "
                                     "tumour/lesion/mass, or the only foreground label)")
    options.output(p, "folder", "output folder")
    g = p.add_argument_group("progression (without --model)")
    g.add_argument("--progression", default="regression", choices=LAWS,
                   help="regression (volume halving time), growth (doubling time) or percent (volume change per month)")
    g.add_argument("--rate", type=options.number(), default=None,
                   help="halving/doubling time in months, or %% per month (defaults: 3, 6, -10; see docs/longitudinal.md)")
    g.add_argument("--months", type=_months, default=None,
                   help="follow-up times in months after the baseline, e.g. 3,6,12 (default: --steps every --interval)")
    g.add_argument("--steps", type=options.integer(1, 1000), default=5, help="number of follow-ups (when --months is not given)")
    g.add_argument("--interval", type=options.number(above=0.0), default=3.0, help="months between follow-ups (when --months is not given)")
    g.add_argument("--margin-mm", type=options.number(above=0.0), default=None, help="no tissue moves beyond this distance (mm) from the "
                                                                   "lesion (default 10)")
    g.add_argument("--pull", type=options.number(0.0), default=None, help="share of the shrink done by moving the surrounding tissue "
                                                            "in, in [0, 1) (default 0.15; more stretches its texture)")
    g.add_argument("--seed", type=options.seed, default=0, help="seed of the texture fill's fallback draws")
    m = p.add_argument_group("learned model (--model)")
    m.add_argument("--model", help="a 'temporal' model (NAME.safetensors + NAME.json), for scans like its training data")
    m.add_argument("--method", default="direction", choices=METHODS,
                   help="learned time direction, or the k nearest training progressions (manifold)")
    m.add_argument("--k", type=options.integer(1, 64), default=5, help="neighbours for --method manifold")
    m.add_argument("--model-rate", type=options.number(above=0.0), default=None,
                   help="model time steps per follow-up (default: the card's calibrated time_rate)")
    m.add_argument("--refine-steps", type=options.integer(0, 10_000), default=20, help="latent optimisation steps after encoding")
    p.add_argument("--single-file", action="store_true", help="one 4D file (image) + one (labels) instead of one per time")
    p.set_defaults(func=_run)


def _months(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected months separated by commas, e.g. 3,6,12; got {text[:40]!r}") from None


def _run(args: argparse.Namespace) -> int:
    from ..atomic import replaced_folder
    from ..data.progression import Progression, schedule
    from ..errors import InputError
    from ..io.readers import read_volume
    from ..tasks.followup import export_series, simulate_followups
    from ..tasks.longitudinal import predict_followups

    if args.model is None and not args.labels:
        raise InputError("--labels is needed without --model: give the baseline's lesion mask.")
    months = args.months if args.months is not None else schedule(args.steps, args.interval)
    law = Progression(args.progression, args.rate)  # checked before anything is read
    baseline = read_volume(args.baseline, as_label=False)
    labels = read_volume(args.labels, as_label=True) if args.labels else None
    if args.model is None:
        given = {k: v for k, v in (("margin_mm", args.margin_mm), ("pull", args.pull)) if v is not None}
        task = simulate_followups(baseline, labels, args.tracked, months, law, seed=args.seed, **given)
    else:
        task = predict_followups(baseline, args.model, labels=labels, steps=len(months), time_spacing=months[0],
                                 method=args.method, k=args.k, rate=args.model_rate, refine_steps=args.refine_steps,
                                 tracked=args.tracked)
    result = run_with_bar(task, "follow-ups", disable=args.quiet)
    for note in result.notes:
        print(f"note: {note}")
    with replaced_folder(args.out, overwrite=args.overwrite, note=" ".join(["medgen", *args.argv])) as staged:
        paths = export_series(result, staged, single_file=args.single_file)
    unit = result.image.metadata.get("time_unit", "months")
    print(f"{'time (' + unit + ')':>14} {'lesion volume (ml)':>20}")
    for t, ml in zip(result.times, result.tracked_ml, strict=True):
        print(f"{t:>14.1f} {ml:>20.3f}")
    print(f"wrote {len(paths)} files to {args.out}")
    return 0
