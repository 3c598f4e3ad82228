"""Memory guard: estimate what synthesis or sampling needs before it starts, and fit it to the device.

The estimate is measured, not guessed: one forward pass of the network on a small probe input
with hooks that add up the bytes of every module's output (an upper bound of the activations
alive at once in inference mode), scaled linearly with the number of voxels (convolutional
networks; attention grows faster, hence the 2x margin on top), plus the fixed arrays (the result
volume). Free memory: ``torch.cuda.mem_get_info`` on CUDA, ``psutil.virtual_memory().available``
otherwise. Work that does not fit is done in smaller batches (synthesis: fewer slices at a time);
when even one item does not fit, the task refuses with an InputError naming the numbers
("needs about X GiB, Y GiB free"), so the operating system never has to kill napari.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import psutil
import torch

from ..errors import InputError

GIB = 2**30
MARGIN = 2.0  # estimate x MARGIN must fit: allocator slack, temporaries, attention
PROBE_SIDE = 32  # probe inputs are at most this many voxels along each axis


def free_bytes(device: torch.device | str) -> int:
    """Memory available for new allocations on ``device`` (bytes)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(psutil.virtual_memory().available)


def output_bytes(module: torch.nn.Module, run: Callable[[], Any]) -> int:
    """Bytes of all tensors that ``module``'s submodules output while ``run()`` executes (inference mode)."""
    total = 0

    def count(_m: torch.nn.Module, _inp: Any, out: Any) -> None:
        nonlocal total
        outs = out if isinstance(out, (tuple, list)) else [out]
        total += sum(t.numel() * t.element_size() for t in outs if isinstance(t, torch.Tensor))

    _run_hooked(module, count, run)
    return total


def live_peak_bytes(module: torch.nn.Module, run: Callable[[], Any]) -> int:
    """Peak bytes of ``module``'s submodule outputs alive at once while ``run()`` executes (inference mode).

    Outputs are counted from the hook that sees them until they are freed (each storage once), so this
    is what a feed-forward network holds at its widest point, less temporaries inside one module
    (MARGIN covers those); tighter than :func:`output_bytes` for deep networks at full image size."""
    live: dict[int, int] = {}
    peak = 0

    def count(_m: torch.nn.Module, _inp: Any, out: Any) -> None:
        nonlocal peak
        for t in out if isinstance(out, (tuple, list)) else [out]:
            key = t.untyped_storage().data_ptr() if isinstance(t, torch.Tensor) else 0
            if key and key not in live:
                live[key] = t.untyped_storage().nbytes()
                weakref.finalize(t, live.pop, key, None)
        peak = max(peak, sum(live.values()))

    _run_hooked(module, count, run)
    return peak


def _run_hooked(module: torch.nn.Module, hook: Callable[..., None], run: Callable[[], Any]) -> None:
    """``run()`` in inference mode with ``hook`` as a forward hook on every submodule of ``module``."""
    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        with torch.inference_mode():
            run()
    finally:
        for h in handles:
            h.remove()


def fit_batch(per_item: float, fixed: float, want: int, device: torch.device | str, what: str) -> int:
    """How many items (<= want) fit at once: per_item bytes each on top of ``fixed`` bytes, with MARGIN.

    Raises InputError "... needs about X GiB, Y GiB free ..." when not even one fits.
    """
    free = free_bytes(device)
    need_one = MARGIN * (fixed + per_item)
    if need_one > free:
        raise InputError(f"{what} needs about {need_one / GIB:.3g} GiB, but only {free / GIB:.3g} GiB are free on "
                         f"{torch.device(device)}: use a smaller volume or fewer samples, or another device.")
    return max(1, min(int(want), int((free / MARGIN - fixed) // max(per_item, 1))))


def probe_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A small input shape of the same dimensionality (each axis at most PROBE_SIDE)."""
    return tuple(min(int(s), PROBE_SIDE) for s in shape)


def synthesis_batch(synth: Any, volume_shape: tuple[int, ...], want: int) -> int:
    """Slices per batch for ``tasks.synthesize``: the spade generator on one slice of the model's shape,
    the float32 result volume fixed. InputError when not even one slice fits."""
    labels = torch.zeros((1, *synth.slice_shape), dtype=torch.int64)
    style = synth.random_style(0)
    per_slice = output_bytes(synth.generator, lambda: synth._forward(labels, style))
    fixed = 4 * math.prod(volume_shape)
    return fit_batch(per_slice, fixed, want, synth.device, f"Synthesising a {'x'.join(map(str, volume_shape))} volume")


def check_sampling(model: Any, n: int, device: torch.device | str) -> None:
    """Refuse (InputError with the numbers) when ``n`` samples of ``model.shape`` do not fit on ``device``.

    model: a ``models.diffusion.DiffusionModel``. Its UNet is probed on a small input (latent-sized for
    latent models) and scaled by voxel count, per sample; a latent model's decoder, which decodes one
    sample at a time, is probed on a latent whose image is at most PROBE_SIDE a side and counted once;
    each float32 result image is counted per sample."""
    small = probe_shape(tuple(model.shape))
    x = torch.zeros((1, model.in_channels, *small), device=device)
    seg = torch.zeros((1, model.label_nc, *small), device=device) if model.label_nc else None
    context = torch.zeros((1, 1, model.condition_size), device=device) if model.condition_size else None
    t = torch.zeros(1, device=device)
    per_sample = output_bytes(model.unet, lambda: model.predict(x, t, seg, context)) * math.prod(model.shape) \
        / math.prod(small) + 4 * math.prod(model.image_shape)
    decoder = 0.0
    if model.autoencoder is not None:
        tiny = tuple(min(s, max(1, PROBE_SIDE // model.latent_factor)) for s in model.shape)
        z = torch.zeros((1, model.in_channels, *tiny), device=device)
        decoder = live_peak_bytes(model.autoencoder, lambda: model.autoencoder.decode_stage_2_outputs(z)) \
            * math.prod(model.shape) / math.prod(tiny)
    size = "x".join(map(str, model.image_shape))
    fits = fit_batch(per_sample, decoder, n, device, f"Sampling {n} x {size}")
    if fits < n:
        raise InputError(f"Sampling {n} samples of {size} needs about "
                         f"{MARGIN * (n * per_sample + decoder) / GIB:.3g} GiB, but only {free_bytes(device) / GIB:.3g} "
                         f"GiB are free on {torch.device(device)}: at most {fits} fit at once.")
