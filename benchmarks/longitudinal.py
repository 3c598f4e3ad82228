"""Synthetic follow-ups on held-out phantom subjects: Dice and area error of the tracked structure, monotonicity,
change outside.

Subjects: seeds ``HELDOUT_SEED_START + i`` (never drawn in training), random MR style and factors
(``default_rng(seed)``), drawn like the model's training series (``temporal_trainer.draw_series``, the
card's ``series``): ``--series tumour``, 2D slices through the tumour, start radius in the training range,
truth = the radius shrinking by ``RADIUS_RATIO`` per step, tracked = tumour; ``--series breathing``,
2D slices at a level in ``BREATHING_LEVEL_MM``, truth = breathing phase rising by
``BREATHING_PHASE_STEP`` per step from exhale, tracked = lung. Prints one table per configuration
(method x with/without baseline labels) and writes curves of Dice and area error.

    OMP_NUM_THREADS=1 python benchmarks/longitudinal.py --subjects 20 --png docs/images/longitudinal_curves.png
    OMP_NUM_THREADS=1 python benchmarks/longitudinal.py --series breathing --subjects 20 \
        --png docs/images/longitudinal_breathing.png
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_medgen.io.volume import Volume
from napari_medgen.models.store import record_metrics
from napari_medgen.progress import run_to_completion
from napari_medgen.models.temporal import TemporalModel
from napari_medgen.tasks.longitudinal import compare_series, predict_followups
from napari_medgen.training.temporal_trainer import (
    HELDOUT_SEED_START,
    PIXEL_MM,
    SERIES_TRACKED,
    draw_series,
)

BIG_STEP = 0.10  # breathing: a first-step lung-area change above this marks a slice near the lung base
MODELS = {"tumour": "src/napari_medgen/sample_data/models/temporal_phantom",
          "breathing": "src/napari_medgen/sample_data/models/temporal_breathing"}


def heldout_subject(i: int, steps: int, size: int, series: str = "tumour") -> tuple[Volume, Volume]:
    """Held-out subject i of kind ``series``: 4D image and labels (steps + 1, 1, size, size) Volumes."""
    seed = HELDOUT_SEED_START + i
    img, lab, _ = draw_series(series, seed, size, steps + 1, np.random.default_rng(seed))
    spacing = (PIXEL_MM, PIXEL_MM, 5.0)
    return Volume(img[:, None], spacing), Volume(lab[:, None], spacing, is_label=True)


def evaluate(model: TemporalModel, subjects: int, steps: int, method: str, with_labels: bool,
             refine_steps: int = 20, local_margin_mm: float | None = 10.0, rate: float | None = None
             ) -> dict[str, np.ndarray]:
    """Scores (subjects, steps + 1) per metric, plus frame-to-frame relative volume change; subjects drawn
    like the model's training series (card ``series``, default tumour)."""
    rows: dict[str, list[np.ndarray]] = {}
    for i in range(subjects):
        image, labels = heldout_subject(i, steps, model.size, model.card.get("series", "tumour"))
        result = run_to_completion(predict_followups(image.frame(0), model, labels=labels.frame(0) if with_labels else None,
                                                     steps=steps, method=method, refine_steps=refine_steps,
                                                     local_margin_mm=local_margin_mm, rate=rate))
        scores = compare_series(result, image, labels, model.tracked)
        scores["contrast"] = change_contrast(result.image, image, labels, model.tracked)
        pred = scores["pred_ml"]
        scores["change"] = np.concatenate([[0.0], pred[1:] / np.maximum(pred[:-1], 1e-9) - 1])
        for k, v in scores.items():
            rows.setdefault(k, []).append(np.asarray(v, float))
    return {k: np.stack(v) for k, v in rows.items()}


def change_contrast(pred: Volume, true: Volume, labels: Volume, tracked: int) -> np.ndarray:
    """(T,) predicted / true mean intensity change from the baseline, in the pixels the tracked structure
    gained or lost by t in truth (1 = the image change is as strong as the truth's; NaN where none)."""
    lab = np.asarray(labels.data) == tracked
    out = [np.nan]
    for t in range(1, len(lab)):
        region = lab[t] ^ lab[0]
        truth = float((true.data[t] - true.data[0])[region].mean()) if region.any() else 0.0
        out.append(float((pred.data[t] - true.data[0])[region].mean()) / truth if truth else np.nan)
    return np.array(out)


