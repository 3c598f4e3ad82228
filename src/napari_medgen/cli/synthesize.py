"""``medgen synthesize --labels L.nii.gz --model M [--style ...] [--seed S] --out out.nii.gz``.

Synthesises an image for a label map with a spade model (a path, or a shipped model's name such
as ``spade_brain``) and writes it with the labels' exact geometry. Styles: ``random`` (with
``--seed``), ``mean``, ``vendor:NAME`` (a named style of the model, e.g. the phantom's vendors),
``like:IMAGE`` (encoded from a reference image; its labels are ``--like-labels``, default the
reference's own body found from its intensities, never the input labels: those are another
anatomy's). ``--blend-with STYLE --blend T`` blends the
style towards a second one by T in [0, 1], as the dock's "blend with" and "blend" do (the second
style's random seed is ``--seed`` + 1). ``--slice INDEX`` (repeatable) synthesises only those slices
along the slice axis, the others staying 0, as the dock's scope "current slice".

Label meaning: each value of the label map must have a model class. Values named like a class
(the file's label names vs the model card's) are mapped to it; others are refused, naming both
sides, until mapped with ``--map VALUE=CLASS`` (class by number or name, repeatable or
comma-separated, e.g. ``--map 1=tumour,2=lung``) or confirmed with ``--map identity`` (the map's
unnamed values are the model's class numbers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..progress import run_with_bar
from . import options

if TYPE_CHECKING:
    from ..io.volume import Volume


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("synthesize", help="synthesise an image from a label map (spade models)",
                              description="Synthesise an image for a label map; writes it with the labels' geometry.")
    p.add_argument("--labels", type=Path, required=True, help="label map (.nii.gz, .nrrd, .mha, DICOM folder)")
    p.add_argument("--model", required=True, help="spade model (NAME, NAME.json) or shipped name, e.g. spade_brain")
    p.add_argument("--style", default="random",
                   help="random | mean | vendor:NAME | like:IMAGE (default random, drawn with --seed)")
    p.add_argument("--like-labels", type=Path,
                   help="labels of the like:IMAGE reference (default: its body, found from its intensities)")
    p.add_argument("--blend-with", metavar="STYLE", help="a second style (as --style; its random seed is --seed + 1)")
    p.add_argument("--blend", type=options.number(0.0, 1.0), default=0.5, metavar="T",
                   help="with --blend-with: 0 = --style, 1 = the second style (default 0.5)")
    p.add_argument("--map", action="append", default=[], metavar="VALUE=CLASS",
                   help="label value -> model class (number or name), e.g. --map 1=tumour; repeatable or "
                        "comma-separated; 'identity' confirms unnamed values are the model's class numbers")
    p.add_argument("--seed", type=options.seed, default=0, help=f"seed of the random style (0 .. {options.SEED_MAX})")
    p.add_argument("--slice", type=options.integer(0), action="append", dest="slices", metavar="INDEX",
                   help="synthesise only this slice (repeatable; the others stay 0), as the dock's scope 'current "
                        "slice'; counted along the axis synthesis cuts (the thickest, else axial); default: all")
    p.add_argument("--batch", type=options.integer(1, 4096), default=16, help="slices per forward pass (1 .. 4096)")
    options.output(p, "file", "output image (.nii.gz, .nii, .nrrd, .mha)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.label_mapping import parse_map, user_label_names
    from ..io.readers import read_volume
    from ..io.writers import write_volume
    from ..models.synthesizer import Synthesizer
    from ..tasks.synthesize import synthesize

    labels = read_volume(args.labels)
    synth = Synthesizer(args.model, device=args.device)
    explicit, identity = parse_map(args.map, synth.label_names, synth.n_classes)
    mapping = synth.mapping_for(labels, explicit, identity)
    if not args.quiet:
        names = user_label_names(labels.metadata)
        print(f"medgen: label mapping: {mapping.describe(names, synth.label_names)}", file=sys.stderr)
    style = _style(args.style, synth, labels, args.like_labels)
    if args.blend_with is not None:
        other = _style(args.blend_with, synth, labels, args.like_labels)
        style = synth.interpolate(synth.resolve_style(style, args.seed), synth.resolve_style(other, args.seed + 1),
                                  args.blend)
    image = run_with_bar(synthesize(labels, synth, style=style, seed=args.seed, slices=args.slices, batch=args.batch,
                                    mapping=mapping), desc="synthesize", disable=args.quiet)
    for note in image.metadata.get("notes", []):
        print(f"medgen: {note}", file=sys.stderr)
    write_volume(image, args.out)
    print(f"wrote {args.out}")
    return 0


def _style(text: str, synth: Any, labels: Volume, like_labels: Path | None) -> Any:
    """A --style value as the task takes it: the text, or for like:IMAGE the style encoded from IMAGE
    with ``like_labels`` (default: IMAGE's body, ``Synthesizer.encode_style``)."""
    from ..io.readers import read_volume

    if not text.startswith("like:"):
        return text
    reference = read_volume(text.split(":", 1)[1], as_label=False)
    return synth.encode_style(reference, read_volume(like_labels) if like_labels else None)


def demo_synthesis(volumes: dict[str, Volume], *, device: str = "auto") -> dict[str, Volume]:
    """``medgen demo`` step: the brain labels synthesised in the real brain's encoded style, and the
    phantom labels in the phantom model's "mr_vendor_b" style, with the shipped models."""
    from ..progress import run_to_completion
    from ..models.store import shipped_models
    from ..models.synthesizer import Synthesizer
    from ..tasks.synthesize import synthesize

    models, out = shipped_models("spade"), {}
    if "brain labels" in volumes and "spade_brain" in models:
        synth = Synthesizer(models["spade_brain"], device=device)
        style = synth.encode_style(volumes["brain"], volumes["brain labels"])
        out["brain synthetic"] = run_to_completion(synthesize(volumes["brain labels"], synth, style=style))
    if "phantom labels" in volumes and "spade_phantom" in models:
        synth = Synthesizer(models["spade_phantom"], device=device)
        out["phantom synthetic (vendor b)"] = run_to_completion(
            synthesize(volumes["phantom labels"], synth, style="vendor:mr_vendor_b"))
    return out
