"""Sample a diffusion model (napari-medgen card or MONAI bundle) with DDPM, DDIM or rectified flow.

The loop is ours (over MONAI's schedulers) so that every step can check for cancellation and
report the current estimate of the clean image x0 as a preview. Latent models (MONAI bundles with
an autoencoder) run the same loop in latent space and decode ``latent / scale_factor`` for every
preview and for the result, one sample at a time. Output: a 4D Volume (n, z, y, x): samples stacked
on the leading axis; 2D models give (n, 1, y, x). MONAI bundles (:mod:`..models.bundle`) open
as published; MAISI's bundle generates CT (HU) from a label map at the bundle's voxel size
(:mod:`..models.bundle_maisi`). Masks (their values as the model's classes), conditioning values and the
output's geometry (also before sampling: :func:`.sample_inputs.placeholder`): :mod:`.sample_inputs`.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..device import inference_autocast, native_bf16_cpu, resolve_device
from ..errors import InputError, ModelError
from ..io.volume import Volume
from ..models.diffusion import (
    CONFIG_ERRORS,
    DEFAULT_STEPS,
    SAMPLERS,
    DiffusionModel,
    make_scheduler,
    speed_up,
)
from ..models.acquisition_noise import NoiseModel
from ..models.bundle_config import ConditionField
from ..models.bundle_maisi import MaisiModel
from ..models.families import open_model
from ..models.store import load_card
from ..models.tracing import freeze_trace
from ..progress import CancelToken, Progress
from . import memory
from .sample_inputs import condition_values, default_grid, is_xyz, mask_inputs
from .sample_maisi import maisi_inputs

MAX_SAMPLES = 64
EPSILON_SCALING_MAX = 1.2
# steps x samples from which tracing the network pays back its one-time cost on CPU (about 0.5 s
# plus two slower first calls, against 15-30 % per call; benchmarks/diffusion.py measures both)
TRACE_MIN_CALLS = 400


def _card(model: DiffusionModel) -> dict[str, Any]:
    """The model's card entries (validated when loaded); {} for a model without a card (a bundle, a bare network)."""
    return model.extra.get("card", {})


def defect_notes(model: DiffusionModel) -> list[str]:
    """One note per entry of the card's ``known_defects``, named with the model: told with every result."""
    name = Path(model.source).name.removesuffix(".json")
    return [f"{name}: known defect: {d}" for d in _card(model).get("known_defects", [])]


def default_sampler(model: DiffusionModel) -> str:
    """The card's ``default_sampler``, else DDIM for DDPM-trained models and rectified flow for velocity models."""
    return str(_card(model).get("default_sampler") or ("rflow" if model.objective == "rflow" else "ddim"))


def default_steps(model: DiffusionModel, sampler: str) -> int:
    """The card's ``default_steps`` when ``sampler`` is its default sampler, else the sampler's
    (``DEFAULT_STEPS``: DDIM 50, rectified flow 30, DDPM 1000). ModelError for a card value that is not a
    whole number above 0."""
    value = _card(model).get("default_steps")
    if value is None or sampler != default_sampler(model):
        return DEFAULT_STEPS.get(sampler, 50)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"Model '{model.source}': default_steps must be a whole number above 0, got {value!r}.")
    return value


def epsilon_scaling(model: DiffusionModel, sampler: str, override: float | None = None) -> float:
    """The divisor of the network's noise prediction while sampling (1: none): ``override``, else the card's
    ``epsilon_scaling``. Epsilon scaling (Ning et al. 2024, "Elucidating the exposure bias in diffusion
    models") counters the drift of a noise-predicting model along its own sampling path; it applies to
    DDPM and DDIM sampling of epsilon models only. Raises ModelError for a value outside [1, 1.2] or a
    model it does not apply to."""
    value = override if override is not None else _card(model).get("epsilon_scaling")
    if value is None:
        return 1.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 1.0 <= number <= EPSILON_SCALING_MAX:
        raise ModelError(f"Model '{model.source}': epsilon scaling must be a number between 1 and "
                         f"{EPSILON_SCALING_MAX}, got {value!r}.")
    value = number
    if value != 1.0 and (sampler not in ("ddpm", "ddim")
                         or str(model.scheduler.get("prediction_type", "epsilon")) != "epsilon"):
        raise ModelError(f"Model '{model.source}': epsilon scaling applies to DDPM/DDIM sampling of a model that "
                         f"predicts the noise, not to {sampler} sampling of this one.")
    return value


