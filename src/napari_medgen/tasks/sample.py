"""Sample a diffusion model (napari-medgen card or MONAI bundle) with DDPM, DDIM or rectified flow.

The loop is ours (over MONAI's schedulers) so that every step can check for cancellation and
report the current estimate of the clean image x0 as a preview. Latent models (MONAI bundles with
an autoencoder) run the same loop in latent space and decode ``latent / scale_factor`` for every
preview and for the result, one sample at a time. Output: a 4D Volume (n, z, y, x): samples stacked
on the leading axis; 2D models give (n, 1, y, x).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..device import inference_autocast, native_bf16_cpu, resolve_device
from ..errors import InputError, MedgenError, ModelError
from ..io.volume import Volume
from ..models.diffusion import (
    CONFIG_ERRORS,
    DEFAULT_STEPS,
    DiffusionModel,
    load_diffusion,
    make_scheduler,
    speed_up,
)
from ..models.store import load_card
from ..models.tracing import freeze_trace
from ..progress import CancelToken, Progress
from . import memory

MAX_SAMPLES = 64
# steps x samples from which tracing the network pays back its one-time cost on CPU (about 0.5 s
# plus two slower first calls, against 15-30 % per call; benchmarks/diffusion.py measures both)
TRACE_MIN_CALLS = 400


def open_model(model: str | Path | DiffusionModel, device: torch.device | str = "cpu") -> DiffusionModel:
    """A DiffusionModel from a card path (``NAME``, ``NAME.json``) or a MONAI bundle folder."""
    if isinstance(model, DiffusionModel):
        return model
    path = Path(model)
    if path.is_dir():
        from ..models.bundle import load_bundle

        return load_bundle(path, device)
    return load_diffusion(path, device)


def shipped_models() -> dict[str, Path]:
    """The diffusion models shipped in sample_data/models: {name: card path}."""
    folder = Path(__file__).resolve().parent.parent / "sample_data" / "models"
    return {p.stem: p for p in sorted(folder.glob("diffusion_*.json"))}


def default_sampler(model: DiffusionModel) -> str:
    """DDIM for noise-prediction (DDPM-trained) models, rectified flow for velocity models."""
    return "rflow" if model.objective == "rflow" else "ddim"


def mask_to_seg(model: DiffusionModel, mask: Volume) -> torch.Tensor:
    """Label map (z, y, x), or a series of them (t, z, y, x), -> one-hot (1 or t, label_nc, *model.shape).

    InputError when the model is not conditioned, or the shape or classes do not fit."""
    where = mask.metadata.get("source", "the mask")
    if not model.label_nc:
        raise InputError(f"Model '{model.source}' is not mask-conditioned: sample it without a mask.")
    frames = mask.data if mask.is_time_series else mask.data[None]
    data = frames[:, 0] if model.spatial_dims == 2 and frames.shape[1] == 1 else frames
    if tuple(data.shape[1:]) != tuple(model.shape):
        want = "1 x " + " x ".join(map(str, model.shape)) if model.spatial_dims == 2 else " x ".join(map(str, model.shape))
        raise InputError(f"{where}: mask shape {' x '.join(map(str, mask.spatial_shape))} (z, y, x) does not fit "
                         f"the model, which samples {want}.")
    if not np.issubdtype(data.dtype, np.integer) and not np.array_equal(data, np.round(data)):
        raise InputError(f"{where}: the mask holds non-integer values; it must be a label map.")
    classes = np.unique(data).astype(int)
    bad = [int(c) for c in classes if c < 0 or c >= model.label_nc]
    if bad:
        names = ", ".join(f"{k} {v}" for k, v in (model.label_names or {}).items())
        raise InputError(f"{where}: label value(s) {bad} are not classes of the model "
                         f"(it knows 0..{model.label_nc - 1}{': ' + names if names else ''}).")
    lab = torch.from_numpy(np.ascontiguousarray(data).astype(np.int64))
    return F.one_hot(lab, model.label_nc).movedim(-1, 1).float()


def _to_image(model: DiffusionModel, x: torch.Tensor, autocast: AbstractContextManager | None = None) -> np.ndarray:
    """Network-space batch (n, C, *shape) -> intensities (n, z, y, x) float32 (channel 0); latent models
    decode each sample (under ``autocast``) to (n, C_img, *image_shape) first."""
    if model.autoencoder is not None:
        with torch.inference_mode(), autocast or nullcontext():
            x = torch.cat([model.decode(z[None]).float() for z in x])
    arr = x[:, 0].float().cpu().numpy()
    if model.spatial_dims == 2:
        arr = arr[:, None]
    if model.normalization:
        from ..data.normalize import denormalize

        arr = denormalize(arr, model.normalization)
    return np.ascontiguousarray(arr, dtype=np.float32)


def sample(model: str | Path | DiffusionModel, *, sampler: str | None = None, steps: int | None = None, n: int = 1,
           seed: int = 0, mask: Volume | None = None, condition: Sequence[float] | str | None = None,
           preview_every: int = 5, device: str | torch.device = "auto", cancel: CancelToken | None = None,
           fast: bool = True, shape: tuple[int, ...] | None = None,
           scale_factor: float | None = None) -> Generator[Progress, None, Volume]:
    """Draw ``n`` samples; yields Progress with ``preview`` = a Volume like the result holding the
    starting noise (step 0; None for latent models), then the x0 estimate (n, z, y, x) after the first
    network step and every ``preview_every`` steps; returns the samples as a 4D Volume.

    sampler: "ddpm" | "ddim" | "rflow" (default: DDIM 50 steps, or rectified flow 30 for rflow
    models). mask: label map for mask-conditioned models, or a 4D series of them (one sample
    each); its geometry is used for the output (otherwise the card's spacing, origin 0).
    condition: the conditioning values of models conditioned on a vector (cross-attention context
    and/or extra input channels), as a list of numbers or "0.5,0.3,...", the same for all samples.
    fast: fused attention and channels-last memory (2D) for the network calls; reduced-precision
    autocast where the hardware computes it natively (float16 on CUDA, bfloat16 on CPUs with AMX
    or AVX512-BF16, :func:`..device.inference_autocast`); on other CPUs, for runs of at least
    TRACE_MIN_CALLS sample-steps, the network traced and frozen (:mod:`..models.tracing`).
    shape: spatial shape of the output images, for models (bundles) that do not fix it (latent models
    sample latents of shape / their autoencoder's downsampling). scale_factor: latent scale for latent
    bundles whose config gives it as an expression (or to override the bundle's).
    """
    cancel = cancel or CancelToken()
    if not 1 <= int(n) <= MAX_SAMPLES:
        raise InputError(f"Number of samples must be between 1 and {MAX_SAMPLES}, got {n}.")
    dev = resolve_device(device)
    m = open_model(model, dev)
    _apply_overrides(m, shape, scale_factor)
    sampler = sampler or default_sampler(m)
    steps = int(steps or DEFAULT_STEPS.get(sampler, 50))
    sched = make_scheduler(m.scheduler, sampler, steps, source=f"Model '{m.source}'")
    seg = mask_to_seg(m, mask).to(dev) if mask is not None else None
    if seg is not None and len(seg) > 1:
        if n not in (1, len(seg)):
            raise InputError(f"{len(seg)} masks were given for {n} samples: give one mask, or one per sample.")
        n = len(seg)
    elif seg is not None:
        seg = seg.expand(n, *seg.shape[1:])
    if m.label_nc and seg is None:
        raise InputError(f"Model '{m.source}' is mask-conditioned: give a label map (mask) to sample it.")
    context = m.condition_tensor(condition, n)
    context = context.to(dev) if context is not None else None
    try:  # refuse with the numbers rather than run out of memory; these are the networks' first calls
        memory.check_sampling(m, n, dev)
    except (*CONFIG_ERRORS, RuntimeError) as exc:
        raise ModelError(f"Model '{m.source}' builds but does not run ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200]}); check its network settings.") from None
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.randn((n, m.in_channels, *m.shape), generator=gen).to(dev)
    step_gen = torch.Generator(device=dev).manual_seed(int(seed) + 1)  # DDPM's per-step noise
    fmt = torch.channels_last if (fast and m.spatial_dims == 2) else torch.contiguous_format
    if fast:
        speed_up(m.unet, fmt)
        if m.autoencoder is not None:
            speed_up(m.autoencoder)
    if seg is not None:
        seg = seg.contiguous(memory_format=fmt)
    timesteps = list(sched.timesteps)
    nexts = timesteps[1:] + [torch.zeros_like(timesteps[0])]
    autocast = inference_autocast(dev) if fast else nullcontext()
    total = len(timesteps)
    predict = m.predict
    if fast and dev.type == "cpu" and not native_bf16_cpu() and total * n >= TRACE_MIN_CALLS:
        predict = traced_predict(m, x.contiguous(memory_format=fmt), timesteps[0].float().expand(n).to(dev), seg,
                                 context)
    info = {"sampler": sampler, "steps": steps, "seed": int(seed)}
    # a latent model's starting noise is not decoded: one full-size decode to show noise
    start = _as_volume(_to_image(m, x), m, mask, **info) if m.autoencoder is None else None
    yield Progress(0, total, "starting from noise", preview=start)
    with torch.inference_mode():
        for i, (t, nt) in enumerate(zip(timesteps, nexts)):
            cancel.check()
            with autocast:
                out = predict(x.contiguous(memory_format=fmt), t.float().expand(n).to(dev), seg, context).float()
            if sampler == "rflow":
                x, x0 = sched.step(out, t, x, nt)
            elif sampler == "ddpm":
                x, x0 = sched.step(out, t, x, generator=step_gen)
            else:
                x, x0 = sched.step(out, t, x)
            if i == 0 or (i + 1) % max(1, preview_every) == 0 or i + 1 == total:
                preview = _as_volume(_to_image(m, x0, autocast), m, mask, **info)
                yield Progress(i + 1, total, f"{sampler} step {i + 1}/{total}", preview=preview)
        result = _to_image(m, x)  # full precision: previews may decode under autocast, the result does not
    return _as_volume(result, m, mask, **info)


def _apply_overrides(m: DiffusionModel, shape: Sequence[int] | None, scale_factor: float | None) -> None:
    """Set the caller's output image shape and latent scale factor on ``m``; InputError when a model still
    lacks either (naming the bundle entry that napari-medgen did not evaluate)."""
    notes = m.extra.get("notes", {})
    if shape is not None:
        m.shape = m.network_shape(shape)
    if not m.shape:
        why = f" ({notes['shape']})" if notes.get("shape") else ""
        raise InputError(f"Model '{m.source}' does not state the shape of a sample{why}: give the image shape "
                         "(e.g. shape=(64, 64), medgen sample --shape 64 64).")
    if scale_factor is not None:
        if m.autoencoder is None:
            raise InputError(f"Model '{m.source}' is not a latent model: a scale factor does not apply to it.")
        if not np.isfinite(scale_factor) or scale_factor <= 0:
            raise InputError(f"The latent scale factor must be a positive number, got {scale_factor}.")
        m.scale_factor = float(scale_factor)
    if m.autoencoder is not None and m.scale_factor is None:
        raise InputError(f"Model '{m.source}' needs its latent scale factor: {notes.get('scale_factor') or 'unknown'}; "
                         "give the value (scale_factor=..., medgen sample --scale-factor ...).")


class _Predict(torch.nn.Module):
    """DiffusionModel.predict as a module of positional tensors (what tracing needs): x, t, then seg
    and/or context where the model takes them."""

    def __init__(self, model: DiffusionModel, has_seg: bool, has_context: bool):
        super().__init__()
        self.unet = model.unet
        self.model = model
        self.has_seg, self.has_context = has_seg, has_context

    def forward(self, x: torch.Tensor, t: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        seg = extra[0] if self.has_seg else None
        context = extra[-1] if self.has_context else None
        return self.model.predict(x, t, seg, context)


def traced_predict(m: DiffusionModel, x: torch.Tensor, t: torch.Tensor, seg: torch.Tensor | None,
                   context: torch.Tensor | None = None):
    """A predict(x, t, seg, context) callable running the network frozen-traced for these shapes (eager if
    tracing fails)."""
    net = freeze_trace(_Predict(m, seg is not None, context is not None), x, t,
                       *[a for a in (seg, context) if a is not None])
    if net is None:
        return m.predict
    return lambda x_, t_, seg_=None, context_=None: net(x_, t_, *[a for a in (seg_, context_) if a is not None])


def _as_volume(arr: np.ndarray, m: DiffusionModel, mask: Volume | None, **info: object) -> Volume:
    return _samples_volume(arr, m.source, m.spacing, mask, **info)


def _samples_volume(arr: np.ndarray, source: str, spacing: tuple[float, ...], mask: Volume | None,
                    **info: object) -> Volume:
    """Samples (n, z, y, x) as a 4D Volume: the mask's geometry, else ``spacing`` (x, y, z) mm at origin 0."""
    meta = {"source": source, "stack_axis": "sample", "time_spacing": 1.0, **info}
    if mask is not None:
        return Volume(arr, mask.spacing, mask.origin, mask.direction, metadata=meta)
    return Volume(arr, spacing, metadata=meta)


def placeholder(model: str | Path, n: int, mask: Volume | None = None) -> Volume | None:
    """Zeros shaped and placed like the samples ``sample(model, n=n, mask=mask)`` will return, read
    from the model card alone (no weights); None for bundles and cards that give no shape.

    A dock shows it as the output layer before the job starts, so the layer (a costly napari
    operation) is made while the CPU is free and the job's previews only update it.
    """
    path = Path(model)
    if path.is_dir():
        return None
    try:
        card = load_card(path)
    except MedgenError:
        return None  # the job itself reports the problem
    shape = card.get("shape")
    if not isinstance(shape, list) or len(shape) not in (2, 3):
        return None
    zyx = (1, *shape) if len(shape) == 2 else tuple(shape)
    if mask is not None and mask.is_time_series:
        n = len(mask.data)
    return _samples_volume(np.zeros((n, *zyx), np.float32), str(path), tuple(card.get("spacing", (1.0, 1.0, 1.0))),
                           mask)
