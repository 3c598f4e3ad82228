"""How often would a perfect model miss the ledger's structure bar by chance? Real slices only.

    python benchmarks/structure_draws.py [--size 80] [--n 16 48] [--draws 10000] [--bar 0.8]

The ledger (``benchmarks/quality.py``) counts the brain diffusion samples that hold each structure of
``tasks.brain_structures`` (ventricles, grey/white contrast) and divides their share by the share in
the training slices; the bar is 0.8. A model that had learnt the training slices exactly draws them
independently (with replacement). This script makes ``draws`` such draws of ``n`` training slices (no
model) and prints, per structure, the share of training slices that hold it, the draws' ratio
(10th, 50th, 90th percentile) and the share of draws below the bar: how often the row fails a
perfect model at that sample count. Nothing here chooses or measures a model.
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_medgen.tasks import brain_structures as bs
from napari_medgen.training.diffusion_trainer import sample_data


def real_draw_ratios(present: np.ndarray, n: int, draws: int, seed: int = 0) -> np.ndarray:
    """(draws,) share of ``n`` items drawn with replacement from ``present`` (bool per real slice) that hold
    the structure, over the share in all of ``present``."""
    present = np.asarray(present, bool)
    if not present.any():
        raise ValueError("no real slice holds the structure: its share cannot be divided by")
    picks = np.random.default_rng(seed).integers(0, len(present), (draws, n))
    return present[picks].mean(1) / present.mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--n", type=int, nargs="+", default=[16, 48])
    ap.add_argument("--draws", type=int, default=10000)
    ap.add_argument("--bar", type=float, default=0.8)
    args = ap.parse_args()
    images, labels, spacing = sample_data("brain", 2, args.size)
    train = np.stack(images).astype(np.float32)
    found = bs.image_structures(train, bs.reference(train, np.stack(labels)), spacing[0])
    print(f"{args.draws} draws with replacement from {len(train)} training slices (brain, {args.size} px)")
    for s in bs.STRUCTURES:
        print(f"{s}: in {found[s].mean():.0%} of the training slices")
        for n in args.n:
            r = real_draw_ratios(found[s], n, args.draws)
            p10, p50, p90 = np.percentile(r, [10, 50, 90])
            print(f"  {n:>3} slices: ratio p10 {p10:.2f}  p50 {p50:.2f}  p90 {p90:.2f}; "
                  f"below the bar ({args.bar:g}): {(r < args.bar).mean():.1%} of draws")


if __name__ == "__main__":
    main()
