"""``medgen deform --labels L --method METHOD [parameters] --out OUT``: a new label map for variety.

Methods (tasks.deform): elastic (--sigma-mm, --magnitude-mm, --seed), dilate/erode (--label,
--radius, --unit voxel|mm), affine (--rotation, --scale), vae-sample (--model, --n, --seed; --labels
optional, gives the geometry), vae-interpolate (--model, --other B, --t, --linear, --map VALUE=CLASS:
the subjects' label values as the VAE's classes, as for ``medgen synthesize``). The output keeps
the input's geometry and label dtype (vae-interpolate: the VAE's classes).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import run_with_bar
from . import options

METHODS = options.names("napari_medgen.tasks.deform", "METHODS")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("deform", help="deform a label map (elastic, dilate, erode, affine, label VAE)",
                              description="Make a new label map from one (or two) label maps; writes it with the "
                                          "input's geometry.")
    p.add_argument("--labels", type=Path, help="input label map (subject A for vae-interpolate)")
    p.add_argument("--method", choices=METHODS, required=True)
    options.output(p, "file", "output label map (.nii.gz, .nii, .nrrd, .mha)")
    p.add_argument("--seed", type=options.seed, default=0)
    p.add_argument("--sigma-mm", type=options.number(high=1000.0, above=0.0), default=20.0,
                   help="elastic: smoothness of the displacement (mm)")
    p.add_argument("--magnitude-mm", type=options.number(0.0, 1000.0), default=6.0,
                   help="elastic: largest displacement (mm)")
    p.add_argument("--label", type=options.integer(0, 2**31 - 1), help="dilate/erode: the label value to grow or shrink")
    p.add_argument("--radius", type=options.number(0.0, 1000.0), default=1.0, help="dilate/erode: distance in --unit")
    p.add_argument("--unit", choices=["voxel", "mm"], default="voxel")
    p.add_argument("--rotation", type=options.number(-360.0, 360.0), default=0.0, help="affine: axial rotation (degrees)")
    p.add_argument("--scale", type=options.number(0.1, 10.0), default=1.0, help="affine: scale factor (0.1 .. 10)")
    p.add_argument("--model", default="label_vae_phantom", help="label VAE (path or shipped name)")
    p.add_argument("--n", type=options.integer(1, 1024), default=8, help="vae-sample: number of slices")
    p.add_argument("--other", type=Path, help="vae-interpolate: subject B's label map")
    p.add_argument("--t", type=options.number(0.0, 1.0), default=0.5, help="vae-interpolate: 0 = A, 1 = B")
    p.add_argument("--linear", action="store_true", help="vae-interpolate: lerp instead of slerp")
    p.add_argument("--map", action="append", default=[], metavar="VALUE=CLASS",
                   help="vae-interpolate: label value -> the VAE's class (number or name), e.g. --map 1=tumour; "
                        "'identity' confirms unnamed values are its class numbers")
    p.set_defaults(func=run)


def params_for(args: argparse.Namespace) -> dict[str, Any]:
    """The task keyword parameters of the chosen method."""
    m = args.method
    if m == "elastic":
        return {"sigma_mm": args.sigma_mm, "magnitude_mm": args.magnitude_mm}
    if m in ("dilate", "erode"):
        if args.label is None:
            raise argparse.ArgumentTypeError(f"--method {m} needs --label")
        return {"label": args.label, "radius": args.radius, "unit": args.unit}
    if m == "affine":
        return {"rotation_deg": args.rotation, "scale": args.scale}
    if m == "vae-sample":
        return {"model": args.model, "n": args.n, "device": args.device}
    return {"model": args.model, "t": args.t, "spherical": not args.linear, "label_map": list(args.map),
            "device": args.device}


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..io.readers import read_volume
    from ..io.writers import write_volume
    from ..tasks.deform import deform

    try:
        params = params_for(args)
    except argparse.ArgumentTypeError as exc:
        raise InputError(str(exc)) from None
    labels = read_volume(args.labels, as_label=True) if args.labels else None
    if args.method == "vae-interpolate":
        if args.other is None:
            raise InputError("--method vae-interpolate needs --other (subject B's label map).")
        params["other"] = read_volume(args.other, as_label=True)
    out = run_with_bar(deform(labels, args.method, seed=args.seed, **params), desc="deform", disable=args.quiet)
    write_volume(out, args.out)
    print(f"wrote {args.out}")
    return 0
