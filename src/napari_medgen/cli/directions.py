"""``medgen directions discover|measure|quality|apply``: latent-direction discovery and editing."""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..progress import run_with_bar
from . import options

if TYPE_CHECKING:
    import numpy as np

METHODS = options.names("napari_medgen.tasks.directions", "METHODS")
MAX_MOVE = 10.0  # --move ALPHA: standard deviations of the latent prior, beyond which a decoder outputs noise


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("directions", help="discover latent directions of a VAE/GAN and edit images along them")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    d = dsub.add_parser("discover", help="find directions without labels")
    d.add_argument("--model", required=True, help="a 'vae' or 'gan' model (NAME.safetensors + NAME.json)")
    d.add_argument("--method", default="sefa", choices=METHODS)
    d.add_argument("--k", type=options.integer(1, 512), default=10, help="number of directions")
    d.add_argument("--seed", type=options.seed, default=0)
    d.add_argument("--steps", type=options.integer(1, 10**6), default=300, help="training steps (voynov)")
    options.output(d, "file", "directions JSON (default: saved with the model as NAME.directions.json)",
                   required=False)
    d.set_defaults(func=_discover)

    m = dsub.add_parser("measure", help="correlate each direction with the phantom's factors (phantom models)")
    m.add_argument("--model", required=True)
    m.add_argument("--directions", help="directions JSON (default: the model's own)")
    m.add_argument("--bases", type=options.integer(2, 10000), default=12, help="random latents walked per direction")
    options.output(m, "file", "write the table as CSV", "--csv", required=False)
    m.add_argument("--record", action="store_true", help="write the table into the model card's metrics")
    m.set_defaults(func=_measure)

    q = dsub.add_parser("quality", help="how well a VAE reconstructs data like its training data (label Dice, PSNR)")
    q.add_argument("--model", required=True)
    q.add_argument("--n", type=options.integer(1, 100000), default=500,
                   help="images (phantom models; a brain model uses all its slices)")
    q.add_argument("--record", action="store_true", help="write the figures into the model card's metrics")
    q.set_defaults(func=_quality)

    a = dsub.add_parser("apply", help="edit a random sample or a real image slice and write the result")
    a.add_argument("--model", required=True)
    a.add_argument("--directions", help="directions JSON (default: the model's own)")
    a.add_argument("--move", type=move, action="append", default=[], metavar="K=ALPHA",
                   help=f"move along direction K by ALPHA standard deviations, |ALPHA| <= {MAX_MOVE:g} (repeatable)")
    a.add_argument("--seed", type=options.seed, default=0, help="random base latent (when no --image)")
    a.add_argument("--image", help="a volume whose slice is inverted into the latent space")
    a.add_argument("--slice", type=options.integer(0), help="slice index along the through-plane axis (default: middle)")
    a.add_argument("--walk", type=options.integer(0), metavar="K",
                   help="instead: write the walk along direction K (-3..3 std) as a stack")
    options.output(a, "file", "output image (.nii.gz, .nrrd, .mha)")
    a.set_defaults(func=_apply)


def _editor(args: argparse.Namespace):
    from ..tasks.directions import Directions
    from ..tasks.latent_editor import LatentEditor

    editor = LatentEditor(args.model, device=args.device if args.device != "auto" else "cpu")
    if getattr(args, "directions", None):
        editor.directions = Directions.load(args.directions)
    return editor


def _discover(args: argparse.Namespace) -> int:
    from ..tasks.directions import discover

    editor = _editor(args)
    if args.out is None:
        from ..atomic import check_output_file

        check_output_file(editor.directions_path(), args.overwrite, "the model's directions file")
    images = editor.images_for(args.method, seed=args.seed + 1000)
    editor.directions = run_with_bar(discover(editor.model, args.method, args.k, seed=args.seed, images=images,
                                              steps=args.steps), f"discover ({args.method})", disable=args.quiet)
    out = Path(args.out) if args.out else editor.save_directions()
    if args.out:
        editor.directions.save(out)
    print(f"wrote {out}")
    return 0