def mask_to_seg(model: DiffusionModel, mask: Volume, label_map: Sequence[str] = ()) -> torch.Tensor:
    """Label map (z, y, x) or a series (t, z, y, x) -> one-hot (1 or t, label_nc, *model.shape) of the model's
    classes on its grid (:func:`.sample_inputs.mask_inputs`; ``label_map`` as for :func:`sample`)."""
    return mask_inputs(model, mask, label_map=label_map)[0]


def samplers_for(scheduler: dict[str, object]) -> tuple[str, ...]:
    """The samplers a scheduler spec ({"objective": ..., MONAI kwargs}) allows (what make_scheduler accepts)."""
    ok = []
    for name in SAMPLERS:
        try:
            make_scheduler(dict(scheduler), name, 1)
        except ModelError:
            continue
        ok.append(name)
    return tuple(ok)


def supported_samplers(model: DiffusionModel) -> tuple[str, ...]:
    return samplers_for(model.scheduler)


def model_options(model: str | Path) -> tuple[tuple[str, ...], tuple[ConditionField, ...], tuple[dict[int, str], int]]:
    """(samplers, conditioning fields, (class names, number of classes)) of a model card or bundle folder, read
    without loading weights; the classes are a mask-conditioned card's, else ({}, 0)."""
    path = Path(model)
    if path.is_dir():
        from ..models.bundle import describe_bundle

        info = describe_bundle(path)
        return samplers_for({"objective": info.objective}), info.condition_fields, ({}, 0)
    card = load_card(path)
    names = {int(k): str(v) for k, v in (card.get("label_names") or {}).items()}
    return samplers_for(card.get("scheduler", {"objective": "ddpm"})), (), (names, int(card["network"].get("label_nc") or 0))


def condition_fields(model: DiffusionModel) -> tuple[ConditionField, ...]:
    """The named conditioning values a model defines (bundles); () for others."""
    return tuple(model.extra.get("condition_fields", ()))


def _to_image(model: DiffusionModel, x: torch.Tensor, autocast: AbstractContextManager | None = None) -> np.ndarray:
    """Network-space batch (n, C, *shape) -> intensities (n, z, y, x) float32 (channel 0); latent models
    decode each sample (under ``autocast``) to (n, C_img, *image_shape) first."""
    if model.autoencoder is not None:
        with torch.inference_mode(), autocast or nullcontext():
            x = torch.cat([model.decode(z[None]).float() for z in x])
    arr = x[:, 0].float().cpu().numpy()
    if is_xyz(model):
        arr = arr.transpose(0, *range(arr.ndim - 1, 0, -1))
    if model.spatial_dims == 2:
        arr = arr[:, None]
    if model.normalization:
        from ..data.normalize import denormalize

        arr = denormalize(arr, model.normalization)
    return np.ascontiguousarray(arr, dtype=np.float32)


