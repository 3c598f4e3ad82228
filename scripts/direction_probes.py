"""Do single-factor directions exist in a phantom model's latent space at all? (a diagnostic for #6)

Supervised linear probes: decode N latents drawn from the prior, measure the phantom's factors on
the generated label maps (``tasks.directions.phantom_factors``), and fit each factor by least
squares on the latent (factor ~ w . z + b). Each probe's w, normalised, is the best linear
direction for that factor; the same walk as ``medgen directions measure`` then tells how
single-factor it is. If even these supervised directions are not dominated by one factor, no
unsupervised method can find such directions in this model: the model, not the discovery method,
is the limit. Prints each factor's linear R², the probes' cosines and the disentanglement table.

    python scripts/direction_probes.py [--model src/napari_medgen/sample_data/models/vae_phantom] [--n 1500]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch


def probe_directions(model, pixel_mm: float, n: int, seed: int):
    """Unit probe directions (n_factors, d), each factor's linear R² from z, and the factor names."""
    from napari_medgen.tasks.directions import decode, phantom_factors, sample_latents

    z = sample_latents(model, n, seed).numpy()
    factors = phantom_factors(decode(model, z), pixel_mm)
    design = np.c_[z, np.ones(len(z))]
    vectors, r2 = [], []
    for values in factors.values():
        ok = np.isfinite(values)
        w, *_ = np.linalg.lstsq(design[ok], values[ok], rcond=None)
        residual = values[ok] - design[ok] @ w
        r2.append(1 - residual.var() / values[ok].var() if values[ok].var() > 0 else 0.0)
        vectors.append(w[:-1] / max(np.linalg.norm(w[:-1]), 1e-12))
    return np.array(vectors), np.array(r2), list(factors)


def main() -> int:
    from napari_medgen.cli.directions import format_table
    from napari_medgen.progress import collect
    from napari_medgen.tasks.directions import Directions, LatentEditor, disentanglement, dominated

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="src/napari_medgen/sample_data/models/vae_phantom")
    ap.add_argument("--n", type=int, default=1500, help="prior samples the probes are fitted on")
    ap.add_argument("--bases", type=int, default=12, help="random bases per walk (as medgen directions measure)")
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    torch.set_num_threads(2)
    editor = LatentEditor(args.model)
    vectors, r2, names = probe_directions(editor.model, editor.pixel_mm, args.n, args.seed)
    print("linear R² of each factor from the latent: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(names, r2)))
    print("cosines between probe directions:\n" + np.array2string(vectors @ vectors.T, precision=2, suppress_small=True))
    probes = Directions(vectors, np.ones(len(vectors)), "probe", [f"probe {n}" for n in names])
    table, factors = collect(disentanglement(editor.model, probes, editor.pixel_mm, n_bases=args.bases))[1]
    print(format_table(table, factors, probes.names))
    print(f"probe directions dominated by one factor (|r| >= 0.7, others <= 0.3): {len(dominated(table))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
