"""Compare 3D phantom diffusion models or samplers on training phantoms only (never the held-out ones).

    python scripts/phantom3d_training_check.py [--model PATH] [--seed 1] [--n 10] [--sampler ddim:50 ddpm:250 ...]
        [--trajectory 5]

For each ``SAMPLER:STEPS`` (default: the card's sampler and steps), ``n`` samples with ``seed`` (1, the
monitor seed; the ledger, ``benchmarks/quality.py``, samples with seed 0 against held-out phantoms),
segmented as the ledger segments them (``tasks.structure_presence``, class means from the training
phantoms): each structure's presence share, the balls in the lungs per sample
(``structure_presence.lung_balls``; a real phantom has one tumour) and the wall time. This decides
between candidates before the ledger measures the chosen one once. ``--trajectory K`` also counts the
balls in the sampler's clean-image estimate (the preview, without acquisition noise) every K steps: at
which noise level the balls appear.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_medgen.progress import collect
from napari_medgen.tasks import structure_presence as sp
from napari_medgen.tasks.sample import sample
from napari_medgen.training.diffusion_trainer import sample_data

SHIPPED = "src/napari_medgen/sample_data/models/diffusion_phantom3d"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=SHIPPED)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sampler", nargs="+", default=[None], help="SAMPLER:STEPS, e.g. ddim:50 ddpm:250")
    ap.add_argument("--trajectory", type=int, default=0, metavar="K", help="count balls in the x0 estimate every K steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, labels = (np.stack(x) for x in sample_data("phantom", 3, 48)[:2])
    measure = sp.Measure.from_training(train.astype(np.float32), labels)
    for spec in args.sampler:
        sampler, steps = (spec.split(":")[0], int(spec.split(":")[1])) if spec else (None, None)
        start = time.perf_counter()
        previews = {"preview_every": args.trajectory} if args.trajectory else {}
        seen, drawn = collect(sample(args.model, n=args.n, seed=args.seed, device="cpu", sampler=sampler,
                                     steps=steps, **previews))
        seconds = time.perf_counter() - start
        estimates = [p for p in seen if p.preview is not None and 0 < p.step < p.total] if args.trajectory else []
        for p in estimates:  # not the start noise, not the result (printed below)
            estimate = measure.segment(list(p.preview.data.reshape(args.n, *p.preview.data.shape[-3:])))
            print(f"  x0 estimate after step {p.step}/{p.total}: balls in the lungs per sample "
                  f"{[sp.lung_balls(s) for s in estimate]}", flush=True)
        segmented = measure.segment(list(drawn.data.reshape(args.n, *drawn.data.shape[-3:])))
        balls = [sp.lung_balls(s) for s in segmented]
        rates = ", ".join(f"{k} {v:.1f}" for k, v in measure.rates(segmented).items())
        print(f"{drawn.metadata['sampler']} {drawn.metadata['steps']}: {seconds:.0f} s; balls in the lungs per sample "
              f"{balls} (more than one: {sum(b > 1 for b in balls)} of {args.n}); present: {rates}", flush=True)


if __name__ == "__main__":
    main()