def _measure(args: argparse.Namespace) -> int:
    from ..tasks.direction_measures import disentanglement, dominated

    editor = _editor(args)
    if editor.directions is None:
        raise InputError(f"Model '{args.model}' has no saved directions: run 'medgen directions discover' first.")
    table, names = run_with_bar(disentanglement(editor.model, editor.directions, editor.pixel_mm, n_bases=args.bases),
                                "measure", disable=args.quiet)
    print(format_table(table, names, editor.directions.names))
    hits = dominated(table)
    print(f"directions dominated by one factor (|r| >= 0.7, others <= 0.3): {len(hits)}")
    if args.record:
        from ..models.store import record_metrics

        record_metrics(args.model, "directions", {
            "method": editor.directions.method, "n_bases": args.bases, "factors": names,
            "r": {n: [round(float(v), 3) for v in row] for n, row in zip(editor.directions.names, table, strict=True)},
            "dominated": [f"{editor.directions.names[k]}: {names[j]}" for k, j in hits]})
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["direction", *names])
            for name, row in zip(editor.directions.names, table, strict=True):
                w.writerow([name, *(f"{v:.3f}" for v in row)])
    return 0


def _quality(args: argparse.Namespace) -> int:
    from ..tasks.direction_measures import reconstruction_quality

    editor = _editor(args)
    images, labels = editor.training_data(args.n, seed=2000)
    figures = reconstruction_quality(editor.model, images, labels)
    names = editor.card.get("label_names", {})
    for c, d in figures["dice"].items():
        print(f"Dice {names.get(c, c):<14} {d:.3f}")
    print(f"image PSNR {figures['psnr_db']:.2f} dB over {figures['n_images']} images")
    if args.record:
        from ..models.store import record_metrics

        record_metrics(args.model, "reconstruction", figures)
    return 0


def format_table(table: np.ndarray, factors: list[str], rows: list[str]) -> str:
    head = f"{'direction':<14}" + "".join(f"{f:>13}" for f in factors)
    lines = [head] + [f"{r:<14}" + "".join(f"{v:>13.2f}" for v in row) for r, row in zip(rows, table, strict=True)]
    return "\n".join(lines)


def move(text: str) -> tuple[int, float]:
    """Argument type of ``--move``: "K=ALPHA" -> (K, ALPHA); ALPHA finite and within +-MAX_MOVE (a larger
    move decodes to noise, or to NaN)."""
    k, sep, value = text.partition("=")
    try:
        index, alpha = int(k), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K=ALPHA (e.g. 0=1.5), got {text[:40]!r}") from None
    if index < 0 or not sep:
        raise argparse.ArgumentTypeError(f"expected K=ALPHA with a direction number K >= 0, got {text[:40]!r}")
    if not (math.isfinite(alpha) and abs(alpha) <= MAX_MOVE):
        raise argparse.ArgumentTypeError(f"ALPHA must be a number between -{MAX_MOVE:g} and {MAX_MOVE:g} "
                                         f"(standard deviations), got {text[:40]!r}")
    return index, alpha


def _apply(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io.readers import read_volume
    from ..io.volume import Volume
    from ..io.writers import write_volume

    editor = _editor(args)
    if editor.directions is None:
        raise InputError(f"Model '{args.model}' has no saved directions: run 'medgen directions discover' first.")
    alphas = np.zeros(len(editor.directions.vectors), dtype=np.float32)
    wanted = [k for k, _ in args.move] + ([args.walk] if args.walk is not None else [])
    if any(k >= len(alphas) for k in wanted):
        raise InputError(f"Direction {max(wanted)} does not exist: the model has {len(alphas)} (0 .. {len(alphas) - 1}).")
    for k, alpha in args.move:
        alphas[k] = alpha
    spacing, origin = (editor.pixel_mm, editor.pixel_mm, 1.0), (0.0, 0.0, 0.0)
    if args.image:
        vol = read_volume(args.image)
        if vol.is_time_series:
            raise InputError(f"'{args.image}' is a time series; give one 3D volume.")
        index = vol.data.shape[0] // 2 if args.slice is None else args.slice
        if not 0 <= index < vol.data.shape[0]:
            raise InputError(f"--slice {index} is outside '{args.image}' ({vol.data.shape[0]} slices).")
        run_with_bar(editor.invert_image(vol.data[index], spacing_mm=(vol.spacing[1], vol.spacing[0])), "invert",
                     disable=args.quiet)
        spacing, origin = vol.spacing, tuple(vol.index_to_physical(np.array([0.0, 0.0, index])))
    else:
        editor.random_base(args.seed)
    if args.walk is not None:
        stack = []
        for a in np.linspace(-3, 3, 7):
            moved = alphas.copy()
            moved[args.walk] += a
            stack.append(editor.render(moved)[0])
        data = np.stack(stack)
    else:
        data = editor.render(alphas)[0][None]
    if not np.isfinite(data).all():
        raise InputError("The edited image holds NaN/inf values; try smaller --move values.")
    write_volume(Volume(data, spacing=spacing, origin=origin), args.out)
    print(f"wrote {args.out}")
    return 0
