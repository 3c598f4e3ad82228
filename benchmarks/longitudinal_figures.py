"""Figures of docs/longitudinal.md for the real-scan path (no model), on a phantom CT in HU.

docs/images/longitudinal_ct_series.png: axial crops through the tumour, baseline and 5 follow-ups every
3 months (default regression law), the lesion contour, and the difference map; a growth row (6-month
doubling time) below. docs/images/longitudinal_volume_curves.png: the volume (ml) the follow-ups hold
at each month for the three laws, over the laws themselves. docs/images/longitudinal_pull.png: the last
regression follow-up with the surrounding tissue pulled 0, 0.15 (default), 0.5 and 0.9 of the way in.

    OMP_NUM_THREADS=2 python benchmarks/longitudinal_figures.py --out docs/images
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from napari_medgen.data import phantom  # noqa: E402
from napari_medgen.data.progression import Progression  # noqa: E402
from napari_medgen.progress import run_to_completion  # noqa: E402
from napari_medgen.tasks.followup import simulate_followups  # noqa: E402

SEED = 3_000_777
MONTHS = [3.0, 6.0, 9.0, 12.0, 15.0]
HALF = 32  # crop half-width (voxels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    args = ap.parse_args()
    image, labels = phantom.make_phantom(SEED, shape=(64, 256, 256), spacing=(1.0, 1.0, 2.5), style="ct",
                                         tumour_radius_mm=15.0)
    laws = {"regression": Progression("regression"), "growth": Progression("growth"),
            "percent": Progression("percent")}
    results = {name: run_to_completion(simulate_followups(image, labels, "tumour", MONTHS, law))
               for name, law in laws.items()}
    tumour = np.asarray(labels.data) == 7
    z = int(np.argmax(tumour.sum((1, 2))))
    cy, cx = (int(v.mean()) for v in np.nonzero(tumour[z]))
    crop = (slice(cy - HALF, cy + HALF), slice(cx - HALF, cx + HALF))

    rows = [("regression", "image"), ("regression", "difference"), ("growth", "image")]
    fig, axes = plt.subplots(len(rows), len(MONTHS) + 1, figsize=(2.1 * (len(MONTHS) + 1), 2.2 * len(rows)))
    for r, (law, kind) in enumerate(rows):
        res = results[law]
        for t in range(len(MONTHS) + 1):
            ax = axes[r, t]
            frame = res.image.data[t, z][crop]
            if kind == "image":
                ax.imshow(frame, cmap="gray", vmin=-1000, vmax=200)
                ax.contour(res.labels.data[t, z][crop] == 7, levels=[0.5], colors="tab:orange", linewidths=0.8)
                ax.set_title(f"{law} {res.times[t]:g} mo\n{res.tracked_ml[t]:.1f} ml", fontsize=8)
            else:
                ax.imshow(frame - res.image.data[0, z][crop], cmap="PiYG", vmin=-900, vmax=900)
                ax.set_title(f"difference {res.times[t]:g} mo (HU)", fontsize=8)
            ax.set_axis_off()
    fig.suptitle(f"Phantom CT (HU, 1 x 1 x 2.5 mm), no model: {laws['regression'].describe()}; "
                 f"{laws['growth'].describe()}", fontsize=9)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "longitudinal_ct_series.png", dpi=90)

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    grid = np.linspace(0, MONTHS[-1], 100)
    for (name, res), colour in zip(results.items(), ("tab:blue", "tab:red", "tab:green"), strict=True):
        ax.plot(grid, res.tracked_ml[0] * np.array([laws[name].ratio(m) for m in grid]), color=colour, lw=0.8)
        ax.plot(res.times, res.tracked_ml, "o", color=colour, label=f"{laws[name].describe()}")
    ax.set_xlabel("months after baseline")
    ax.set_ylabel("lesion volume (ml)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("Volume in the follow-ups (dots) and the law (lines)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "longitudinal_volume_curves.png", dpi=90)
    pulls = (0.0, 0.15, 0.5, 0.9)
    fig, axes = plt.subplots(1, len(pulls) + 1, figsize=(2.2 * (len(pulls) + 1), 2.5))
    axes[0].imshow(image.data[z][crop], cmap="gray", vmin=-1000, vmax=200)
    axes[0].set_title("baseline", fontsize=8)
    for ax, pull in zip(axes[1:], pulls, strict=True):
        res = run_to_completion(simulate_followups(image, labels, "tumour", MONTHS[-1:], laws["regression"], pull=pull))
        ax.imshow(res.image.data[1, z][crop], cmap="gray", vmin=-1000, vmax=200)
        ax.set_title(f"{MONTHS[-1]:g} mo, pull {pull:g}" + (" (default)" if pull == 0.15 else ""), fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(args.out / "longitudinal_pull.png", dpi=90)
    for name, res in results.items():
        print(name, ", ".join(f"{t:g} mo {v:.2f} ml" for t, v in zip(res.times, res.tracked_ml, strict=True)))


if __name__ == "__main__":
    main()
