"""Diffusion sampling benchmark: speed vs MONAI's stock sampler, sample quality, mask fidelity, 3D memory.

One run prints one table (and optionally writes the numbers as JSON and the preview-strip figure):

    OMP_NUM_THREADS=1 python benchmarks/diffusion.py [--n 32] [--json OUT.json] [--strip OUT.png]

* speed: MONAI ``DiffusionInferer.sample`` with DDPM 1000 steps vs ``tasks.sample`` with the
  default sampler (same model, same n, same start noise), wall time for n samples;
* per network step: MONAI's stock call (no_grad, contiguous, timesteps (1,)) vs ours eager
  (inference_mode + channels-last + fused attention) and traced + frozen (TorchScript, as
  tasks.sample runs long runs), with tracing's one-time cost, and bf16 autocast (what tasks.sample
  uses on CPUs that compute bf16 natively); torch.compile with --compile;
* quality: Fréchet distance and MMD (tasks.evaluate, default shipped feature encoder) of each
  sample set and of noise / shuffled-pixel baselines vs held-back real images;
* mask: Dice between the mask and a nearest-class-mean segmentation of mask-conditioned samples;
* 3D: peak resident memory while sampling the 3D model.
Everything runs on one CPU thread unless a GPU is present.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.inferers import DiffusionInferer

from napari_medgen.device import native_bf16_cpu
from napari_medgen.io.volume import Volume
from napari_medgen.models.diffusion import load_diffusion, make_scheduler, speed_up
from napari_medgen.models.store import shipped_models
from napari_medgen.progress import collect, run_to_completion
from napari_medgen.tasks.evaluate import extract_features, frechet_distance, mmd
from napari_medgen.tasks.sample import TRACE_MIN_CALLS, mask_to_seg, sample, traced_predict
from napari_medgen.training.diffusion_trainer import sample_data

ROWS: list[tuple[str, str, str]] = []
RESULTS: dict[str, float] = {}


def row(name: str, value: float, fmt: str = "{:.3f}", note: str = "") -> None:
    RESULTS[name] = float(value)
    ROWS.append((name, fmt.format(value), note))
    print(f"  {name}: {fmt.format(value)} {note}", file=sys.stderr, flush=True)  # partial results as they come


def sample_name(card: dict) -> str:
    """The shipped data set a model was trained on ("brain" or "phantom")."""
    return card.get("sample") or ("brain" if "brain" in card["training"]["data"] else "phantom")


def real_sets(card: dict, dims: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(held-back images (n, z, y, x), training images, held-back label maps) in raw intensities."""
    size = card["shape"][0]
    held, held_lab, _ = sample_data(sample_name(card), dims, size, held_out=True, n_subjects=128)
    train, _, _ = sample_data(sample_name(card), dims, size, n_subjects=32)
    add_z = (lambda a: a[:, None]) if dims == 2 else (lambda a: a)
    return add_z(np.stack(held)), add_z(np.stack(train)), held_lab


def quality(name: str, fake: np.ndarray, f_real: np.ndarray) -> float:
    f_fake = extract_features(fake[:, 0] if fake.shape[1] == 1 else fake)
    fd = frechet_distance(f_real, f_fake)
    row(f"{name}: FD vs held-back", fd, "{:.2f}")
    row(f"{name}: MMD vs held-back", mmd(f_real, f_fake), "{:.4f}")
    return fd


