"""Figures of docs/directions.md: samples of the shipped latent models, walks along the shipped VAE's
directions, and its disentanglement table as a heat map.

    python scripts/direction_figures.py [--out docs/images]

Reads the shipped ``vae_phantom``, ``vae_brain`` and ``gan_phantom`` (with their saved directions)
and the table recorded in the phantom VAE's card (``medgen directions measure --record``); writes
``directions_samples.png``, ``directions_walks.png`` (phantom), ``directions_walks_brain.png`` and
``directions_table.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from napari_medgen.models.store import SHIPPED_DIR  # noqa: E402
from napari_medgen.models.latent_handle import decode, sample_latents  # noqa: E402
from napari_medgen.tasks.direction_measures import dominated  # noqa: E402
from napari_medgen.tasks.directions import walk  # noqa: E402
from napari_medgen.tasks.latent_editor import LatentEditor  # noqa: E402

ALPHAS = np.linspace(-3, 3, 7)


def _labels_rgb(labels: np.ndarray) -> np.ndarray:
    return plt.get_cmap("tab10")(labels % 10)[..., :3] * (labels > 0)[..., None]


def samples(editors: dict[str, LatentEditor], out: Path, n: int = 8) -> None:
    fig, axes = plt.subplots(2 * len(editors), n, figsize=(n * 1.2, 2.5 * len(editors)))
    for row, (name, ed) in enumerate(editors.items()):
        gen = decode(ed.model, sample_latents(ed.model, n, seed=0))
        for i in range(n):
            axes[2 * row, i].imshow(gen[i, 0], cmap="gray", vmin=0, vmax=1)
            axes[2 * row + 1, i].imshow(_labels_rgb(gen[i, 1:].argmax(0)))
        axes[2 * row, 0].set_ylabel(f"{name}\nimage", fontsize=8)
        axes[2 * row + 1, 0].set_ylabel("labels", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("random samples of the shipped latent models (image, decoded labels)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "directions_samples.png", dpi=90)
    plt.close(fig)


def walks(ed: LatentEditor, path: Path, name: str, table: np.ndarray | None = None, factors: list[str] = ()) -> None:
    dirs = ed.directions
    z = sample_latents(ed.model, 1, seed=3).numpy()[0]
    lead = dict(dominated(table)) if table is not None else {}
    fig, axes = plt.subplots(len(dirs.vectors), len(ALPHAS), figsize=(len(ALPHAS) * 1.1, len(dirs.vectors) * 1.15))
    for k in range(len(dirs.vectors)):
        frames = walk(ed.model, z, dirs, k, ALPHAS)
        for i, a in enumerate(ALPHAS):
            axes[k, i].imshow(frames[i, 0], cmap="gray", vmin=0, vmax=1)
            axes[k, i].set_xticks([])
            axes[k, i].set_yticks([])
            if k == 0:
                axes[k, i].set_title(f"{a:+.0f} std", fontsize=8)
        tag = f"\n= {factors[lead[k]]}" if k in lead else ""
        axes[k, 0].set_ylabel(dirs.names[k] + tag, fontsize=8)
    fig.suptitle(f"walks along the shipped {name}'s {dirs.method} directions", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table_figure(ed: LatentEditor, out: Path, table: np.ndarray, factors: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(6.2, 0.45 * len(table) + 1.4))
    im = ax.imshow(np.abs(table), cmap="viridis", vmin=0, vmax=1)
    for (k, j), r in np.ndenumerate(table):
        ax.text(j, k, f"{r:.2f}", ha="center", va="center", fontsize=8, color="white" if abs(r) < 0.6 else "black")
    for k, j in dominated(table):
        ax.add_patch(plt.Rectangle((j - 0.5, k - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(factors)), factors, fontsize=8, rotation=20)
    ax.set_yticks(range(len(table)), ed.directions.names, fontsize=8)
    ax.set_title("|r| between walk and phantom factor (red: dominated, |r| >= 0.7, others <= 0.3)", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(out / "directions_table.png", dpi=90)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    args = ap.parse_args()
    editors = {name: LatentEditor(SHIPPED_DIR / name) for name in ("vae_phantom", "vae_brain", "gan_phantom")}
    samples(editors, args.out)
    vae = editors["vae_phantom"]
    recorded = vae.card.get("metrics", {}).get("directions")
    table = np.asarray([recorded["r"][name] for name in vae.directions.names]) if recorded else None
    factors = recorded["factors"] if recorded else []
    walks(vae, args.out / "directions_walks.png", "vae_phantom", table, factors)
    walks(editors["vae_brain"], args.out / "directions_walks_brain.png", "vae_brain")
    if table is not None:
        table_figure(vae, args.out, table, factors)
    print(f"wrote figures to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
