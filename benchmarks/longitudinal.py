"""Synthetic follow-ups on held-out phantom subjects: tumour Dice, volume error, monotonicity, change outside.

Subjects: seeds ``HELDOUT_SEED_START + i`` (never drawn in training), 2D slices through the tumour,
random MR style and factors (``default_rng(seed)``), start radius in the training range; truth = the
phantom series with the radius shrinking by ``RADIUS_RATIO`` per step. Prints one table per
configuration (method x with/without baseline labels) and writes curves of Dice and volume error.

    OMP_NUM_THREADS=1 python benchmarks/longitudinal.py --model src/napari_medgen/sample_data/models/temporal_phantom \
        --subjects 20 --png docs/images/longitudinal_curves.png
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_medgen.io.volume import Volume
from napari_medgen.models.store import record_metrics
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.longitudinal import (
    TemporalModel,
    compare_series,
    predict_followups,
)
from napari_medgen.training.temporal_trainer import (
    HELDOUT_SEED_START,
    PIXEL_MM,
    START_RADIUS_MM,
    TRACKED,
    phantom_series_2d,
)


def heldout_subject(i: int, steps: int, size: int) -> tuple[Volume, Volume]:
    """Held-out subject i: 4D image and labels (steps + 1, 1, size, size) Volumes."""
    seed = HELDOUT_SEED_START + i
    rng = np.random.default_rng(seed)
    img, lab, _ = phantom_series_2d(seed, size, steps + 1, float(rng.uniform(*START_RADIUS_MM)), rng)
    spacing = (PIXEL_MM, PIXEL_MM, 5.0)
    return Volume(img[:, None], spacing), Volume(lab[:, None], spacing, is_label=True)


def evaluate(model: TemporalModel, subjects: int, steps: int, method: str, with_labels: bool,
             refine_steps: int = 20, local_margin_mm: float | None = 10.0) -> dict[str, np.ndarray]:
    """Scores (subjects, steps + 1) per metric, plus frame-to-frame relative volume change."""
    rows: dict[str, list[np.ndarray]] = {}
    for i in range(subjects):
        image, labels = heldout_subject(i, steps, model.size)
        result = run_to_completion(predict_followups(image.frame(0), model, labels=labels.frame(0) if with_labels else None,
                                                     steps=steps, method=method, refine_steps=refine_steps,
                                                     local_margin_mm=local_margin_mm))
        scores = compare_series(result, image, labels, TRACKED)
        pred = scores["pred_ml"]
        scores["change"] = np.concatenate([[0.0], pred[1:] / np.maximum(pred[:-1], 1e-9) - 1])
        for k, v in scores.items():
            rows.setdefault(k, []).append(np.asarray(v, float))
    return {k: np.stack(v) for k, v in rows.items()}


def table(scores: dict[str, np.ndarray]) -> str:
    steps = scores["dice"].shape[1]
    monotone = float(np.mean(np.all(np.diff(scores["pred_ml"], axis=1) < 0, axis=1)))
    lines = [(f"{'t':>3} {'Dice':>12} {'vol err %':>14} {'|vol err| %':>12} {'pred/true ml':>14} {'change %':>10} "
              f"{'MAD out %':>10}")]
    for t in range(steps):
        d, e = scores["dice"][:, t], 100 * scores["volume_error"][:, t]
        lines.append(f"{t:>3} {d.mean():>6.3f}±{d.std():.3f} {e.mean():>+7.1f}±{e.std():>5.1f} {np.abs(e).mean():>12.1f} "
                     f"{scores['pred_ml'][:, t].mean() / max(scores['true_ml'][:, t].mean(), 1e-9):>14.3f} "
                     f"{100 * scores['change'][:, t].mean():>+10.1f} {100 * scores['mad_outside'][:, t].mean():>10.2f}")
    lines.append(f"series with strictly decreasing predicted volume: {100 * monotone:.0f} %")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="src/napari_medgen/sample_data/models/temporal_phantom")
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--png", help="write Dice / volume-error curves here")
    parser.add_argument("--record", action="store_true", help="write the default configuration's figures into the model card")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = TemporalModel.load(args.model)
    results = {}
    configs = [(m, lab, 10.0) for m in ("direction", "manifold") for lab in (True, False)] + [("direction", True, None)]
    for method, with_labels, margin in configs:
        t0 = time.perf_counter()
        scores = evaluate(model, args.subjects, args.steps, method, with_labels, local_margin_mm=margin)
        name = (f"{method}, {'with' if with_labels else 'without'} baseline labels"
                + ("" if margin else ", image changed everywhere"))
        results[name] = scores
        print(f"\n== {name}: {args.subjects} held-out subjects, {time.perf_counter() - t0:.0f} s ==")
        print(table(scores))
    if args.record:
        s = results["direction, with baseline labels"]
        record_metrics(args.model, "heldout", {
            "subjects": args.subjects, "time_rate": float(model.card.get("time_rate", 1.0)),
            **{f"tumour_dice_t{t}": round(float(s["dice"][:, t].mean()), 4) for t in range(1, args.steps + 1)},
            **{f"volume_error_t{t}": round(float(s["volume_error"][:, t].mean()), 4) for t in range(1, args.steps + 1)},
            "monotone_series_fraction": float(np.mean(np.all(np.diff(s["pred_ml"], axis=1) < 0, axis=1))),
            "mad_outside_t1": round(float(s["mad_outside"][:, 1].mean()), 5)})
        print(f"recorded in {args.model}.json (metrics.heldout)")
    if args.png:
        plot(results, args.png)
        print(f"wrote {args.png}")


def plot(results: dict[str, dict[str, np.ndarray]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, s in results.items():
        t = np.arange(s["dice"].shape[1])
        axes[0].errorbar(t, s["dice"].mean(0), s["dice"].std(0), marker="o", capsize=3, label=name)
        axes[1].errorbar(t, 100 * s["volume_error"].mean(0), 100 * s["volume_error"].std(0), marker="o", capsize=3)
    axes[0].axhline(0.8, color="grey", ls="--")
    axes[0].set(xlabel="follow-up (model time steps)", ylabel="tumour Dice", title="Dice vs truth")
    for y in (-15, 15):
        axes[1].axhline(y, color="grey", ls="--")
    axes[1].set(xlabel="follow-up (model time steps)", ylabel="tumour volume error (%)", title="volume error")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
