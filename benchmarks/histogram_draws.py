"""How far apart are real slices by the ledger's histogram row? The spread that the row's bar sits in.

    python benchmarks/histogram_draws.py [--sample brain] [--size 80] [--n 16] [--draws 1000] [--ratio 2.16 ...] [--independent]

The ledger (``benchmarks/quality.py``) divides the histogram distance of ``n`` samples to the held-out
slices by the real-vs-real distance: the median over 50 draws of ``n`` training slices against the
held-out slices. This script makes ``draws`` such draws of real slices (no model) and prints each
draw's distance over their median (10th, 50th, 90th percentile, the largest), the share of real draws
at or above 1.5 (the bar) and at or above each ``--ratio``, and the 50-draw median the ledger uses
against the ``draws`` one. ``--independent``: the draws are made with replacement (what a model that had
learnt the training slices exactly would draw), and the share of them at or above 1.5 x the median of
50 *distinct* draws is printed too (the pooled ledger row's first reference: near the whole training
set, interleaved with the held-out slices, it is closer to them than independent draws). Only real
slices are read; nothing here chooses a model.
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_medgen.tasks import quality as q
from napari_medgen.training.diffusion_trainer import sample_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", default="brain")
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--ratio", type=float, nargs="*", default=[])
    ap.add_argument("--independent", action="store_true", help="draw with replacement")
    args = ap.parse_args()
    train = np.stack(sample_data(args.sample, 2, args.size)[0]).astype(np.float32)
    held = np.stack(sample_data(args.sample, 2, args.size, held_out=True)[0]).astype(np.float32)
    ledger_median = float(np.median(q.drawn_histogram_distances(train, held, args.n, q.REAL_DRAWS, seed=0)))
    d = q.drawn_histogram_distances(train, held, args.n, args.draws, seed=1, replace=args.independent)
    ratio = d / np.median(d)
    kind = "independent (with replacement)" if args.independent else "distinct"
    print(f"{args.draws} draws of {args.n} {kind} real training slices against {len(held)} held-out slices "
          f"({args.sample}, {args.size} px)")
    print("distance / median of the draws: p10 {:.2f}  p50 {:.2f}  p90 {:.2f}  max {:.2f}".format(
        *np.percentile(ratio, [10, 50, 90, 100])))
    for r in [1.5, *args.ratio]:
        print(f"share of real draws at or above {r:g} x the median: {(ratio >= r).mean():.3f}")
    if args.independent:
        share = (d >= 1.5 * ledger_median).mean()
        print(f"share at or above 1.5 x the median of {q.REAL_DRAWS} distinct draws: {share:.3f}")
    print(f"median of the ledger's {q.REAL_DRAWS} draws {ledger_median:.5f} against {np.median(d):.5f} here "
          f"(ratio {ledger_median / np.median(d):.2f})")


if __name__ == "__main__":
    main()
