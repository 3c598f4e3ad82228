"""``medgen sample --model M --sampler ddim --steps 50 --n 4 [--mask L.nii.gz] [--condition age=0.5] --out DIR``.

M is a model card or a MONAI model-zoo bundle folder (opened as published; ``--set ID=VALUE``
overrides a bundle config value). Writes DIR/sample_000.nii.gz ... (one file per sample, 3D,
geometry from the mask, the bundle's grid or the card) and DIR/samples.nii.gz (all samples stacked
as a 4D volume); MAISI without --mask: DIR/labels.nii.gz, the label map it generated from anatomy sizes.

Mask values: each value of ``--mask`` must have a class of the model (a mask-conditioned card's
``label_names``, MAISI's label_dict.json). Values named like a class (the file's label names) are
mapped to it and an unnamed 0 is background; others are refused, naming the file, its values and the
model's classes, until mapped with ``--map VALUE=CLASS`` (class by number or name, e.g. ``--map
1=tumour``) or confirmed with ``--map identity`` (the mask's unnamed values are the model's class numbers).
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

SAMPLERS = options.names("napari_medgen.models.diffusion", "SAMPLERS")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sample", help="draw samples from a diffusion model or a MONAI bundle",
                              description="Sample a diffusion model (napari-medgen model or MONAI bundle folder).")
    p.add_argument("--model", required=True, help="model (NAME, NAME.json) or a MONAI bundle folder")
    p.add_argument("--sampler", choices=SAMPLERS,
                   help="default: the model card's default_sampler, else ddim (DDPM-trained models) or rflow")
    p.add_argument("--steps", type=options.integer(1, 100_000),
                   help="sampling steps (default: the model card's default_steps, else 50 ddim, 30 rflow, 1000 ddpm; "
                        "fewer ddpm steps are respaced)")
    p.add_argument("--n", type=options.integer(1, 64), default=1, help="number of samples")
    p.add_argument("--seed", type=options.seed, default=0)
    p.add_argument("--mask", type=Path, help="label map conditioning a mask-conditioned model (any size: resampled "
                                             "to the model's grid); MAISI: the label map the CT is generated from")
    p.add_argument("--slice", type=options.integer(0), dest="slice_index",
                   help="slice of a 3D mask a 2D model samples (default: the middle one)")
    p.add_argument("--condition", help="conditioning values a model defines, by name: age=0.5,gender=1 (a bundle's "
                                       "names; the others keep its defaults; MAISI: top_region=chest/thorax,"
                                       "spacing_xy=1.5,spacing_z=2, without --mask anatomy sizes size_liver=0.5,"
                                       "size_lung_tumor=absent), or all values in order: --condition=0,0.1,0.2,0.4")
    p.add_argument("--map", action="append", default=[], metavar="VALUE=CLASS",
                   help="mask value -> model class (number or name: a mask-conditioned card's label_names; MAISI: "
                        "configs/label_dict.json), e.g. --map 1=tumour, MAISI --map 1=liver; repeatable or "
                        "comma-separated; --map identity: the mask's unnamed values are the model's class numbers")
    p.add_argument("--shape", type=options.integer(1, 4096), nargs="+",
                   help="output image shape (y x or z y x), for bundles that do not state it or to change it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID=VALUE",
                   help="override a MONAI bundle config value (repeatable; JSON values; ids as a::b), "
                        "e.g. --set output_size_z=256")
    p.add_argument("--scale-factor", type=options.number(above=0.0),
                   help="latent scale factor for latent bundles whose config gives it as an expression")
    p.add_argument("--epsilon-scale", type=options.number(1.0, 1.2),
                   help="divide the predicted noise by this while sampling (DDPM/DDIM of noise-predicting models; "
                        "1: off; default: the card's epsilon_scaling, else 1)")
    p.add_argument("--no-acquisition-noise", action="store_true",
                   help="leave out the scanner noise that models trained with acquisition_noise add to each sample")
    options.output(p, "folder", "output folder (samples.nii.gz and sample_NNN.nii.gz); an earlier result there is "
                                "replaced as a whole only with --overwrite")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import replaced_folder
    from ..io.readers import read_volume
    from ..io.writers import write_volume
    from ..tasks.sample import sample
    from ..training.config import parse_settings

    mask = read_volume(args.mask, as_label=True) if args.mask else None
    task = sample(args.model, sampler=args.sampler, steps=args.steps, n=args.n, seed=args.seed, mask=mask,
                  condition=args.condition, device=args.device, shape=tuple(args.shape) if args.shape else None,
                  scale_factor=args.scale_factor, slice_index=args.slice_index,
                  overrides=parse_settings(args.overrides) or None, label_map=args.map,
                  epsilon_scale=args.epsilon_scale, acquisition_noise=not args.no_acquisition_noise)
    vol = run_with_bar(task, desc="sample", disable=args.quiet)
    for note in [] if args.quiet else vol.metadata.get("notes", []):  # e.g. which class each mask value became
        print(f"medgen: {note}", file=sys.stderr)
    with replaced_folder(args.out, overwrite=args.overwrite, note=" ".join(["medgen", *args.argv])) as staged:
        write_volume(vol, staged / "samples.nii.gz")
        if vol.metadata.get("label_map") is not None:
            write_volume(vol.metadata["label_map"], staged / "labels.nii.gz")
        for i in range(vol.data.shape[0]):
            write_volume(vol.frame(i), staged / f"sample_{i:03d}.nii.gz")
    print(f"wrote {vol.data.shape[0]} samples to {args.out}")
    return 0


def demo_diffusion(volumes: dict[str, Volume], *, device: str = "auto") -> dict[str, Volume]:
    """``medgen demo`` step: a thorax-phantom volume (48^3, seed 0) drawn by the shipped 3D diffusion model."""
    from ..models.store import shipped_models
    from ..progress import run_to_completion
    from ..tasks.sample import sample

    model = shipped_models("diffusion").get("diffusion_phantom3d")
    if model is None:
        return {}
    return {"phantom 3D diffusion sample": run_to_completion(sample(model, n=1, seed=0, device=device)).frame(0)}