def sample(model: str | Path | DiffusionModel, *, sampler: str | None = None, steps: int | None = None, n: int = 1,
           seed: int = 0, mask: Volume | None = None,
           condition: Sequence[float] | Mapping[str, object] | str | None = None,
           preview_every: int = 5, device: str | torch.device = "auto", cancel: CancelToken | None = None,
           fast: bool = True, shape: tuple[int, ...] | None = None,
           scale_factor: float | None = None, slice_index: int | None = None,
           overrides: dict[str, object] | None = None, label_map: Sequence[str] = (),
           epsilon_scale: float | None = None, acquisition_noise: bool = True) -> Generator[Progress, None, Volume]:
    """Draw ``n`` samples; yields Progress with ``preview`` = a Volume like the result holding the
    starting noise (step 0; None for latent models), then the x0 estimate (n, z, y, x) after the first
    network step and every ``preview_every`` steps; returns the samples as a 4D Volume.

    sampler: "ddpm" | "ddim" | "rflow" (default: the card's ``default_sampler``, else DDIM, or rectified
    flow for rflow models); steps: default the card's ``default_steps`` for its default sampler, else DDIM
    50, rectified flow 30, DDPM 1000 (DDPM with fewer steps is respaced:
    ``models.diffusion.RespacedDDPMScheduler``). mask: label map for mask-conditioned models, or a 4D
    series of them (one sample each), of any size: it is resampled (nearest neighbour) to the model's grid
    and the samples back to the mask's grid (a 2D model takes slice ``slice_index`` of a 3D mask, default the
    middle one).
    Its values become the model's classes by :mod:`..data.label_mapping`'s rules (names, unnamed 0 background,
    ``label_map``: "VALUE=CLASS" specs or "identity"; other values are refused). MAISI: the label map, in
    MAISI's classes by the same rules, is resampled onto the bundle's RAS grid of ``shape`` (z, y, x) voxels at
    the chosen voxel size, and the CT (HU) is returned on that grid; without a mask, MAISI generates the label
    map from anatomy sizes (result metadata "label_map"; :mod:`.sample_maisi`).
    condition: the conditioning values of conditioned models: numbers in order, or by name
    ({"age": 0.3} or "age=0.3,gender=1"; missing names take the bundle's defaults), the same for all
    samples; :func:`condition_fields` lists the names, defaults and ranges.
    fast: fused attention and channels-last memory (2D) for the network calls; reduced-precision
    autocast where the hardware computes it natively (float16 on CUDA, bfloat16 for 2D models on
    CPUs with AMX or AVX512-BF16, :func:`..device.inference_autocast`); on other CPUs, for runs of at least
    TRACE_MIN_CALLS sample-steps, the network traced and frozen (:mod:`..models.tracing`).
    shape: spatial shape (z, y, x) / (y, x) of the output images, for models (bundles) that do not fix
    it or to change it (latent models sample latents of shape / their autoencoder's downsampling).
    scale_factor: latent scale, to override the bundle's. overrides: bundle config values
    ({"output_size_xy": 256}), see :func:`..models.families.open_model`.
    epsilon_scale: divide the predicted noise by this (1: off), instead of the card's
    ``epsilon_scaling`` (:func:`epsilon_scaling`).
    acquisition_noise: add the card's scanner noise (``models.acquisition_noise``, measured on the training
    images) to the network's noise-free result, drawn from ``seed``; previews stay noise-free.
    """
    cancel = cancel or CancelToken()
    if not 1 <= int(n) <= MAX_SAMPLES:
        raise InputError(f"Number of samples must be between 1 and {MAX_SAMPLES}, got {n}.")
    dev = resolve_device(device)
    m = model if isinstance(model, DiffusionModel) else open_model(model, dev, overrides)
    if not isinstance(m, DiffusionModel):
        raise ModelError(f"Model '{model}' is not a diffusion model: sampling needs one (or a MONAI bundle).")
    _apply_overrides(m, shape, scale_factor)
    sampler = sampler or default_sampler(m)
    steps = int(steps or default_steps(m, sampler))
    sched = make_scheduler(m.scheduler, sampler, steps, source=f"Model '{m.source}'")
    eps_divisor = epsilon_scaling(m, sampler, epsilon_scale)
    fields = condition_fields(m)
    named = condition_values(fields, condition, m.source) if fields else {}
    vector = list(named.values()) if fields else condition
    grid, extra = default_grid(m), {}
    if isinstance(m, MaisiModel):
        seg, grid, extra = yield from maisi_inputs(m, mask, named, label_map, seed, cancel, dev)
        vector = None
    elif mask is not None:
        seg, grid, extra = mask_inputs(m, mask, slice_index, label_map)
    else:
        seg = None
    seg = seg.to(dev) if seg is not None else None
    if seg is not None and len(seg) > 1:
        if n not in (1, len(seg)):
            raise InputError(f"{len(seg)} masks were given for {n} samples: give one mask, or one per sample.")
        n = len(seg)
    elif seg is not None:
        seg = seg.expand(n, *seg.shape[1:])
    if m.label_nc and seg is None:
        raise InputError(f"Model '{m.source}' is mask-conditioned: give a label map (mask) to sample it.")
    if label_map and seg is None:
        raise InputError("A label mapping (--map) applies to a mask (label map); none was given.")
    context = m.condition_tensor(vector, n)
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
    # bf16 on the CPU pays for 2D convolutions only: 3D ones ran 2x slower (benchmarks/bundle_speed.py)
    autocast = inference_autocast(dev) if fast and (dev.type != "cpu" or m.spatial_dims == 2) else nullcontext()
    total = len(timesteps)
    predict = m.predict
    if fast and dev.type == "cpu" and not native_bf16_cpu() and total * n >= TRACE_MIN_CALLS:
        predict = traced_predict(m, x.contiguous(memory_format=fmt), timesteps[0].float().expand(n).to(dev), seg,
                                 context)
    noise = NoiseModel.from_card(_card(m).get("acquisition_noise"), m.source) if acquisition_noise else None
    info = {"sampler": sampler, "steps": steps, "seed": int(seed), **named,
            **({"epsilon_scaling": eps_divisor} if eps_divisor != 1.0 else {}),
            **({"acquisition_noise": f"{noise.kind}, sigma {noise.sigma:g}"} if noise is not None else {})}
    defects = defect_notes(m)
    meta = {"source": m.source, "stack_axis": "sample", "time_spacing": 1.0,
            **({"modality": m.extra["modality"]} if "modality" in m.extra else {}),
            **extra, **({"notes": [*extra.get("notes", []), *defects]} if defects else {})}
    # a latent model's starting noise is not decoded: one full-size decode to show noise
    start = grid.volume(_to_image(m, x), **meta, **info) if m.autoencoder is None else None
    yield Progress(0, total, "starting from noise", preview=start)
    with torch.inference_mode():
        for i, (t, nt) in enumerate(zip(timesteps, nexts)):
            cancel.check()
            with autocast:
                out = predict(x.contiguous(memory_format=fmt), t.float().expand(n).to(dev), seg, context).float()
            if eps_divisor != 1.0:
                out = out / eps_divisor
            if sampler == "rflow":
                x, x0 = sched.step(out, t, x, nt)
            elif sampler == "ddpm":
                x, x0 = sched.step(out, t, x, generator=step_gen)
            else:
                x, x0 = sched.step(out, t, x)
            if i + 1 == total:  # the result is the last preview: one decode, in full precision
                image = _to_image(m, x)
                result = grid.volume(image if noise is None else with_noise(image, noise, seed), **meta, **info)
                yield Progress(total, total, f"{sampler} step {total}/{total}", preview=result)
            elif i == 0 or (i + 1) % max(1, preview_every) == 0:
                preview = grid.volume(_to_image(m, x0, autocast), **meta, **info)
                yield Progress(i + 1, total, f"{sampler} step {i + 1}/{total}", preview=preview)
    return result


def with_noise(images: np.ndarray, noise: NoiseModel, seed: int) -> np.ndarray:
    """Noise-free samples (n, z, y, x, raw units, each voxel the mean recorded level a model learns) -> the same
    recorded with ``noise``: the signal whose mean level they are (``signal_for_level``), noise drawn from ``seed``."""
    signal = torch.from_numpy(noise.signal_for_level(images).astype(np.float32))
    return noise.apply(signal, torch.Generator().manual_seed(int(seed) + 2)).numpy()


def _apply_overrides(m: DiffusionModel, shape: Sequence[int] | None, scale_factor: float | None) -> None:
    """Set the caller's output image shape and latent scale factor on ``m``; InputError when a model still
    lacks either (naming the bundle entry that napari-medgen did not evaluate)."""
    notes = m.extra.get("notes", {})
    if shape is not None:
        m.shape = m.network_shape(tuple(shape)[::-1] if is_xyz(m) else shape)
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