def median_times(fns: list, repeats: int) -> list[float]:
    """Median wall time of each function, run interleaved (a shared machine's load hits all alike)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def conditioning(m, n: int) -> tuple[Volume | None, torch.Tensor | None]:
    """For a mask-conditioned model: n held-back label maps as a 4D mask Volume and one-hot seg."""
    if not m.label_nc:
        return None, None
    _, labels, spacing = sample_data(sample_name(m.extra["card"]), m.spatial_dims, m.shape[0], held_out=True,
                                     n_subjects=4 * n)
    masks = np.stack(labels[:n]).astype(np.uint8)[:, None]
    mask = Volume(masks, spacing, is_label=True, metadata={"label_names": m.label_names})  # named as the card's classes
    return mask, mask_to_seg(m, mask)


def per_step(model_path: Path, n: int, repeats: int, compile_: bool) -> None:
    """Time one network call: MONAI's stock way vs ours (and torch.compile), same weights and input."""
    m = load_diffusion(model_path)
    _, seg = conditioning(m, n)
    kw = {"seg": seg} if seg is not None else {}
    x = torch.randn(n, 1, *m.shape)
    t = 500
    fmt = torch.channels_last if m.spatial_dims == 2 else torch.contiguous_format
    fast = speed_up(copy.deepcopy(m.unet), fmt)
    xf = x.contiguous(memory_format=fmt)
    kwf = {"seg": seg.contiguous(memory_format=fmt)} if seg is not None else {}
    tt = torch.full((n,), float(t))

    def stock_call():
        with torch.no_grad():
            m.unet(x, timesteps=torch.Tensor((t,)), **kw)

    def our_call():
        with torch.inference_mode():
            fast(xf, timesteps=tt, **kwf)

    t0 = time.perf_counter()
    traced = traced_predict(dataclasses.replace(m, unet=fast), xf, tt, kwf.get("seg"))
    traced(xf, tt, kwf.get("seg"))
    traced(xf, tt, kwf.get("seg"))  # TorchScript's profiling runs: the first two calls are slower
    trace_cost = time.perf_counter() - t0

    def traced_call():
        with torch.inference_mode():
            traced(xf, tt, kwf.get("seg"))

    def bf16_call():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            fast(xf, timesteps=tt, **kwf)

    stock, ours, frozen, bf16 = median_times([stock_call, our_call, traced_call, bf16_call], repeats)
    native = native_bf16_cpu()
    used = bf16 if native else frozen
    row("per step: MONAI stock call (s)", stock, "{:.4f}", f"n={n}, no_grad, contiguous, float32")
    row("per step: ours eager / stock", ours / stock, "{:.2f}", "inference_mode + channels_last + SDPA, float32")
    row("per step: ours traced + frozen / stock", frozen / stock, "{:.2f}",
        f"tracing costs {trace_cost:.2f} s once, repaid after {trace_cost / max(ours - frozen, 1e-9):.0f} calls")
    row("per step: ours bf16 autocast / stock", bf16 / stock, "{:.2f}",
        f"CPU computes bf16 natively (AMX/AVX512-BF16): {'yes' if native else 'no'}")
    row("per step: as tasks.sample runs here / stock", used / stock, "{:.2f}",
        "bar <= 0.8; " + ("bf16 autocast" if native else f"traced from {TRACE_MIN_CALLS} sample-steps, else eager"))
    if not compile_:
        return
    try:
        compiled = torch.compile(fast)
        t0 = time.perf_counter()
        with torch.inference_mode():
            compiled(xf, timesteps=tt, **kwf)
        warm = time.perf_counter() - t0
        with torch.inference_mode():
            comp = median_times([lambda: compiled(xf, timesteps=tt, **kwf)], repeats)[0]
        row("per step: torch.compile / stock", comp / stock, "{:.2f}", f"compile took {warm:.0f} s")
    except Exception as exc:  # compilation needs a C++ toolchain; report instead of failing the table
        ROWS.append(("per step: torch.compile", "n/a", f"{type(exc).__name__}: {str(exc)[:60]}"))


