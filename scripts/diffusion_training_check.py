"""Compare unconditional diffusion models on their training slices only (never the held-out ones).

    python scripts/diffusion_training_check.py MODEL [MODEL ...] [--seeds 7 8] [--n 16] [--epsilon-scale 1 1.01]
        [--sampler ddpm --steps 250] [--save DIR]

For each model and seed: ``n`` samples (the card's default sampler) against all training slices, the
ledger's measures with the training slices in place of the held-out ones: the intensity-histogram
distance divided by the real-vs-real distance at the same count (median over 50 draws of ``n``
training slices against the others), the in-object gradient ratio, and for the brain the share of
samples with each structure of ``tasks.brain_structures`` over the training slices' share. This decides between
candidate models before the ledger (``benchmarks/quality.py``) measures the chosen one once on the
held-out slices. ``--epsilon-scale``: sample each model with each of these divisors of its predicted
noise (``tasks.sample.epsilon_scaling``; default: the card's). ``--sampler``/``--steps``: sample with these
instead of the card's defaults. The brain's structure shares are also printed pooled over the seeds.
``--save DIR``: each set of samples as ``DIR/<model>_<scale>_<seed>.npy`` (n, y, x), to look at.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from napari_medgen.models.store import load_card
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks import brain_structures as bs
from napari_medgen.tasks import quality as q
from napari_medgen.tasks.sample import sample
from napari_medgen.training.diffusion_trainer import sample_data

DRAWS = 50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epsilon-scale", type=float, nargs="+", default=[None])
    ap.add_argument("--sampler", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--save", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    card = load_card(args.models[0])
    size, kind = int(card["shape"][-1]), card["sample"]
    train, train_lab, spacing = sample_data(kind, 2, size)
    train = np.stack(train).astype(np.float32)
    structures = None
    if kind == "brain":
        ref = bs.reference(train, np.stack(train_lab))
        structures = lambda x: bs.image_structures(x, ref, spacing[0])  # noqa: E731
        source = structures(train)
    whole = lambda x: q.foreground(x, train, erode=0, fill=False)  # noqa: E731
    inner = lambda x: q.foreground(x, train)  # noqa: E731
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(DRAWS):
        pick = rng.permutation(len(train))
        a, b = train[pick[:args.n]], train[pick[args.n:]]
        pairs.append(q.histogram_distance(a, whole(a), b, whole(b), train))
    real_vs_real = float(np.median(pairs))
    real_grad = q.gradient_magnitude(train, inner(train), train)
    print(f"real vs real ({args.n} training slices against the others, median of {DRAWS}): {real_vs_real:.4f}")
    shown_structures = "".join(f" {k + ' / real':>26}" for k in bs.STRUCTURES) if structures else ""
    print(f"{'model':<40} {'epsilon scale':>13} {'seed':>5} {'hist / real':>12} {'gradient / real':>16}{shown_structures}")
    for path in args.models:
        for scale in args.epsilon_scale:
            drawn = []
            for seed in args.seeds:
                s = run_to_completion(sample(path, n=args.n, seed=seed, device="cpu", epsilon_scale=scale,
                                             sampler=args.sampler, steps=args.steps)).data.reshape(args.n, size, size)
                drawn.append(s)
                if args.save is not None:
                    args.save.mkdir(parents=True, exist_ok=True)
                    np.save(args.save / f"{path.stem}_{scale}_{seed}.npy", s)
                hist = q.histogram_distance(s, whole(s), train, whole(train), train) / real_vs_real
                grad = q.gradient_magnitude(s, inner(s), train) / real_grad
                shown = "card" if scale is None else f"{scale:g}"
                kept = ""
                if structures:
                    shares = bs.relative_shares(structures(s), source)
                    kept = "".join(f" {shares[k]:>26.2f}" for k in bs.STRUCTURES)
                print(f"{str(path):<40} {shown:>13} {seed:>5} {hist:>12.2f} {grad:>16.2f}{kept}", flush=True)
            if structures and len(drawn) > 1:
                shares = bs.relative_shares(structures(np.concatenate(drawn)), source)
                print(f"{'  pooled over the seeds':<40} {'':>13} {'all':>5} {'':>12} {'':>16}"
                      + "".join(f" {shares[k]:>26.2f}" for k in bs.STRUCTURES), flush=True)


if __name__ == "__main__":
    main()
