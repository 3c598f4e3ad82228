"""Label-to-image synthesis: quality and speed of the shipped spade models, printed as a table.

    python benchmarks/synthesis.py [--threads 2] [--repeats 30] [--update-cards]

Quality: the brain model on the axial slabs held out from its training (the quality ledger's rows:
SSIM inside the brain with its mean style, against the lookup-table painting), the phantom model's style transfer (encode a held-out subject
of each vendor, synthesise another held-out subject's labels, Pearson r of per-label means; the
same with a *different* vendor's reference as a control). Speed, in one run with ``--threads``
torch threads: median time of ``Synthesizer.synthesize_slices`` on one 128 x 128 slice against
the bare network forward on a prepared one-hot tensor, and one full 100-slice volume.
``--update-cards`` writes the measured figures into the cards' ``metrics``; ``--montage DIR``
writes the phantom picture of docs/synthesis.md (the brain's is ``scripts/make_synthesis_grid.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from napari_medgen.atomic import atomic_path
from napari_medgen.data.phantom import make_phantom
from napari_medgen.models.store import record_metrics, shipped_models
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks import quality
from napari_medgen.models.synthesizer import Synthesizer
from napari_medgen.tasks.synthesize import style_transfer_correlation, synthesize
from napari_medgen.training.spade_data import PHANTOM_HOLDOUT_SEEDS, mr_styles


def brain_quality(synth: Synthesizer) -> dict[str, float]:
    """SSIM inside the brain on the slices held out from the model's training (the quality ledger's rows)."""
    plain, smoothed, contrast, texture, background = quality.label_to_image_rows(
        "spade_brain", synth, quality.spade_brain_sets(synth.card), synth.mean_style(), "brain")
    return {"ssim_heldout_mean": plain.model_value, "ssim_lookup_table": plain.baseline_value,
            "ssim_lookup_table_smoothed": smoothed.baseline_value, "class_mean_error": contrast.model_value,
            "in_tissue_gradient_vs_real": texture.model_value,
            "background": background.model_value}


def phantom_quality(synth: Synthesizer) -> dict[str, float]:
    vendors = mr_styles()
    shape = (16, 128, 128)
    refs = {v: make_phantom(seed=PHANTOM_HOLDOUT_SEEDS[0], style=v, shape=shape) for v in vendors}
    _, target = make_phantom(seed=PHANTOM_HOLDOUT_SEEDS[1], shape=shape)
    out: dict[str, float] = {}
    for v in vendors:
        other = vendors[(vendors.index(v) + 1) % len(vendors)]
        out[f"style_r_{v}"] = style_transfer_correlation(synth, refs[v], target)
        # control: the same synthesis compared with another vendor's reference (should be lower)
        out[f"style_r_{v}_vs_{other}_reference"] = style_transfer_correlation(synth, refs[v], target, refs[other])
    return out


def speed(synth: Synthesizer, repeats: int) -> dict[str, float]:
    _, labels = make_phantom(seed=PHANTOM_HOLDOUT_SEEDS[2], shape=(100, 128, 128))
    lab = labels.data  # uint8, as a labels layer holds it
    style = synth.mean_style()
    one = lab[50:51]
    onehot = torch.nn.functional.one_hot(torch.from_numpy(one.astype(np.int64)), synth.n_classes).movedim(-1, 1).float()
    z = torch.from_numpy(style)[None]
    g = synth.generator

    def bare() -> None:
        with torch.inference_mode():
            g.decode(onehot, z)

    def fast() -> None:
        synth.synthesize_slices(one, style)

    for fn in (bare, fast):
        fn()
    t_bare, t_fast = [], []
    for _ in range(repeats):  # interleaved so that both see the same machine load
        t_bare.append(_time(bare))
        t_fast.append(_time(fast))
    run_to_completion(synthesize(labels, synth, style=style))
    t_volume = _time(lambda: run_to_completion(synthesize(labels, synth, style=style)))
    bare_ms, fast_ms = statistics.median(t_bare) * 1e3, statistics.median(t_fast) * 1e3
    return {"bare_forward_ms": bare_ms, "synthesize_slices_ms": fast_ms, "ratio": fast_ms / bare_ms,
            "volume_100x128x128_s": t_volume}


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def write_montage(phantom: Synthesizer, folder: Path) -> Path:
    """synthesis_phantom.png: per vendor, a held-out reference | another held-out subject's labels |
    the synthesis of those labels in the reference's encoded style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vendors = mr_styles()
    shape = (16, 128, 128)
    _, target = make_phantom(seed=PHANTOM_HOLDOUT_SEEDS[1], shape=shape)
    k = shape[0] // 2
    fig, axes = plt.subplots(len(vendors), 3, figsize=(7.5, 2.7 * len(vendors)), squeeze=False)
    for row, v in zip(axes, vendors):
        ref_img, ref_lab = make_phantom(seed=PHANTOM_HOLDOUT_SEEDS[0], style=v, shape=shape)
        fake = run_to_completion(synthesize(target, phantom, style=phantom.encode_style(ref_img, ref_lab)))
        lo, hi = float(ref_img.data.min()), float(ref_img.data.max())
        for ax, (title, img) in zip(row, [(f"reference ({v})", ref_img.data[k]), ("target labels", target.data[k]),
                                          ("synthetic, reference style", fake.data[k])]):
            labels_panel = title == "target labels"
            ax.imshow(img, cmap="viridis" if labels_panel else "gray", vmin=None if labels_panel else lo,
                      vmax=None if labels_panel else hi)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    path = folder / "synthesis_phantom.png"
    _save(fig, path)
    return path


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def update_card(path, section: str, metrics: dict[str, float]) -> None:
    record_metrics(path, section, {k: round(float(v), 4) for k, v in metrics.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--update-cards", action="store_true")
    parser.add_argument("--montage", type=Path, help="folder for synthesis_phantom.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = shipped_models("spade")
    brain, phantom = Synthesizer(models["spade_brain"], "cpu"), Synthesizer(models["spade_phantom"], "cpu")
    rows = [("brain", "quality", brain_quality(brain)), ("phantom", "quality", phantom_quality(phantom)),
            ("phantom", f"speed ({args.threads} threads)", speed(phantom, args.repeats))]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs visible, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'model':8s} {'what':20s} {'measure':38s} value")
    for model, what, metrics in rows:
        for k, v in metrics.items():
            print(f"{model:8s} {what:20s} {k:38s} {v:.4g}")
    if args.update_cards:
        update_card(models["spade_brain"], "heldout", rows[0][2])
        update_card(models["spade_phantom"], "style_transfer", rows[1][2])
        update_card(models["spade_phantom"], "speed", rows[2][2])
    if args.montage:
        print(f"wrote {write_montage(phantom, args.montage)}")


if __name__ == "__main__":
    main()