def _pct(values: np.ndarray) -> str:
    """Mean of the finite values in %, or '-' where there are none."""
    finite = values[np.isfinite(values)]
    return f"{100 * finite.mean():.0f}" if finite.size else "-"


def big_first_step(scores: dict[str, np.ndarray]) -> np.ndarray:
    """(subjects,) True where the true size changes by more than BIG_STEP in the first time step."""
    return np.abs(scores["true_ml"][:, 1] / np.maximum(scores["true_ml"][:, 0], 1e-9) - 1) > BIG_STEP


def monotone(scores: dict[str, np.ndarray]) -> np.ndarray:
    """(subjects,) True where the predicted size changes at every step in the direction of the true change."""
    sign = np.sign(scores["true_ml"][:, -1:] - scores["true_ml"][:, :1])
    return np.all(sign * np.diff(scores["pred_ml"], axis=1) > 0, axis=1)


def table(scores: dict[str, np.ndarray]) -> str:
    steps = scores["dice"].shape[1]
    lines = [(f"{'t':>3} {'Dice':>12} {'area err %':>14} {'|area err| %':>12} {'pred/true ml':>14} {'change %':>10} "
              f"{'true ch %':>10} {'MAD out %':>10} {'contrast %':>10}")]
    true = scores["true_ml"]
    true_change = np.concatenate([np.zeros((len(true), 1)), true[:, 1:] / np.maximum(true[:, :-1], 1e-9) - 1], 1)
    for t in range(steps):
        d, e = scores["dice"][:, t], 100 * scores["volume_error"][:, t]
        lines.append(f"{t:>3} {d.mean():>6.3f}±{d.std():.3f} {e.mean():>+7.1f}±{e.std():>5.1f} {np.abs(e).mean():>12.1f} "
                     f"{scores['pred_ml'][:, t].mean() / max(scores['true_ml'][:, t].mean(), 1e-9):>14.3f} "
                     f"{100 * scores['change'][:, t].mean():>+10.1f} {100 * true_change[:, t].mean():>+10.1f} "
                     f"{100 * scores['mad_outside'][:, t].mean():>10.2f} {_pct(scores['contrast'][:, t]):>10}")
    lines.append(f"series whose predicted size changes strictly in the true direction at every step: "
                 f"{100 * monotone(scores).mean():.0f} %")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", choices=list(SERIES_TRACKED), default="tumour",
                        help="which series to evaluate (the model must be trained on it)")
    parser.add_argument("--model", help="default: the shipped model of --series")
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rate", type=float, help="model time steps per time point (default: the card's time_rate)")
    parser.add_argument("--refine-steps", type=int, default=20, help="latent optimisation steps after encoding")
    parser.add_argument("--png", help="write Dice / area-error curves here")
    parser.add_argument("--montage", help="write truth and prediction of one held-out subject (--montage-subject) here")
    parser.add_argument("--montage-subject", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="write the default configuration's figures into the model card")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.model = args.model or MODELS[args.series]
    model = TemporalModel.load(args.model)
    if model.card.get("series", "tumour") != args.series:
        parser.error(f"{args.model} was trained on {model.card.get('series', 'tumour')} series, not {args.series}.")
    results = {}
    configs = [(m, lab, 10.0) for m in ("direction", "manifold") for lab in (True, False)] + [("direction", True, None)]
    for method, with_labels, margin in configs:
        t0 = time.perf_counter()
        scores = evaluate(model, args.subjects, args.steps, method, with_labels, local_margin_mm=margin, rate=args.rate,
                          refine_steps=args.refine_steps)
        name = (f"{method}, {'with' if with_labels else 'without'} baseline labels"
                + ("" if margin else ", image changed everywhere"))
        results[name] = scores
        print(f"\n== {name}: {args.subjects} held-out subjects, {time.perf_counter() - t0:.0f} s ==")
        print(table(scores))
        big = big_first_step(scores)
        if args.series == "breathing" and big.any():
            print(f"-- the {big.sum()} subjects whose true {model.tracked_name} area grows > {BIG_STEP:.0%} in the "
                  "first step (slices near the lung base: the descending diaphragm uncovers lung) --")
            print(table({k: v[big] for k, v in scores.items()}))
    if args.record:
        s = results["direction, with baseline labels"]
        name, big = model.tracked_name, big_first_step(s)
        record_metrics(args.model, "heldout", {
            "subjects": args.subjects, "time_rate": float(model.card.get("time_rate", 1.0) if args.rate is None else args.rate),
            **{f"{name}_dice_t{t}": round(float(s["dice"][:, t].mean()), 4) for t in range(1, args.steps + 1)},
            **{f"volume_error_t{t}": round(float(s["volume_error"][:, t].mean()), 4) for t in range(1, args.steps + 1)},
            "monotone_series_fraction": float(monotone(s).mean()),
            "mad_outside_t1": round(float(s["mad_outside"][:, 1].mean()), 5),
            **{f"contrast_t{t}": round(float(np.nanmean(s["contrast"][:, t])), 3) for t in range(1, args.steps + 1)
               if np.isfinite(s["contrast"][:, t]).any()},
            **({"big_first_step_subjects": int(big.sum()),
                "volume_error_t1_big_first_step": round(float(s["volume_error"][big, 1].mean()), 4)}
               if args.series == "breathing" and big.any() else {})})
        print(f"recorded in {args.model}.json (metrics.heldout)")
    if args.png:
        plot(results, args.png, model.tracked_name)
        print(f"wrote {args.png}")
    if args.montage:
        montage(model, args.montage_subject, args.steps, args.montage, args.rate)
        print(f"wrote {args.montage}")


def montage(model: TemporalModel, subject: int, steps: int, path: str, rate: float | None = None) -> None:
    """Rows: true frames with the tracked structure's outline (green), predicted frames (direction, baseline
    labels given) with the predicted outline (red), predicted minus baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image, labels = heldout_subject(subject, steps, model.size, model.card.get("series", "tumour"))
    result = run_to_completion(predict_followups(image.frame(0), model, labels=labels.frame(0), steps=steps, rate=rate))
    true_img, pred_img = image.data[:, 0], result.image.data[:, 0]
    true_lab, pred_lab = labels.data[:, 0] == model.tracked, result.labels.data[:, 0] == model.tracked
    lo, hi = np.percentile(true_img[0], [0.5, 99.5])
    diff = pred_img - pred_img[:1]
    limit = float(np.abs(diff).max()) or 1.0
    fig, axes = plt.subplots(3, steps + 1, figsize=(2 * (steps + 1), 6.3))
    for t in range(steps + 1):
        for row, (img, kw) in enumerate(((true_img[t], {"cmap": "gray", "vmin": lo, "vmax": hi}),
                                         (pred_img[t], {"cmap": "gray", "vmin": lo, "vmax": hi}),
                                         (diff[t], {"cmap": "PiYG", "vmin": -limit, "vmax": limit}))):
            ax = axes[row, t]
            ax.imshow(img, **kw)
            if row < 2:
                ax.contour((true_lab, pred_lab)[row][t], [0.5], colors=("lime", "red")[row], linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, t].set_title(f"t = {t}", fontsize=9)
    for row, name in enumerate(("truth", "prediction", "prediction - baseline")):
        axes[row, 0].set_ylabel(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def plot(results: dict[str, dict[str, np.ndarray]], path: str, tracked: str = "tumour") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, s in results.items():
        t = np.arange(s["dice"].shape[1])
        axes[0].errorbar(t, s["dice"].mean(0), s["dice"].std(0), marker="o", capsize=3, label=name)
        axes[1].errorbar(t, 100 * s["volume_error"].mean(0), 100 * s["volume_error"].std(0), marker="o", capsize=3)
    axes[0].axhline(0.8, color="grey", ls="--")
    axes[0].set(xlabel="follow-up (model time steps)", ylabel=f"{tracked} Dice", title="Dice vs truth")
    for y in (-15, 15):
        axes[1].axhline(y, color="grey", ls="--")
    axes[1].set(xlabel="follow-up (model time steps)", ylabel=f"{tracked} area error (%)", title="area error")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
