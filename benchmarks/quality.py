"""The quality ledger: every shipped generative model against its trivial baseline, on held-out data.

    python benchmarks/quality.py [--threads 2] [--only spade_brain ...] [--model NAME=PATH ...] [--record]

One table: model, metric, baseline, model value, baseline value, margin (positive = the model wins)
and the verdict. Metric code lives in ``napari_medgen.tasks.quality``; this script only gathers
data and drives it. Held-out data is the one each model's trainer separates in code:

* label -> image (spade_brain, spade_phantom): the model with its mean style (what a user gets
  without a reference) against painting each label with the training slices' class means, plain
  and Gaussian-smoothed (blur width chosen on training slices); SSIM inside the brain / body.
  spade_brain: the held-out axial slabs its card names (``data.brain.axial_split``), or for a 2 mm
  card every 5th slice of the shipped sample. spade_phantom: held-out seeds 1000.., per MR vendor,
  its named vendor style against that vendor's training class means; the background's radial
  power spectrum against the renderer's (max ratio over frequency bins, bar 2), and the SSIM of
  the renderer itself drawing the same held-out anatomy again (new texture and bias field): the
  truth process, which the lookup table (its conditional mean) beats on SSIM too. Two bars where a
  lookup table is exact by construction: the worst per-class mean error (<= 5 % of the brightest
  class: realistic contrast) and the mean |intensity| of the background 3+ pixels from any label,
  within 1 % of the real background's (black for the brain; the scanner's noise floor for the
  phantom, whose background is Rician noise).
* unconditional diffusion (diffusion_brain2d, diffusion_phantom2d): 16 samples (the card's default sampler, seed 0)
  against the held-out real images blurred by 2 pixels, shuffled in the foreground, and the
  nearest training image of each held-out image (a copy). In-foreground gradient-magnitude ratio to
  real (ideal 1), intensity-histogram distance (Wasserstein-1) to the held-out real images divided
  by the real-vs-real distance at the same count (the median over 50 draws of as many random
  training slices as samples, against the held-out slices; bar 1.5) and the same pooled over 48 samples
  (seeds 0, 1, 2; ``POOL_SEEDS``) over the median of 50 draws of as many training slices drawn
  independently (with replacement: a perfect model of the training slices), against the held-out
  slices (real sets of 16 slices miss the bar by chance about a third of the time);
  Fréchet distance of the shipped
  feature encoder's features, and each image's distance to its nearest training image. Brain only:
  each structure of ``tasks.brain_structures`` (ventricles; grey/white contrast, found from the
  intensities with the training slices' tissue means), as the share of images that hold it over
  the share in their real source (the model: the training slices; the baselines: the held-out
  slices); ideal 1, bar 0.8; and the model's share pooled over the same 48 samples as the pooled
  histogram row (16 perfect samples miss the ventricles' bar by chance about a quarter of the time:
  ``benchmarks/structure_draws.py``). Phantom only: the share of samples with the heart on its side (the
  blood pool nearer the training hearts than their mirror image, ``structure_presence``) against
  held-out real slices and the same mirrored left-right, and the share with the myocardium's ring.
* inversion (vae_phantom): 12 held-out phantoms (bank seed 1000) inverted as "invert current
  slice" does (encoder mean refined by 150 optimisation steps); in-object correlation of the decoded
  image with the input against the nearest of 500 training-like phantoms (a copy), and the bar 0.8.
  vae_brain: the held-out axial slabs of the 1 mm template (``data.brain.axial_split``; its trainer
  leaves them out) as a user's slice comes: the raw slice on its own grid, in its units, with a
  synthetic skull and scalp (``data.brain_slices.with_synthetic_skull``: the template has none), the
  brain found automatically; the rendered result against the raw slice inside the brain, vs the
  nearest prepared training slice put back the same way (a copy), and the bar 0.8. Its settings are
  chosen on its validation slabs instead (``scripts/vae_brain_validation.py``, the same measure).
* 3D phantom diffusion (diffusion_phantom3d): 20 samples (default sampler, seed 0) segmented into the
  phantom's structures by intensity (``tasks.structure_presence``: bias field removed, nearest
  training class mean, background/lung by connection to the border) and each structure judged
  present when its largest piece has a plausible size and place against the training label maps;
  share of samples with each structure against the held-out phantoms (seeds 1000..) measured the
  same way, and the worst structure against the bar 95 %, shuffled voxels (within the body) and the
  mean training volume (a template: it has every structure but the tumour); and how much the
  structures' centres vary across the samples (``centre_spread``) over the held-out phantoms' spread,
  against one template drawn n times (0); and the share of samples with more than one ball in the lungs
  (``structure_presence.lung_balls``: real phantoms have one tumour) against held-out real phantoms.

``--model NAME=PATH`` measures a candidate in place of a shipped model (e.g. a new training run);
``--record`` writes each model's figures into its card's ``metrics["ledger"]``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from napari_medgen.models.store import load_card, record_metrics
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks import quality as q
from napari_medgen.tasks.evaluate import extract_features, frechet_distance
from napari_medgen.models.store import SHIPPED_DIR as SHIPPED_MODELS
from napari_medgen.models.synthesizer import Synthesizer

PHANTOM_SHAPE = (16, 128, 128)  # (z, y, x) phantom subjects for spade_phantom: its field of view, 16 axial slices
POOL_SEEDS = (1, 2)  # seeds of the further sets of samples pooled with seed 0's for the pooled histogram row
REDRAW_SEED_OFFSET = 5000  # render seed offset of the renderer's second draw of a held-out phantom


def spade_brain(path: Path) -> list[q.Row]:
    synth = Synthesizer(path, device="cpu")
    return q.label_to_image_rows("spade_brain", synth, q.spade_brain_sets(synth.card), synth.mean_style(), "brain")


def spade_phantom(path: Path) -> list[q.Row]:
    from napari_medgen.data.phantom import make_phantom
    from napari_medgen.training import spade_data as st

    synth = Synthesizer(path, device="cpu")
    shape = tuple(synth.card["shape"])
    vendors = st.mr_styles()
    rows: list[q.Row] = []
    for k, vendor in enumerate(vendors):
        train_seeds = [s for s in range(12) if s % len(vendors) == k]  # training seeds of this vendor (seed % 3)
        sets = []
        for seeds in (train_seeds, st.PHANTOM_HOLDOUT_SEEDS):
            pairs = [(*make_phantom(seed=s, style=vendor, shape=PHANTOM_SHAPE), vendor) for s in seeds]
            raw, lab, _, _ = st.volumes_to_slices(pairs, shape)
            sets += [raw, lab]
        style = synth.resolve_style(f"vendor:{vendor}")
        rows += q.label_to_image_rows("spade_phantom", synth, tuple(sets), style, "body", f" [{vendor}]")
        held_img, held_lab = sets[2][q.enough(sets[3])], sets[3][q.enough(sets[3])]
        rows.append(renderer_redrawn_row(synth, vendor, style, held_img, held_lab, shape))
        fake = synth.synthesize_slices(held_lab, style)
        rows.append(q.Row("spade_phantom", f"background spectrum, max ratio to renderer [{vendor}]", "bar (2x)",
                          background_spectrum_ratio(held_img, fake, held_lab), 2.0, "lower"))
    return rows


def renderer_redrawn_row(synth: Synthesizer, vendor: str, style: np.ndarray, held_img: np.ndarray,
                         held_lab: np.ndarray, shape: tuple[int, int]) -> q.Row:
    """SSIM in body of the model's noise-free image against the phantom renderer itself drawing the same
    held-out anatomy again (new texture and bias field, seed + REDRAW_SEED_OFFSET, no noise): the truth
    process, which a lookup table (its conditional mean) also beats on SSIM."""
    from napari_medgen.data.phantom import make_labels, render
    from napari_medgen.training import spade_data as st

    pairs = []
    for s in st.PHANTOM_HOLDOUT_SEEDS:
        lab = make_labels(s, shape=PHANTOM_SHAPE)
        pairs.append((render(lab, vendor, s + REDRAW_SEED_OFFSET, noise=0.0), lab, vendor))
    raw, lab, _, _ = st.volumes_to_slices(pairs, shape)
    redrawn = raw[q.enough(lab)]
    if not np.array_equal(lab[q.enough(lab)], held_lab):
        raise RuntimeError("The redrawn phantoms' labels differ from the held-out ones.")
    mask = held_lab > 0
    clean = synth.synthesize_slices(held_lab, style, noise_seed=None)
    return q.Row("spade_phantom", f"SSIM in body [{vendor}] ({len(held_img)} held-out slices)",
                 "the renderer redrawn (new texture and bias, noise-free)",
                 float(q.ssim_in_mask(held_img, clean, mask).mean()),
                 float(q.ssim_in_mask(held_img, redrawn, mask).mean()), "higher")


def background_spectrum_ratio(real: np.ndarray, fake: np.ndarray, labels: np.ndarray) -> float:
    """Max over frequency bins of max(P_fake / P_real, P_real / P_fake) of the background alone (the
    labelled region set to each slice's background mean)."""
    def background_only(x: np.ndarray) -> np.ndarray:
        out = np.array(x, np.float64, copy=True)
        for im, lab in zip(out, labels):
            im[lab > 0] = im[lab == 0].mean()
        return out
    pr, pf = (q.radial_power_spectrum(background_only(x)) for x in (real, fake))
    ratio = pf / np.maximum(pr, 1e-12)
    return float(np.max(np.maximum(ratio, 1.0 / np.maximum(ratio, 1e-12))))


# --- unconditional diffusion ----------------------------------------------------------------------

def diffusion_rows(name: str, path: Path, n: int = 16) -> list[q.Row]:
    from napari_medgen.tasks.sample import sample
    from napari_medgen.training.diffusion_trainer import sample_data

    card = load_card(path)
    size = int(card["shape"][-1])
    kind = card["sample"]
    train, train_lab, spacing = sample_data(kind, 2, size)
    train = np.stack(train).astype(np.float32)
    held = np.stack(sample_data(kind, 2, size, held_out=True)[0]).astype(np.float32)
    draw = lambda seed: run_to_completion(sample(path, n=n, seed=seed, device="cpu")).data.reshape(n, size, size)  # noqa: E731
    samples = draw(0)
    copies, _ = q.nearest_copies(held, train)
    candidates = {"model": samples, "blurred real (2 px)": q.smooth(held, 2.0),
                  "shuffled real": q.shuffle_in_mask(held, q.foreground(held, held, erode=0)),
                  "nearest training copy": copies}
    ref = held
    inner = lambda x: q.foreground(x, ref)  # noqa: E731  (outline eroded: texture only)
    whole = lambda x: q.foreground(x, ref, erode=0, fill=False)  # noqa: E731  (pixels above the threshold: intensities)
    real_grad = q.gradient_magnitude(held, inner(held), ref)
    # real-vs-real at the samples' own count: n random training slices against the held-out ones (median
    # of q.REAL_DRAWS draws); the whole training set's distance is smaller only because it pools more slices
    real_vs_real = float(np.median(q.drawn_histogram_distances(train, held, n, q.REAL_DRAWS, seed=0)))
    encoder_feats = {k: extract_features(v) for k, v in candidates.items()}
    f_real = extract_features(held)
    values: dict[str, dict[str, float]] = {}
    for k, images in candidates.items():
        values[k] = {
            "grad": q.gradient_magnitude(images, inner(images), ref) / real_grad,
            "hist": q.histogram_distance(images, whole(images), held, whole(held), ref) / real_vs_real,
            "fd": frechet_distance(f_real, encoder_feats[k]),
            "nn": float(np.median(q.nearest_copies(images, train)[1])),
            "background": q.background_level(images, ref),
        }
    values["held-out real"] = {"nn": float(np.median(q.nearest_copies(held, train)[1])),
                               "background": q.background_level(held, ref)}
    rows = []
    for base in ("blurred real (2 px)", "shuffled real", "nearest training copy"):
        m, b = values["model"], values[base]
        rows += [q.Row(name, "in-object gradient / real", base, m["grad"], b["grad"], "near1"),
                 q.Row(name, f"histogram distance / real-vs-real ({n} training slices)", base, m["hist"], b["hist"],
                       "lower"),
                 q.Row(name, f"FD (feature encoder, {n} vs {len(held)})", base, m["fd"], b["fd"], "lower")]
    rows.append(q.Row(name, f"histogram distance / real-vs-real ({n} training slices)", "bar (1.5x)",
                      values["model"]["hist"], 1.5, "lower"))
    # the same distance over more samples (real sets of n differ by chance more than the bar), against
    # as many training slices drawn independently (with replacement): what a model that had learnt the
    # training slices exactly would draw. (Distinct slices, nearly the whole training set at this count,
    # match the interleaved held-out slices closer than any independent draw does.)
    pooled = np.concatenate([samples] + [draw(seed) for seed in POOL_SEEDS])
    pooled_ref = float(np.median(q.drawn_histogram_distances(train, held, len(pooled), q.REAL_DRAWS, seed=0,
                                                             replace=True)))
    rows.append(q.Row(name, f"histogram distance / real-vs-real, pooled ({len(pooled)} samples; as many "
                      "training slices drawn independently)", "bar (1.5x)",
                      q.histogram_distance(pooled, whole(pooled), held, whole(held), ref) / pooled_ref, 1.5, "lower"))
    rows.append(q.Row(name, "median distance to nearest training image", "held-out real",
                      values["model"]["nn"], values["held-out real"]["nn"], "higher"))
    rows.append(q.Row(name, "background level (mean |intensity| 3 px off the object) / range", "held-out real",
                      values["model"]["background"], values["held-out real"]["background"], "lower"))
    if kind == "brain":
        rows += brain_structure_rows(name, candidates, train, np.stack(train_lab), held, spacing[0], pooled)
    else:
        rows += phantom_heart_side_rows(name, samples, train, np.stack(train_lab), held)
    return rows


def phantom_heart_side_rows(name: str, samples: np.ndarray, train: np.ndarray, train_lab: np.ndarray,
                            held: np.ndarray) -> list[q.Row]:
    """Share of 2D phantom samples (n, y, x) whose heart lies on the training hearts' side
    (``structure_presence.Measure.hearts_in_place``) against held-out real slices and against them
    mirrored left-right (a model trained on mirrored items draws half its hearts there); and the share
    with the myocardium's dark ring round the blood pool (the phantom's most distinct structure in 2D)."""
    from napari_medgen.tasks import structure_presence as sp

    measure = sp.Measure.from_training(train, train_lab)
    seg = {k: measure.segment(v) for k, v in (("model", samples), ("held", held), ("mirrored", held[..., ::-1]))}
    share = {k: float(measure.hearts_in_place(v).mean()) for k, v in seg.items()}
    metric = "share of samples with the heart on its side (not mirrored)"
    ring = "share of samples with the myocardium's ring (structure_presence)"
    return [q.Row(name, metric, "held-out real", share["model"], share["held"], "higher"),
            q.Row(name, metric, "held-out real mirrored", share["model"], share["mirrored"], "higher"),
            q.Row(name, ring, "held-out real", measure.rates(seg["model"])["myocardium"],
                  measure.rates(seg["held"])["myocardium"], "higher")]


def brain_structure_rows(name: str, candidates: dict[str, np.ndarray], train: np.ndarray, train_lab: np.ndarray,
                         held: np.ndarray, pixel_mm: float, pooled: np.ndarray | None = None) -> list[q.Row]:
    """Per structure (``tasks.brain_structures``), the share of images that hold it divided by the share
    in the real slices they come from: the model's samples against the training slices, the baselines
    (made of held-out slices) against the held-out slices; then the model against the bar (0.8), and the
    same for ``pooled`` samples (n, y, x), if given: 16 perfect samples of the training slices miss the
    bar for the ventricles (in 56 % of them) by chance about a quarter of the time, 48 about one time in
    twenty (``benchmarks/structure_draws.py``)."""
    from napari_medgen.tasks import brain_structures as bs

    ref = bs.reference(train, train_lab)
    found = lambda x: bs.image_structures(x, ref, pixel_mm)  # noqa: E731
    source = {"training": found(train), "held-out": found(held)}
    kept = {k: bs.relative_shares(found(v), source["training" if k == "model" else "held-out"])
            for k, v in candidates.items() if k != "nearest training copy"}
    in_pool = bs.relative_shares(found(pooled), source["training"]) if pooled is not None else None
    rows = []
    for s in bs.STRUCTURES:
        metric = f"share with {s} / share in its real source"
        rows += [q.Row(name, metric, base, kept["model"][s], v[s], "near1") for base, v in kept.items() if base != "model"]
        rows.append(q.Row(name, metric, "bar (0.8)", kept["model"][s], 0.8, "higher"))
        if in_pool is not None:
            rows.append(q.Row(name, f"{metric}, pooled ({len(pooled)} samples)", "bar (0.8)", in_pool[s], 0.8,
                              "higher"))
    return rows


# --- inversion ---------------------------------------------------------------------------------

def vae_inversion_rows(name: str, path: Path, n: int = 12, pool: int = 500) -> list[q.Row]:
    """Invert held-out phantoms (a phantom bank drawn with seed 1000; training drew with the run's seed 0)
    and correlate the decoded image with the input inside the object; baseline: the nearest of
    ``pool`` training-like phantoms (seed 0), a copy."""
    from napari_medgen.models.latent_handle import decode
    from napari_medgen.tasks.latent_editor import LatentEditor, invert

    editor = LatentEditor(path)
    held, held_lab = editor.training_data(n, seed=1000)
    train, _ = editor.training_data(pool, seed=0)
    recon = np.stack([decode(editor.model, run_to_completion(invert(editor.model, im, steps=150))[None])[0, 0]
                      for im in held])
    mask = held_lab > 0
    copies, _ = q.nearest_copies(held, train)
    model_r = float(q.masked_correlation(held, recon, mask).mean())
    return [q.Row(name, f"inversion correlation in object ({n} held-out)", f"nearest of {pool} training copies",
                  model_r, float(q.masked_correlation(held, copies, mask).mean()), "higher"),
            q.Row(name, f"inversion correlation in object ({n} held-out)", "bar", model_r, 0.8, "higher")]


def vae_brain_inversion_rows(name: str, path: Path, steps: int = 150, pad_mm: float = 20.0,
                             validation: bool = False) -> list[q.Row]:
    """Invert the held-out slabs of the 1 mm template as "invert current slice" does (see the module doc):
    on the model grid (the prepared slice against its decoded inversion, inside the prepared brain
    mask) and on the slice's own grid (the rendered result against the raw slice in the true brain).
    ``validation``: its validation slabs instead (``data.brain.axial_split(z, validation=True)``), for
    choosing settings; only for a model trained with ``--set validation=true``. The copies are drawn
    from the slices the model was trained on."""
    from napari_medgen.data import brain
    from napari_medgen.data.brain_slices import training_slices, with_synthetic_skull
    from napari_medgen.models.latent_handle import decode
    from napari_medgen.tasks.latent_editor import LatentEditor

    editor = LatentEditor(path)
    left_out = bool(editor.card["training"].get("settings", {}).get("validation"))  # validation slabs not trained on
    if validation and not left_out:
        raise SystemExit(f"{path}: trained on the validation slabs (no --set validation=true); "
                         "measure it on the test slabs.")
    image, labels = brain.derive_brain_sample(resolution=1)
    spacing = (labels.spacing[1], labels.spacing[0])  # (row, col) mm
    train = training_slices(editor.size, validation=left_out)[0]
    held_z = training_slices(editor.size, held_out=True, validation=validation)[2]  # the slices with enough brain
    z = brain.axial_z_mm(labels)
    pad = int(round(pad_mm / min(spacing)))  # room for the head around the brain
    r: dict[str, list[float]] = {"grid": [], "grid copy": [], "scan": [], "scan copy": [], "scan ceiling": []}
    for k in np.flatnonzero(np.isin(z, held_z)):
        truth = np.pad(labels.data[k] > 0, pad)[None]
        raw = with_synthetic_skull(np.pad(image.data[k].astype(np.float32), pad), truth[0], spacing, seed=int(k))
        run_to_completion(editor.invert_image(raw, steps=steps, spacing_mm=spacing))
        prep = editor.prepared
        copy = q.nearest_copies(prep.image[None], train)[0][0]
        grid = lambda x: float(q.masked_correlation(prep.image[None], x[None], prep.mask[None])[0])  # noqa: E731
        scan = lambda x: float(q.masked_correlation(raw[None], x[None], truth)[0])  # noqa: E731
        r["grid"].append(grid(decode(editor.model, editor.z[None])[0, 0]))
        r["grid copy"].append(grid(copy))
        r["scan"].append(scan(editor.render()[0]))
        r["scan copy"].append(scan(prep.restore(copy)))
        r["scan ceiling"].append(scan(prep.restore(prep.image)))  # the model grid's pixels, no model
    m = {k: float(np.mean(v)) for k, v in r.items()}
    held = f"{len(r['grid'])} {'validation' if validation else 'held-out'} raw 1 mm slices with skull"
    on_grid = f"inversion correlation in brain, model grid ({held})"
    on_scan = (f"inversion correlation in brain, the slice's grid ({held}; the prepared slice itself: "
               f"{m['scan ceiling']:.3f})")
    copy_name = "nearest training slice (a copy)"
    return [q.Row(name, on_grid, copy_name, m["grid"], m["grid copy"], "higher"),
            q.Row(name, on_grid, "bar", m["grid"], 0.8, "higher"),
            q.Row(name, on_scan, copy_name, m["scan"], m["scan copy"], "higher"),
            q.Row(name, on_scan, "bar", m["scan"], 0.8, "higher")]


# --- 3D phantom diffusion: structures present ----------------------------------------------------

def phantom3d_presence_rows(name: str, path: Path, n: int = 20) -> list[q.Row]:
    """``n`` samples (default sampler and steps, seed 0) segmented into the phantom's structures
    (``tasks.structure_presence``); per structure the share of samples where it is present against the
    held-out real phantoms (seeds 1000..), then the worst structure against the bar (95 %), shuffled
    real voxels and the mean training volume."""
    from napari_medgen.tasks import structure_presence as sp
    from napari_medgen.tasks.sample import sample
    from napari_medgen.training.diffusion_trainer import sample_data

    size = int(load_card(path)["shape"][-1])
    train, train_lab = (np.stack(x) for x in sample_data("phantom", 3, size)[:2])
    held, held_lab = (np.stack(x) for x in sample_data("phantom", 3, size, held_out=True)[:2])
    measure = sp.Measure.from_training(train, train_lab)
    samples = run_to_completion(sample(path, n=n, seed=0, device="cpu")).data
    flat = lambda x: x.reshape(len(x), -1, x.shape[-1])  # noqa: E731  (volumes as stacks of rows to shuffle)
    shuffled = q.shuffle_in_mask(flat(held), flat(held_lab > 0)).reshape(held.shape)  # voxels within the body
    seg = {k: measure.segment(v) for k, v in (("model", samples), ("held-out real", held), ("shuffled real", shuffled),
                                              ("mean training volume", [train.mean(0)]))}
    judged = {k: measure.judge(v) for k, v in seg.items()}
    rates = {k: sp.shares_present(v) for k, v in judged.items()}
    metric = f"share of {n} samples with {{}} present"
    rows = [q.Row(name, metric.format(s), "held-out real", rates["model"][s], rates["held-out real"][s], "higher")
            for s in sp.STRUCTURES.values()]
    worst = {k: min(v.values()) for k, v in rates.items()}
    rows += [q.Row(name, metric.format("every structure") + " (worst)", base, worst["model"],
                   0.95 if base == "bar" else worst[base], "higher")
             for base in ("bar", "shuffled real", "mean training volume")]
    # variety: a model that drew one template n times would pass presence; its centres would not spread
    real_spread = sp.centre_spread(judged["held-out real"])
    template = judged["mean training volume"] * n
    rows.append(q.Row(name, f"spread of structure centres / held-out real's ({real_spread:.2f} voxels)",
                      "one template n times", sp.centre_spread(judged["model"]) / real_spread,
                      sp.centre_spread(template) / real_spread, "near1"))
    # presence judges each structure's largest piece: extra tumours pass it unseen
    extra = {k: float(np.mean([sp.lung_balls(labels) > 1 for labels in seg[k]])) for k in ("model", "held-out real")}
    rows.append(q.Row(name, "share with more than one ball in the lungs (extra tumours)", "held-out real",
                      extra["model"], extra["held-out real"], "lower"))
    return rows


LEDGER: dict[str, Callable[[Path], list[q.Row]]] = {
    "spade_brain": spade_brain,
    "spade_phantom": spade_phantom,
    "diffusion_brain2d": lambda p: diffusion_rows("diffusion_brain2d", p),
    "diffusion_phantom2d": lambda p: diffusion_rows("diffusion_phantom2d", p),
    "vae_phantom": lambda p: vae_inversion_rows("vae_phantom", p),
    "vae_brain": lambda p: vae_brain_inversion_rows("vae_brain", p),
    "diffusion_phantom3d": lambda p: phantom3d_presence_rows("diffusion_phantom3d", p),
}


def verdict(margin: float) -> str:
    """"wins" / "ties" / "LOSES" for a row's margin (positive = the model wins)."""
    return "wins" if margin > 0 else "ties" if margin == 0 else "LOSES"


def print_table(rows: list[q.Row]) -> None:
    head = ("model", "metric", "baseline", "model value", "baseline value", "margin", "")
    cells = [head] + [(r.model, r.metric, r.baseline, f"{r.model_value:.4f}", f"{r.baseline_value:.4f}",
                       f"{r.margin:+.4f}", verdict(r.margin)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for i, c in enumerate(cells):
        print("  ".join(s.ljust(w) for s, w in zip(c, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", choices=sorted(LEDGER), default=None)
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="measure the model at PATH (without suffix) in place of the shipped NAME")
    ap.add_argument("--record", action="store_true", help="write the figures into each model's card")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = {name: SHIPPED_MODELS / name for name in LEDGER}
    for item in args.model:
        name, _, path = item.partition("=")
        if name not in LEDGER or not path:
            ap.error(f"--model {item!r}: expected NAME=PATH with NAME one of {', '.join(LEDGER)}")
        paths[name] = Path(path)
    rows: list[q.Row] = []
    for name in args.only or LEDGER:
        if not paths[name].with_suffix(".json").is_file():
            print(f"{name}: not shipped (no {paths[name]}.json); measure a trained one with --model {name}=PATH")
            continue
        t0 = time.perf_counter()
        got = LEDGER[name](paths[name])
        print(f"{name}: measured in {time.perf_counter() - t0:.0f} s ({paths[name]})", flush=True)
        rows += got
        if args.record:
            record_metrics(paths[name], "ledger", {f"{r.metric} vs {r.baseline}": [round(r.model_value, 4),
                                                                                     round(r.baseline_value, 4)]
                                                   for r in got})
    print(f"\nQuality ledger ({os.cpu_count()} CPUs, {args.threads} torch threads): margin > 0 = the model wins\n")
    print_table(rows)


if __name__ == "__main__":
    main()
