"""``medgen sample --model M --sampler ddim --steps 50 --n 4 [--mask L.nii.gz] [--condition 0.5,0.3] --out DIR``.

Writes DIR/sample_000.nii.gz ... (one file per sample, 3D, geometry from the mask or the card)
and DIR/samples.nii.gz (all samples stacked as a 4D volume).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import run_with_bar
from . import options

SAMPLERS = options.names("napari_medgen.models.diffusion", "SAMPLERS")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sample", help="draw samples from a diffusion model or a MONAI bundle",
                              description="Sample a diffusion model (napari-medgen model or MONAI bundle folder).")
    p.add_argument("--model", required=True, help="model (NAME, NAME.json) or a MONAI bundle folder")
    p.add_argument("--sampler", choices=SAMPLERS, help="default: ddim (DDPM-trained models) or rflow")
    p.add_argument("--steps", type=int, help="sampling steps (default: 50 ddim, 30 rflow, 1000 ddpm)")
    p.add_argument("--n", type=int, default=1, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mask", type=Path, help="label map conditioning a mask-conditioned model")
    p.add_argument("--condition", help="conditioning values of a conditioned model (e.g. a latent bundle), "
                                       "comma-separated: 0.5,0.3,0.2,0.4 (--condition=-1,2 when the first is negative)")
    p.add_argument("--shape", type=int, nargs="+",
                   help="output image shape (y x or z y x) for bundles that do not state it")
    p.add_argument("--scale-factor", type=float,
                   help="latent scale factor for latent bundles whose config gives it as an expression")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.readers import read_volume
    from ..io.writers import write_volume
    from ..tasks.sample import sample

    mask = read_volume(args.mask, as_label=True) if args.mask else None
    task = sample(args.model, sampler=args.sampler, steps=args.steps, n=args.n, seed=args.seed, mask=mask,
                  condition=args.condition, device=args.device, shape=tuple(args.shape) if args.shape else None,
                  scale_factor=args.scale_factor)
    vol = run_with_bar(task, desc="sample", disable=args.quiet)
    args.out.mkdir(parents=True, exist_ok=True)
    write_volume(vol, args.out / "samples.nii.gz")
    for i in range(vol.data.shape[0]):
        write_volume(vol.frame(i), args.out / f"sample_{i:03d}.nii.gz")
    print(f"wrote {vol.data.shape[0]} samples to {args.out}")
    return 0
