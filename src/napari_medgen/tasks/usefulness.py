"""Is synthetic data useful without domain shift? A small MONAI UNet on real / real + synthetic / less real + synthetic.

(Training on one domain and testing on unseen ones, with target-style synthesis: :mod:`.domain_shift`.)
The UNet, its training and Dice live in :mod:`.segmentation`.

Arms (2D slices, images scaled to [0, 1] per image, labels 0..n_classes-1):

* ``real``: all real training slices;
* ``real+synthetic``: the same plus every synthetic slice (augmentation);
* ``{f}% real``: a fraction ``f`` of the real slices only (the reference for the next arm);
* ``{f}% real+synthetic``: that fraction plus every synthetic slice (real-data reduction).

Every arm trains the same UNet (same seed, same number of steps and batch size) and is scored
by MONAI's Dice per foreground class on held-back real slices. Data builders for the phantom and
the brain sample: real images come from the phantom renderer / the brain MRI; synthetic images
from a spade model (``tasks.synthesize``) on new, elastically deformed label maps, or, for tests
only, from the phantom renderer with other seeds (``source="renderer"``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_figure
from ..errors import InputError
from ..io.volume import Volume
from ..models.features import scale_unit
from ..models.store import load_card
from ..progress import CancelToken, Progress, Task
from .segmentation import SegData, dice_per_class, segment, train_unet

__all__ = ["SegData", "UsefulnessResult", "dice_per_class", "experiment", "phantom_data", "phantom_slices",
           "segment", "train_unet", "usefulness"]


@dataclass
class UsefulnessResult:
    """rows: one dict per arm (arm, n_real, n_synthetic, dice_mean, dice_<class>...); notes."""

    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def usefulness(real: SegData, synthetic: SegData, heldout: SegData, *, reduced_fraction: float = 0.25,
               steps: int = 300, batch_size: int = 8, seed: int = 0, csv_path: str | Path | None = None,
               plot_path: str | Path | None = None, cancel: CancelToken | None = None) -> Task[UsefulnessResult]:
    """Generator: train one UNet per arm (module doc) and score Dice on ``heldout``; returns the table."""
    cancel = cancel or CancelToken()
    if not 0 < reduced_fraction < 1:
        raise InputError(f"reduced_fraction must be between 0 and 1, got {reduced_fraction}.")
    if real.images.shape[1:] != synthetic.images.shape[1:] or real.images.shape[1:] != heldout.images.shape[1:]:
        raise InputError(f"Real {real.images.shape[1:]}, synthetic {synthetic.images.shape[1:]} and held-out "
                         f"{heldout.images.shape[1:]} slices must have the same size.")
    n_classes = int(max(real.labels.max(), synthetic.labels.max(), heldout.labels.max())) + 1
    n_red = max(1, int(round(reduced_fraction * len(real.images))))
    reduced = real.subset(np.random.default_rng(seed).permutation(len(real.images))[:n_red])
    pct = f"{round(100 * reduced_fraction)}%"
    arms = [("real", real, 0), ("real+synthetic", real + synthetic, len(synthetic.images)),
            (f"{pct} real", reduced, 0), (f"{pct} real+synthetic", reduced + synthetic, len(synthetic.images))]
    rows = []
    for k, (name, data, n_syn) in enumerate(arms):
        task = train_unet(data, n_classes, steps, batch_size=batch_size, seed=seed, cancel=cancel, label=name)
        while True:
            try:
                p = next(task)
            except StopIteration as stop:
                net = stop.value
                break
            yield Progress(k * steps + p.step, len(arms) * steps, f"arm '{name}': {p.message}", metrics=p.metrics)
        d = dice_per_class(segment(net, heldout.images), heldout.labels, n_classes)
        row: dict[str, Any] = {"arm": name, "n_real": len(data.images) - n_syn, "n_synthetic": n_syn,
                               "dice_mean": float(np.nanmean(d))}
        row.update({f"dice_{heldout.names.get(c + 1, c + 1)}": float(v) for c, v in enumerate(d)})
        rows.append(row)
    result = UsefulnessResult(rows, [f"{steps} steps x batch {batch_size} per arm, seed {seed}; "
                                     f"{len(heldout.images)} held-out real slices"])
    if csv_path is not None:
        write_csv(result, csv_path)
    if plot_path is not None:
        write_plot(result, plot_path)
    return result


def experiment(dataset: str = "phantom", source: str | None = None, *, steps: int = 300, fraction: float = 0.25,
               quick: bool = False, seed: int = 0, csv_path: str | Path | None = None,
               plot_path: str | Path | None = None, cancel: CancelToken | None = None) -> Task[UsefulnessResult]:
    """Generator: build the ``dataset`` ("phantom" | "brain") arms' data, then run :func:`usefulness`.

    source: spade or mask-conditioned diffusion model for the synthetic images (default the shipped
    ``spade_<dataset>``; "renderer" = the phantom renderer, tests only); phantom slices are made at
    the model's shape. quick: few slices, 30 steps per arm (64 px with the renderer).
    """
    from ..models.store import SHIPPED_DIR

    if dataset not in ("phantom", "brain"):
        raise InputError(f"Unknown dataset '{dataset}': use 'phantom' or 'brain'.")
    source = source or f"spade_{dataset}"
    if source != "renderer" and not Path(source).with_suffix(".json").is_file():
        source = str(SHIPPED_DIR / source)  # a shipped model's name
    yield Progress(0, 0, f"building {dataset} data (synthetic images from {Path(source).name})")
    if dataset == "phantom":
        n = (8, 16, 8) if quick else (24, 48, 24)
        size = (64 if quick else 128) if source == "renderer" else int(load_card(source)["shape"][-1])
        real, syn, held = phantom_data(*n, source=source, seed=seed, size=size)
    else:
        real, syn, held = brain_data(source, n_synthetic=8 if quick else 40, seed=seed)
    result = yield from usefulness(real, syn, held, reduced_fraction=fraction, steps=30 if quick else steps,
                                   seed=seed, csv_path=csv_path, plot_path=plot_path, cancel=cancel)
    result.notes.append(f"dataset {dataset}, synthetic images from {Path(source).name}")
    return result


# --- data builders -----------------------------------------------------------------------------

def phantom_slices(seeds: range, style: str, size: int) -> SegData:
    """2D phantoms (one per seed, random tumour radius and phases) as SegData of size x size slices."""
    from ..data.phantom import LABELS, make_phantom

    imgs, labs = [], []
    for s in seeds:
        r = np.random.default_rng([s, 5])
        img, lab = make_phantom(seed=s, shape=(1, size, size), tumour_radius_mm=float(r.uniform(0, 20)),
                                breathing_phase=float(r.uniform()), cardiac_phase=float(r.uniform()),
                                rotation_deg=float(r.uniform(-10, 10)), style=style)
        imgs.append(scale_unit(img.data)[0])
        labs.append(lab.data[0].astype(np.int64))
    return SegData(np.stack(imgs), np.stack(labs), dict(LABELS))


def phantom_data(n_real: int = 24, n_synthetic: int = 48, n_heldout: int = 24, *, source: str = "spade_phantom",
                 style: str = "mr_vendor_a", seed: int = 0, size: int = 128) -> tuple[SegData, SegData, SegData]:
    """(real, synthetic, held-out) 2D phantom slices (size x size over the phantom's field of view).

    Real: phantom seeds from 10,000 x seed; held-out: seeds 900,000+. Synthetic: new label maps
    (seeds 500,000+) deformed elastically, imaged by the spade model ``source`` (a shipped name or
    a path), or by the phantom renderer when ``source == "renderer"`` (tests only).
    """
    from ..data.phantom import FOV_MM, render
    from .deform import elastic

    spacing = (FOV_MM[0] / size, FOV_MM[1] / size, 5.0)
    real = phantom_slices(range(10_000 * seed, 10_000 * seed + n_real), style, size)
    held = phantom_slices(range(900_000, 900_000 + n_heldout), style, size)
    base = phantom_slices(range(500_000, 500_000 + n_synthetic), style, size)
    labs = [elastic(Volume(lab[None].astype(np.uint8), spacing, is_label=True), seed=i).data[0]
            for i, lab in enumerate(base.labels)]
    labels = np.stack(labs).astype(np.int64)
    if source == "renderer":
        images = np.stack([scale_unit(render(Volume(lab[None].astype(np.uint8), spacing, is_label=True),
                                             style, seed=700_000 + i).data)[0] for i, lab in enumerate(labels)])
    else:
        images = generated_images(source, labels, seed)
    return real, SegData(images, labels, real.names), held


def brain_data(source: str = "spade_brain", n_synthetic: int = 40, seed: int = 0,
               size: tuple[int, int] = (96, 112)) -> tuple[SegData, SegData, SegData]:
    """(real, synthetic, held-out) axial brain slices: every 5th non-empty slice held out, the others real;
    synthetic: spade ``source`` on elastically deformed copies of the real label slices."""
    from ..data.samples import brain_sample
    from ..training.label_vae_trainer import fit_slices
    from .deform import elastic

    img, lab = brain_sample()
    images = fit_slices(scale_unit(np.asarray(img.data, np.float32)[None])[0], size)
    labels = fit_slices(np.asarray(lab.data, np.int64), size)
    keep = labels.reshape(len(labels), -1).max(1) > 0
    images, labels = images[keep], labels[keep]
    held = np.arange(len(images)) % 5 == 4
    names = {int(k): str(v) for k, v in (lab.metadata.get("label_names") or {}).items()}
    real, heldout = SegData(images[~held], labels[~held], names), SegData(images[held], labels[held], names)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(real.labels), n_synthetic)
    syn_labels = np.stack([elastic(Volume(real.labels[p][None].astype(np.uint8), lab.spacing, is_label=True),
                                   seed=i).data[0] for i, p in enumerate(picks)]).astype(np.int64)
    return real, SegData(generated_images(source, syn_labels, seed), syn_labels, names), heldout


def generated_images(model: str, labels: np.ndarray, seed: int) -> np.ndarray:
    """Images for label slices (n, y, x) from a label-conditioned model, scaled to [0, 1] per image.

    spade: one random style per slice (tasks.synthesize); diffusion (mask-conditioned, 2D): one
    DDIM sample per slice (tasks.sample), label slices must have the model's shape.
    """
    family = load_card(model)["family"]
    if family == "spade":
        from ..models.synthesizer import Synthesizer

        synth = Synthesizer(model, "cpu")
        out = [synth.synthesize_slices(lab[None], synth.random_style(seed * 1000 + i))[0] for i, lab in enumerate(labels)]
    elif family == "diffusion":
        from ..progress import run_to_completion
        from .sample import sample

        mask = Volume(labels[:, None].astype(np.uint8), is_label=True)
        out = list(run_to_completion(sample(model, n=len(labels), mask=mask, seed=seed, device="cpu",
                                            label_map=["identity"])).data[:, 0])  # the dataset's labels: its classes
    else:
        raise InputError(f"Model '{model}' is a '{family}' model: synthetic images need a spade or a "
                         "mask-conditioned diffusion model.")
    return scale_unit(np.stack(out))


def write_csv(result: UsefulnessResult, path: str | Path) -> None:
    buf = io.StringIO()
    keys = list(dict.fromkeys(k for r in result.rows for k in r))
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(result.rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def figure(result: UsefulnessResult, title: str = "") -> Any:
    """Bar plot of held-out mean foreground Dice per arm."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.subplots()
    vals = [r["dice_mean"] for r in result.rows]
    ax.bar(range(len(vals)), vals, color=["tab:blue", "tab:green", "tab:gray", "tab:olive"][:len(vals)])
    for i, v in enumerate(vals):
        ax.text(i, v + 0.01, f"{v:.3f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(vals)), [r["arm"] for r in result.rows], fontsize=8)
    ax.set(ylim=(0, 1), ylabel="held-out Dice (mean foreground)", title=title or "Usefulness of synthetic data")
    fig.tight_layout()
    return fig


def write_plot(result: UsefulnessResult, path: str | Path, title: str = "") -> None:
    atomic_write_figure(path, figure(result, title))
