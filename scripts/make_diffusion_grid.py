"""Sample grid for docs/sample.md: unconditional samples of a 2D diffusion model above held-out real slices.

Usage: python scripts/make_diffusion_grid.py [--model diffusion_brain2d] [--n 8] [--seed 0]
       [--epsilon-scale 1.02] [--out docs/images/diffusion_brain2d_grid.png]

Top row: ``n`` samples with the model's default sampler (seed ``seed``; ``--epsilon-scale``: with that
divisor of the predicted noise instead of the card's, ``tasks.sample.epsilon_scaling``); bottom row: ``n`` of the
slices its trainer held back (``training.diffusion_trainer.sample_data(..., held_out=True)``), spread
through the stack. One grey scale for all (0 to the real slices' 99.5th percentile).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_medgen.atomic import atomic_write_figure
from napari_medgen.models.store import load_card, resolve_model
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.sample import default_sampler, sample
from napari_medgen.training.diffusion_trainer import sample_data

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="diffusion_brain2d")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epsilon-scale", type=float)
    ap.add_argument("--out", default=str(ROOT / "docs/images/diffusion_brain2d_grid.png"))
    args = ap.parse_args()
    from matplotlib.figure import Figure

    from napari_medgen.models.diffusion import load_diffusion

    path = resolve_model(args.model)
    card = load_card(path)
    size = int(card["shape"][-1])
    held = np.stack(sample_data(card["sample"], 2, size, held_out=True)[0])
    real = held[np.linspace(0, len(held) - 1, args.n).round().astype(int)]
    result = run_to_completion(sample(path, n=args.n, seed=args.seed, device="cpu", epsilon_scale=args.epsilon_scale))
    fake = result.data.reshape(args.n, size, size)
    sampler = default_sampler(load_diffusion(path, "cpu"))
    if "epsilon_scaling" in result.metadata:
        sampler += f", noise / {result.metadata['epsilon_scaling']:g}"
    vmax = float(np.percentile(real, 99.5))
    fig = Figure(figsize=(1.6 * args.n, 3.6), dpi=100)
    axes = fig.subplots(2, args.n, squeeze=False)
    for row, (title, images) in enumerate(((f"{path.stem}, {sampler}, seed {args.seed}", fake),
                                           ("held-out real slices", real))):
        for k, ax in enumerate(axes[row]):
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_title(title, fontsize=9, loc="left")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.9, wspace=0.05, hspace=0.22)
    atomic_write_figure(Path(args.out), fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
