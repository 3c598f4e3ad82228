"""Compute-device selection: ``auto`` picks CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

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
