"""Sample grid for docs/synthesis.md: the brain label-to-image model beside real held-out slices.

Usage: python scripts/make_synthesis_grid.py [--model PATH] [--out docs/images/synthesis_brain_heldout.png] [--rows 4]

Columns: the tissue label map, the real slice, the lookup-table painting with the training slices'
class means (blurred by the width chosen on training slices, as in benchmarks/quality.py), and the
model with its mean style. Rows: held-out slices (the slabs its card names) spread through the brain.
All images share one grey scale (0 to the real slices' 99.5th percentile).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_medgen.atomic import atomic_write_figure
from napari_medgen.tasks import quality as q
from napari_medgen.models.store import SHIPPED_DIR as SHIPPED_MODELS
from napari_medgen.models.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHIPPED_MODELS / "spade_brain"))
    ap.add_argument("--out", default=str(ROOT / "docs/images/synthesis_brain_heldout.png"))
    ap.add_argument("--rows", type=int, default=4)
    args = ap.parse_args()
    from matplotlib.figure import Figure

    synth = Synthesizer(args.model, device="cpu")
    train_img, train_lab, held_img, held_lab = q.spade_brain_sets(synth.card)
    ok = (train_lab > 0).reshape(len(train_lab), -1).mean(1) >= 0.05
    means = q.class_means(train_img[ok], train_lab[ok], synth.n_classes)
    sigma = q.best_smoothing(train_img[ok], train_lab[ok], means, train_lab[ok] > 0)
    big = np.flatnonzero((held_lab > 0).reshape(len(held_lab), -1).mean(1) >= 0.15)
    pick = big[np.linspace(0, len(big) - 1, args.rows).round().astype(int)]
    real, lab = held_img[pick], held_lab[pick]
    columns = {"labels": lab.astype(np.float32), "real (held out)": real,
               f"lookup table, blur {sigma:g} px": q.smooth(q.lut_painting(lab, means), sigma),
               "model (mean style)": synth.synthesize_slices(lab, synth.mean_style())}
    vmax = float(np.percentile(real, 99.5))
    fig = Figure(figsize=(2.2 * len(columns), 2.5 * len(pick)), dpi=100)
    axes = fig.subplots(len(pick), len(columns), squeeze=False)
    for r in range(len(pick)):
        for c, (title, images) in enumerate(columns.items()):
            ax = axes[r, c]
            ax.imshow(images[r], cmap="viridis" if c == 0 else "gray", vmin=0, vmax=3 if c == 0 else vmax,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
    fig.suptitle(f"{Path(args.model).name}: held-out slices ({synth.card['training'].get('held_out', '')[:70]})",
                 fontsize=8)
    fig.tight_layout()
    atomic_write_figure(args.out, fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
