"""Sample grid for docs/sample.md: the 3D phantom diffusion model's samples beside held-out real phantoms,
each with its intensity segmentation (``tasks.structure_presence``) and the structures found missing.

Usage: python scripts/make_phantom3d_grid.py --model PATH [--n 6] [--out docs/images/phantom3d_presence.png]

Rows: held-out real phantoms (seeds 1000..) and their segmentation, then the model's samples (default
sampler, seed 0) and theirs; the axial slice through the training phantoms' mean heart centre. Each
panel's title names the structures judged absent in that volume (all 3D, not only this slice) and the
number of balls in its lungs (``structure_presence.lung_balls``; real phantoms have one tumour).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_medgen.atomic import atomic_write_figure
from napari_medgen.models.store import load_card, resolve_model
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks import structure_presence as sp
from napari_medgen.tasks.sample import sample
from napari_medgen.training.diffusion_trainer import sample_data

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a 3D phantom diffusion model (shipped name or path)")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "docs/images/phantom3d_presence.png"))
    args = ap.parse_args()
    from matplotlib.figure import Figure

    model = resolve_model(args.model)
    size = int(load_card(model)["shape"][-1])
    train, train_lab = (np.stack(x) for x in sample_data("phantom", 3, size)[:2])
    held = np.stack(sample_data("phantom", 3, size, held_out=True)[0])[: args.n]
    measure = sp.Measure.from_training(train, train_lab)
    classes = sp.intensity_classes(measure.means)
    samples = run_to_completion(sample(model, n=args.n, seed=0, device="cpu")).data
    z = int(round(float(measure.ref.centroids[3][:, 0].mean())))  # the LV blood pool's mean slice
    vmax = float(np.percentile(held, 99.5))
    fig = Figure(figsize=(1.8 * args.n, 8.2), dpi=100)
    axes = fig.subplots(4, args.n, squeeze=False)
    for row, (name, volumes) in enumerate((("real (held out)", held), (Path(model).name, samples))):
        for c, (vol, seg) in enumerate(zip(volumes, measure.segment(volumes))):
            found = sp.presence(seg, measure.ref, classes)
            missing = [sp.STRUCTURES[k] for k, ok in found.items() if not ok]
            axes[2 * row, c].imshow(vol[z], cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
            axes[2 * row + 1, c].imshow(seg[z], cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
            axes[2 * row, c].set_title(f"{name} {c}", fontsize=7)
            lines = [", ".join(missing[i:i + 3]) for i in range(0, len(missing), 3)] or ["none"]
            axes[2 * row + 1, c].set_title("missing: " + "\n".join(lines) + f"\nballs in lungs: {sp.lung_balls(seg)}",
                                           fontsize=6)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"axial slice z = {z} of {size}; segmentation colours: background blue, body orange, lung green, "
                 "LV blood red, myocardium purple, RV brown, spine pink, tumour grey", fontsize=8)
    fig.tight_layout()
    atomic_write_figure(args.out, fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
