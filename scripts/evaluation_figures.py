"""Measure and plot everything docs/evaluation.md reports; prints the numbers, writes docs/images/evaluation_*.png.

    python scripts/evaluation_figures.py [quality] [anomaly] [usefulness-phantom] [usefulness-brain] [quantize]

With no argument every part runs. One torch thread. Parts whose model or data is not available
(e.g. no shipped spade model yet) say so and are skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
PARTS = ("quality", "anomaly", "usefulness-phantom", "usefulness-brain", "quantize")


def quality() -> None:
    from matplotlib.figure import Figure

    from napari_medgen.data.phantom import make_phantom
    from napari_medgen.models.features import load_extractor
    from napari_medgen.progress import run_to_completion
    from napari_medgen.tasks import evaluate as ev

    ext = load_extractor("default")
    real = np.stack([make_phantom(seed=s, shape=(1, 128, 128))[0].data[0] for s in range(48)])
    f_real = ext(real)
    rng = np.random.default_rng(0)
    levels = [0.0, 0.02, 0.05, 0.1, 0.2]
    rows = []
    for sigma in levels:
        fake = real + rng.normal(0, sigma, real.shape).astype(np.float32)
        f = ext(fake)
        rows.append((sigma, ev.frechet_distance(f_real, f), ev.mmd(f_real, f),
                     ev.paired_ssim_psnr(real, fake)[0].mean()))
        print(f"noise sigma {sigma:.2f}: FD {rows[-1][1]:.4g}  MMD {rows[-1][2]:.4g}  SSIM {rows[-1][3]:.4f}")
    other = np.stack([make_phantom(seed=1000 + s, shape=(1, 128, 128))[0].data[0] for s in range(48)])
    f_other = ext(other)
    print(f"other subjects, same renderer: FD {ev.frechet_distance(f_real, f_other):.4g}  "
          f"MMD {ev.mmd(f_real, f_other):.4g}")
    vendor = np.stack([make_phantom(seed=1000 + s, shape=(1, 128, 128), style="mr_vendor_b")[0].data[0]
                       for s in range(48)])
    f_vendor = ext(vendor)
    print(f"other subjects, vendor b: FD {ev.frechet_distance(f_real, f_vendor):.4g}  MMD {ev.mmd(f_real, f_vendor):.4g}")
    synthetic = other.copy()
    synthetic[[3, 17]] = real[[5, 30]] + rng.normal(0, 0.005, (2, 128, 128)).astype(np.float32)
    res = run_to_completion(ev.evaluate(real, synthetic, extractor=ext, plot_path=IMAGES / "evaluation_quality.png"))
    print(f"memorisation: flagged {res.near_copies}; median NN distance {res.table['nn_distance_median']:.4f}")
    fig = Figure(figsize=(8, 3), dpi=100)
    a1, a2 = fig.subplots(1, 2)
    a1.plot(levels, [r[1] for r in rows], "o-")
    a1.set(xlabel="added noise sigma", ylabel="Fréchet distance", title="FD vs noise (shipped encoder)")
    a2.plot(levels, [r[2] for r in rows], "o-", color="tab:orange")
    a2.set(xlabel="added noise sigma", ylabel="MMD²", title="MMD vs noise")
    fig.tight_layout()
    fig.savefig(IMAGES / "evaluation_noise.png")


def anomaly() -> None:
    from matplotlib.figure import Figure

    from napari_medgen.data.phantom import STYLES, make_phantom
    from napari_medgen.models.anomaly_ae import roc_auc
    from napari_medgen.progress import run_to_completion
    from napari_medgen.tasks.anomaly import anomaly_map, tumour_auc

    seeds = range(2_000_000, 2_000_020)
    for style in STYLES:
        aucs, base = [], []
        for s in seeds:
            img, lab = make_phantom(seed=s, shape=(1, 128, 128), tumour_radius_mm=12.0, style=style)
            aucs.append(tumour_auc(run_to_completion(anomaly_map(img)), lab))
            base.append(roc_auc(img.data, lab.data == 7))
        print(f"anomaly AUC {style}: mean {np.mean(aucs):.4f} min {np.min(aucs):.4f} over {len(aucs)} unseen phantoms; "
              f"raw-intensity baseline {np.mean(base):.4f}")
    for radius in (6.0, 9.0):
        aucs = [tumour_auc(run_to_completion(anomaly_map(make_phantom(seed=s, shape=(1, 128, 128), tumour_radius_mm=radius)[0])),
                           make_phantom(seed=s, shape=(1, 128, 128), tumour_radius_mm=radius)[1]) for s in seeds]
        print(f"anomaly AUC mr_vendor_a, tumour radius {radius} mm: mean {np.mean(aucs):.4f} min {np.min(aucs):.4f}")
    fig = Figure(figsize=(9, 3), dpi=100)
    img, lab = make_phantom(seed=2_000_000, shape=(1, 128, 128), tumour_radius_mm=12.0)
    heat = run_to_completion(anomaly_map(img))
    for ax, data, title in zip(fig.subplots(1, 3), (img.data[0], heat.data[0], img.data[0]),
                               ("phantom with unseen tumour", "anomaly score", "overlay + tumour outline")):
        ax.imshow(data, cmap="inferno" if title == "anomaly score" else "gray")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    ax.imshow(heat.data[0], cmap="inferno", alpha=0.5)
    ax.contour(lab.data[0] == 7, levels=[0.5], colors="cyan", linewidths=0.8)
    fig.tight_layout()
    fig.savefig(IMAGES / "evaluation_anomaly.png")


def usefulness(dataset: str) -> None:
    """Synthetic images from spade_<dataset>; for the phantom the mask-conditioned diffusion model
    stands in while no spade phantom model is shipped."""
    from napari_medgen.errors import MedgenError
    from napari_medgen.progress import run_to_completion
    from napari_medgen.models.store import SHIPPED_DIR as SHIPPED_MODELS
    from napari_medgen.tasks.usefulness import experiment, write_plot

    model = f"spade_{dataset}"
    if dataset == "phantom" and not (SHIPPED_MODELS / f"{model}.json").is_file():
        model = "diffusion_phantom2d_mask"
    try:
        result = run_to_completion(experiment(dataset, model, steps=300))
    except (MedgenError, ImportError) as exc:
        print(f"usefulness {dataset}: skipped ({exc})")
        return
    for r in result.rows:
        print(f"usefulness {dataset}: " + "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                                   for k, v in r.items()))
    print("; ".join(result.notes))
    write_plot(result, IMAGES / f"evaluation_usefulness_{dataset}.png", f"Usefulness: {dataset}, synthetic = {model}")


def quantize() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import quantization

    quantization.main(["--plot", str(IMAGES / "evaluation_quantization.png")])


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    IMAGES.mkdir(parents=True, exist_ok=True)
    parts = argv or list(PARTS)
    for part in parts:
        print(f"== {part}")
        {"quality": quality, "anomaly": anomaly, "usefulness-phantom": lambda: usefulness("phantom"),
         "usefulness-brain": lambda: usefulness("brain"), "quantize": quantize}[part]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