def speed_and_quality(model_path: Path, n: int, strip: Path | None, stock_steps: int) -> None:
    m = load_diffusion(model_path)
    card = m.extra["card"]
    held, train, _ = real_sets(card, m.spatial_dims)
    f_real = extract_features(held[:, 0])
    mask, seg = conditioning(m, n)
    seed = 0
    noise = torch.randn((n, 1, *m.shape), generator=torch.Generator().manual_seed(seed))
    # MONAI's own DDPMScheduler at any step count (make_scheduler respaces fewer steps than training)
    sched = make_scheduler(m.scheduler, "ddpm", int(m.scheduler.get("num_train_timesteps", 1000)))
    sched.set_timesteps(stock_steps)
    t0 = time.perf_counter()
    stock = DiffusionInferer(sched).sample(noise, m.unet, sched, verbose=False, seg=seg)
    t_stock = time.perf_counter() - t0
    from napari_medgen.data.normalize import denormalize

    stock_img = denormalize(stock[:, :1].numpy(), m.normalization)
    t0 = time.perf_counter()
    progress, ours = collect(sample(model_path, n=n, seed=seed, device="cpu", preview_every=5, mask=mask))
    t_ours = time.perf_counter() - t0
    cond = " (conditioned on held-back masks)" if mask is not None else ""
    row(f"time for n samples: MONAI DDPM {stock_steps} (s)", t_stock, "{:.1f}", f"n={n}{cond}")
    row(f"time for n samples: ours {ours.metadata['sampler']} {ours.metadata['steps']} (s)", t_ours, "{:.1f}")
    row(f"speed-up vs MONAI DDPM {stock_steps}", t_stock / t_ours, "{:.1f}x", "bar >= 20x")
    fd_stock = quality(f"MONAI DDPM {stock_steps}", stock_img, f_real)
    fd_ours = quality(f"ours {ours.metadata['sampler']} {ours.metadata['steps']}", ours.data, f_real)
    row(f"FD ours / FD DDPM {stock_steps}", fd_ours / fd_stock, "{:.2f}", "bar <= 1.10")
    quality("real training images", train, f_real)
    baselines(model_path.stem, held, f_real)
    if strip is not None:
        save_strip(progress, strip)


def mask_dice(model_path: Path, n: int) -> None:
    """Dice between held-back label maps and a nearest-class-mean segmentation of their samples."""
    m = load_diffusion(model_path)
    size = m.shape[0]
    images, labels, _ = sample_data(sample_name(m.extra["card"]), 2, size, n_subjects=16)
    classes = range(m.label_nc)
    means = np.array([np.mean([img[lab == c].mean() for img, lab in zip(images, labels) if (lab == c).any()])
                      for c in classes])
    held_img, held_lab, _ = sample_data(sample_name(m.extra["card"]), 2, size, held_out=True, n_subjects=4 * n)
    mask, _ = conditioning(m, n)
    vol = run_to_completion(sample(m, seed=1, mask=mask, device="cpu"))

    def segment(img: np.ndarray) -> np.ndarray:
        return np.argmin(np.abs(img[..., None] - means), axis=-1)

    def dice(a: np.ndarray, b: np.ndarray) -> float:
        present = [c for c in classes if c > 0 and (b == c).any()]
        return float(np.mean([2 * ((a == c) & (b == c)).sum() / ((a == c).sum() + (b == c).sum()) for c in present]))

    def body(a: np.ndarray, b: np.ndarray) -> float:
        return float(2 * ((a > 0) & (b > 0)).sum() / ((a > 0).sum() + (b > 0).sum()))

    segs = [segment(vol.data[k, 0]) for k in range(n)]
    ours = [dice(segs[k], held_lab[k]) for k in range(n)]
    other = [dice(segs[k], held_lab[(k + 1) % n]) for k in range(n)]
    real = [dice(segment(held_img[k]), held_lab[k]) for k in range(n)]
    row("mask Dice (body vs background): sample vs its mask", statistics.mean(body(segs[k], held_lab[k]) for k in range(n)),
        "{:.3f}", f"real image: {statistics.mean(body(segment(held_img[k]), held_lab[k]) for k in range(n)):.3f}, "
        f"another mask: {statistics.mean(body(segs[k], held_lab[(k + 1) % n]) for k in range(n)):.3f}")
    note = f"{n} held-back masks, mean over foreground classes"
    row("mask Dice: sample vs its mask", statistics.mean(ours), "{:.3f}", note)
    row("mask Dice: real image vs its mask", statistics.mean(real), "{:.3f}", "same segmentation on real images (ceiling)")
    row("mask Dice: sample vs another mask", statistics.mean(other), "{:.3f}", "chance reference")


def unconditional_quality(model_path: Path, n: int) -> None:
    m = load_diffusion(model_path)
    held, _, _ = real_sets(m.extra["card"], 2)
    vol = run_to_completion(sample(m, n=n, seed=0, device="cpu"))
    f_real = extract_features(held[:, 0])
    quality(f"{model_path.stem} {vol.metadata['sampler']} {vol.metadata['steps']}", vol.data, f_real)
    baselines(model_path.stem, held, f_real)


