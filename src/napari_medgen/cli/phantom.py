"""``medgen phantom``: write phantom subjects or series (image, labels, factors) to a folder.

Files: ``DIR/phantom_sSEED[_SERIES].nii.gz`` (image), ``..._seg.nii.gz`` (labels, uint8) and
``..._factors.json`` (the exact anatomy (of frame 0 for a series), the series factor values and
the factors measured from the labels, per frame for a series).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..data import phantom
from ..io.writers import write_volume


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("phantom", help="write a synthetic thorax phantom (image + labels) or a 4D series",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="anatomy and noise seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--series", choices=["regression", "breathing", "cardiac"], help="write a 4D series instead of one subject")
    p.add_argument("--n", type=int, help="frames of the series (default 6 regression, 8 breathing/cardiac)")
    p.add_argument("--style", choices=phantom.STYLES, default="mr_vendor_a", help="contrast style")
    p.add_argument("--shape", type=int, nargs=3, default=(64, 128, 128), metavar=("Z", "Y", "X"),
                   help="grid size (default 64 128 128); Z=1 gives a 2D slice")
    p.add_argument("--tumour-radius", type=float, default=12.0, help="tumour radius in mm (0 = none)")
    p.add_argument("--breathing-phase", type=float, default=0.0, help="0 exhale .. 1 inhale")
    p.add_argument("--cardiac-phase", type=float, default=0.0, help="0 end-diastole .. 1 end-systole")
    p.add_argument("--body-scale", type=float, default=1.0, help="in-plane body size factor (0.9 .. 1.1)")
    p.add_argument("--rotation", type=float, default=0.0, help="in-plane rotation in degrees (-45 .. 45)")
    p.add_argument("--noise", type=float, default=0.02, help="noise sigma (MR: relative; CT: x 1000 HU)")
    p.add_argument("--bias", type=float, default=0.2, help="bias-field amplitude (MR styles)")
    p.add_argument("--blur", type=float, default=1.0, help="Gaussian blur sigma in mm")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kw = dict(shape=tuple(args.shape), style=args.style, noise=args.noise, bias=args.bias, blur_mm=args.blur,
              breathing_phase=args.breathing_phase, cardiac_phase=args.cardiac_phase, body_scale=args.body_scale,
              rotation_deg=args.rotation)
    stem = f"phantom_s{args.seed}"
    if args.series == "regression":
        image, labels = phantom.tumour_regression_series(args.seed, n=args.n or 6, **kw)
        stem += "_regression"
    elif args.series in ("breathing", "cardiac"):
        kw.pop(f"{args.series}_phase")
        make = phantom.breathing_series if args.series == "breathing" else phantom.cardiac_series
        image, labels = make(args.seed, n=args.n or 8, tumour_radius_mm=args.tumour_radius, **kw)
        stem += f"_{args.series}"
    else:
        image, labels = phantom.make_phantom(args.seed, tumour_radius_mm=args.tumour_radius, **kw)
    args.out.mkdir(parents=True, exist_ok=True)
    write_volume(image, args.out / f"{stem}.nii.gz")
    write_volume(labels, args.out / f"{stem}_seg.nii.gz")
    record = {"label_names": phantom.LABELS, "style": args.style, "anatomy": labels.metadata["factors"],
              "measured": phantom.estimate_factors(labels)}
    factor = labels.metadata.get("series_factor")
    if factor:
        record["series"] = {"factor": factor, "values": labels.metadata[factor]}
    atomic_write_bytes(args.out / f"{stem}_factors.json", json.dumps(record, indent=1).encode())
    print(f"wrote {args.out / stem}.nii.gz, _seg.nii.gz, _factors.json: shape {image.data.shape}")
    return 0
