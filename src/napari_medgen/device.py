"""Compute-device selection: ``auto`` picks CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import contextlib

import torch

from .errors import DeviceError


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """Return a usable :class:`torch.device` for ``name`` ("auto", "cpu", "cuda", "cuda:1", "mps").

    Raises DeviceError with a plain message when an explicitly requested device is absent.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(f"Unknown device '{name}': use auto, cpu, cuda, cuda:N or mps.") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"Device '{name}' was requested but no CUDA GPU is available here; use 'auto' or 'cpu'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"Device '{name}' was requested but only {torch.cuda.device_count()} CUDA device(s) exist.")
    elif dev.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise DeviceError(f"Device '{name}' was requested but Apple MPS is not available here; use 'auto' or 'cpu'.")
    elif dev.type != "cpu":
        raise DeviceError(f"Device type '{dev.type}' is not supported: use auto, cpu, cuda or mps.")
    return dev


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (Intel AMX or AVX512-BF16): then bf16 autocast
    about halves a network call (``benchmarks/diffusion.py``); elsewhere bf16 is emulated and slower."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(bool(getattr(torch.cpu, p)()) for p in probes if hasattr(torch.cpu, p))
    except RuntimeError:
        return False


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Reduced-precision autocast for inference where the hardware pays for it: float16 on CUDA,
    bfloat16 on a CPU with native bf16 (:func:`native_bf16_cpu`); otherwise no autocast."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cpu" and native_bf16_cpu():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
