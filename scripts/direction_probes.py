"""Do single-factor directions exist in a phantom model's latent space at all? (a diagnostic for #6)

Supervised linear probes: decode N latents drawn from the prior, measure the phantom's factors on
the generated label maps (``tasks.direction_measures.phantom_factors``), and fit all of them jointly by
least squares on the latent (standardised factors f ~ W z + b, W of shape (n_factors, d)). The
probe direction of factor i is column i of the pseudo-inverse of W: the smallest latent step that
moves factor i and, to first order, none of the others. (Row i of W itself is where factor i is
*read* from; walking it also moves every factor whose row is not orthogonal to it.) The same walk
as ``medgen directions measure`` then tells how single-factor each direction is. If even these
supervised directions are not dominated by one factor, no unsupervised method can find such
directions in this model: the model, not the discovery method, is the limit. Prints each
factor's linear R², the probes' cosines and the disentanglement table.
For a VAE trained on phantoms it first checks reconstruction: on fresh phantoms drawn like the
training data, r between each factor measured on the true and on the reconstructed label map, and
the R² of the true factor from the encoder's posterior means (a factor the model does not
reconstruct cannot have a direction of its own).

    python scripts/direction_probes.py [--model src/napari_medgen/sample_data/models/vae_phantom] [--n 1500]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch


def probe_directions(model, pixel_mm: float, n: int, seed: int):
    """Unit probe directions (n_factors, d), each factor's linear R² from z, and the factor names."""
    from napari_medgen.models.latent_handle import decode, sample_latents
    from napari_medgen.tasks.direction_measures import phantom_factors

    z = sample_latents(model, n, seed).numpy()
    factors = phantom_factors(decode(model, z), pixel_mm)
    f = np.stack([np.nan_to_num(v) for v in factors.values()], 1)
    varies = f.std(0) > 0  # a factor the model never changes has R² 0 and no direction
    f = (f - f.mean(0)) / np.where(varies, f.std(0), 1.0)
    design = np.c_[z, np.ones(len(z))]
    w, *_ = np.linalg.lstsq(design, f, rcond=None)  # (d + 1, n_factors)
    r2 = np.where(varies, 1 - (f - design @ w).var(0), 0.0)
    moves = np.linalg.pinv(w[:-1].T)  # (d, n_factors): column i moves factor i alone, to first order
    return (moves / np.maximum(np.linalg.norm(moves, axis=0), 1e-12)).T, r2, list(factors)


def reconstruction_check(editor, n: int, seed: int) -> None:
    """Print, per factor, r(true, reconstructed estimate) and R² of the true factor from posterior means."""
    from napari_medgen.data.normalize import normalize
    from napari_medgen.models.latent_handle import decode
    from napari_medgen.tasks.direction_measures import phantom_factors
    from napari_medgen.training.latent_trainers import phantom_bank

    bank = editor.card["phantom_bank"]
    raw, labels, _ = phantom_bank(n, editor.size, seed, bank.get("anatomy_seed"), bank.get("bias", 0.2))
    with torch.inference_mode():
        mu = editor.model.encode(torch.as_tensor(normalize(raw, editor.card["normalization"]), dtype=torch.float32)[:, None])[0]
    truth = np.concatenate([np.zeros((n, 1, *labels.shape[1:]), np.float32),  # image channel unused by the shape factors
                            np.stack([labels == c for c in range(editor.model.n_classes)], 1).astype(np.float32)], 1)
    true, rec = phantom_factors(truth, editor.pixel_mm), phantom_factors(decode(editor.model, mu), editor.pixel_mm)
    design = np.c_[mu.numpy(), np.ones(n)]
    print(f"reconstruction of {n} fresh phantoms:   factor   r(true, reconstructed)   R² from posterior means")
    for name in true:
        t, r = true[name], rec[name]
        ok = np.isfinite(t) & np.isfinite(r)
        if ok.sum() < 3 or t[ok].std() == 0:
            continue  # style is not a shape factor: the true label maps carry none
        w, *_ = np.linalg.lstsq(design[ok], t[ok], rcond=None)
        print(f"{name:>38} {np.corrcoef(t[ok], r[ok])[0, 1]:>12.2f} {1 - (t[ok] - design[ok] @ w).var() / t[ok].var():>22.2f}")


def main() -> int:
    from napari_medgen.cli.directions import format_table
    from napari_medgen.progress import collect
    from napari_medgen.tasks.direction_measures import disentanglement, dominated
    from napari_medgen.tasks.directions import Directions
    from napari_medgen.tasks.latent_editor import LatentEditor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="src/napari_medgen/sample_data/models/vae_phantom")
    ap.add_argument("--n", type=int, default=1500, help="prior samples the probes are fitted on")
    ap.add_argument("--bases", type=int, default=12, help="random bases per walk (as medgen directions measure)")
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    torch.set_num_threads(2)
    editor = LatentEditor(args.model)
    if editor.card["family"] == "vae" and "phantom_bank" in editor.card:
        reconstruction_check(editor, 600, args.seed + 1)
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
