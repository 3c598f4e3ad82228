"""``medgen phantom``: write phantom subjects or series (image, labels, factors) to a folder.

Files: ``DIR/phantom_sSEED[_SERIES].nii.gz`` (image), ``..._seg.nii.gz`` (labels, uint8) and
``..._factors.json`` (the exact anatomy (of frame 0 for a series), the series factor values and
the factors measured from the labels, per frame for a series). Existing files of the same stem
are replaced only with ``--overwrite``, and then all three together.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError

from . import options

STYLES = options.names("napari_medgen.data.phantom", "STYLE_TABLES")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("phantom", help="write a synthetic thorax phantom (image + labels) or a 4D series",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=options.seed, default=0, help="anatomy and noise seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace this seed's (and series') existing files")
    p.add_argument("--series", choices=["regression", "breathing", "cardiac"], help="write a 4D series instead of one subject")
    p.add_argument("--n", type=options.integer(2, 64), help="frames of the series (default 6 regression, "
                                                            "8 breathing/cardiac)")
    p.add_argument("--style", choices=STYLES, default="mr_vendor_a", help="contrast style")
    p.add_argument("--shape", type=options.integer(1, 512), nargs=3, default=(64, 128, 128), metavar=("Z", "Y", "X"),
                   help="grid size (default 64 128 128, each at most 512); Z=1 gives a 2D slice")
    p.add_argument("--tumour-radius", type=options.number(0.0, 100.0), default=12.0,
                   help="tumour radius in mm (0 = none)")
    p.add_argument("--breathing-phase", type=options.number(0.0, 1.0), default=0.0, help="0 exhale .. 1 inhale")
    p.add_argument("--cardiac-phase", type=options.number(0.0, 1.0), default=0.0,
                   help="0 end-diastole .. 1 end-systole")
    p.add_argument("--body-scale", type=options.number(0.5, 1.5), default=1.0,
                   help="in-plane body size factor (0.9 .. 1.1 typical; 0.5 .. 1.5 allowed)")
    p.add_argument("--rotation", type=options.number(-180.0, 180.0), default=0.0,
                   help="in-plane rotation in degrees (-45 .. 45 typical)")
    p.add_argument("--noise", type=options.number(0.0, 1.0), default=0.02,
                   help="noise sigma (MR: relative; CT: x 1000 HU)")
    p.add_argument("--bias", type=options.number(0.0, 1.0), default=0.2, help="bias-field amplitude (MR styles)")
    p.add_argument("--blur", type=options.number(0.0, 20.0), default=1.0, help="Gaussian blur sigma in mm")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import check_output_file, replaced_files
    from ..data import phantom
    from ..io.writers import write_volume

    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out '{args.out}' is a file; give a folder.")
    kw = dict(shape=tuple(args.shape), style=args.style, noise=args.noise, bias=args.bias, blur_mm=args.blur,
              breathing_phase=args.breathing_phase, cardiac_phase=args.cardiac_phase, body_scale=args.body_scale,
              rotation_deg=args.rotation)
    stem = f"phantom_s{args.seed}" + (f"_{args.series}" if args.series else "")
    targets = [args.out / f"{stem}{end}" for end in (".nii.gz", "_seg.nii.gz", "_factors.json")]
    for target in targets:  # before the work, not after
        check_output_file(target, args.overwrite)
    if args.series == "regression":
        image, labels = phantom.tumour_regression_series(args.seed, n=args.n or 6, **kw)
    elif args.series in ("breathing", "cardiac"):
        kw.pop(f"{args.series}_phase")
        make = phantom.breathing_series if args.series == "breathing" else phantom.cardiac_series
        image, labels = make(args.seed, n=args.n or 8, tumour_radius_mm=args.tumour_radius, **kw)
    else:
        image, labels = phantom.make_phantom(args.seed, tumour_radius_mm=args.tumour_radius, **kw)
    record = {"label_names": phantom.LABELS, "style": args.style, "anatomy": labels.metadata["factors"],
              "measured": phantom.estimate_factors(labels)}
    factor = labels.metadata.get("series_factor")
    if factor:
        record["series"] = {"factor": factor, "values": labels.metadata[factor]}
    with replaced_files(targets, overwrite=args.overwrite) as tmp:
        write_volume(image, tmp / targets[0].name)
        write_volume(labels, tmp / targets[1].name)
        (tmp / targets[2].name).write_text(json.dumps(record, indent=1))
    print(f"wrote {args.out / stem}.nii.gz, _seg.nii.gz, _factors.json: shape {image.data.shape}")
    return 0