def baselines(name: str, held: np.ndarray, f_real: np.ndarray) -> None:
    """FD/MMD of Gaussian noise (the held-back set's mean and sd) and of pixel-shuffled held-back images."""
    rng = np.random.default_rng(0)
    quality(f"{name} baseline: Gaussian noise", rng.normal(held.mean(), held.std(), held.shape).astype(np.float32),
            f_real)
    quality(f"{name} baseline: shuffled pixels", np.stack([rng.permutation(a.ravel()).reshape(a.shape) for a in held]),
            f_real)


def memory_3d(model_path: Path, n: int) -> None:
    m = load_diffusion(model_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    vol = run_to_completion(sample(m, n=n, seed=0, device="cpu"))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row("3D: time for n samples (s)", time.perf_counter() - t0, "{:.1f}",
        f"n={n}, {'x'.join(map(str, m.shape))}, {vol.metadata['sampler']} {vol.metadata['steps']}")
    row("3D: peak RSS (MiB)", after, "{:.0f}", f"process peak; {after - before:.0f} MiB above the loaded model")
    held, _, _ = real_sets(m.extra["card"], 3)
    f_real = extract_features(held)
    quality("3D samples", vol.data, f_real)
    rng = np.random.default_rng(0)
    quality("3D baseline: Gaussian noise", rng.normal(held.mean(), held.std(), held.shape).astype(np.float32), f_real)
    shuffled = np.stack([rng.permutation(a.ravel()).reshape(a.shape) for a in held])
    quality("3D baseline: shuffled voxels", shuffled, f_real)


def strip_figure(model_path: Path, path: Path) -> None:
    """Sample one image of ``model_path`` with a preview at every step and save the strip."""
    progress = []
    task = sample(model_path, n=1, seed=0, device="cpu", preview_every=1)
    while True:
        try:
            progress.append(next(task))
        except StopIteration:
            break
    save_strip(progress, path)


def save_strip(progress: list, path: Path, sample_index: int = 0) -> None:
    """x0 estimates of one sample at several steps, left to right (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = [p for p in progress if p.step > 0]
    picks = [picks[i] for i in np.linspace(0, len(picks) - 1, 6).round().astype(int)]
    fig, axes = plt.subplots(1, len(picks), figsize=(2 * len(picks), 2.3))
    for ax, p in zip(axes, picks):
        ax.imshow(p.preview.data[sample_index, 0], cmap="gray")
        ax.set_title(f"step {p.step}/{p.total}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="samples per set (2D)")
    parser.add_argument("--model", help="2D model for the speed comparison (default: shipped brain, else phantom mask model)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--stock-steps", type=int, default=1000, help="DDPM steps of the MONAI reference (1000)")
    parser.add_argument("--parts", default="3d,step,quality,mask,speed", help="which measurements (comma-separated)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--strip", type=Path, help="write the preview strip figure (PNG)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models = shipped_models("diffusion")
    parts = set(args.parts.split(","))
    if "3d" in parts and "diffusion_phantom3d" in models:
        memory_3d(models["diffusion_phantom3d"], 4)
    main2d = Path(args.model) if args.model else models.get("diffusion_brain2d", models.get("diffusion_phantom2d_mask"))
    if "step" in parts:
        per_step(main2d, args.n, args.repeats, args.compile)
    if "quality" in parts:
        for name in ("diffusion_phantom2d", "diffusion_brain2d"):
            if name in models and models[name].resolve() != main2d.resolve():
                unconditional_quality(models[name], args.n)
    if "mask" in parts and "diffusion_phantom2d_mask" in models:
        mask_dice(models["diffusion_phantom2d_mask"], args.n)
    if "speed" in parts:
        speed_and_quality(main2d, args.n, args.strip, args.stock_steps)
    if "strip" in parts and args.strip:
        strip_figure(models.get("diffusion_brain2d", main2d), args.strip)
    width = max((len(r[0]) for r in ROWS), default=0)
    print(f"2D model: {main2d}; torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name, value, note in ROWS:
        print(f"{name:<{width}}  {value:>10}  {note}")
    if args.json:
        args.json.write_text(json.dumps(RESULTS, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
