"""Compute devices: ``auto`` picks CUDA, then Apple MPS, then CPU; and how many CPU threads torch uses.

Importing this module does not import torch (the CLI calls :func:`configure_threads` before any
task loads torch, so that the OpenMP settings take effect).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DeviceError

if TYPE_CHECKING:
    import torch

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads counted once; Linux reads the
    sysfs topology of the CPUs in its affinity mask), else the logical CPU count."""
    if not hasattr(os, "sched_getaffinity"):
        return usable_cpus()
    allowed = os.sched_getaffinity(0)
    cores = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:
            return len(allowed)
    return len(cores) or len(allowed)


def cpu_model() -> str:
    """The CPU's model name (Linux: ``/proc/cpuinfo``; elsewhere ``platform.processor()``), or "unknown CPU"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_threads() -> int:
    """Torch CPU threads when the user set none: the physical cores less those other programs keep busy
    (the 1-minute load average, rounded down), at least 1. A thread that waits for a core held by
    another program stalls every parallel operator: on a busy 2-core machine 2 threads ran a
    convolution stack 5-8x slower than 1 (docs/getting_started.md)."""
    cores = physical_cores()
    try:
        busy = math.floor(os.getloadavg()[0])
    except (AttributeError, OSError):  # no load average (Windows)
        busy = 0
    return max(1, cores - busy)


def configure_threads(threads: int | None = None) -> int:
    """Choose this process's torch CPU threads once, and return the count.

    threads: an explicit count (``medgen --threads``); else ``$OMP_NUM_THREADS`` when the user set
    it; else :func:`default_threads`. Before torch is imported the count goes into
    ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (read by torch, numpy's BLAS and child processes), and idle
    OpenMP threads are told to sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE`` unless set). Once
    torch is loaded (the CLI called from a Python session that set its own threads), only an
    explicit count changes it, through ``torch.set_num_threads``.
    """
    explicit = threads is not None
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if explicit:
            torch.set_num_threads(max(1, int(threads)))
        return torch.get_num_threads()
    if threads is None:
        user = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(user) if user.isdigit() and int(user) > 0 else default_threads()
    threads = max(1, int(threads))
    for name in _THREAD_VARIABLES:
        if explicit or name not in os.environ:
            os.environ[name] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return threads


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """Return a usable :class:`torch.device` for ``name`` ("auto", "cpu", "cuda", "cuda:1", "mps").

    Raises DeviceError with a plain message when an explicitly requested device is absent.
    """
    import torch

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
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(bool(getattr(torch.cpu, p)()) for p in probes if hasattr(torch.cpu, p))
    except RuntimeError:
        return False


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Reduced-precision autocast for inference where the hardware pays for it: float16 on CUDA,
    bfloat16 on a CPU with native bf16 (:func:`native_bf16_cpu`); otherwise no autocast."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    if device.type == "cpu" and native_bf16_cpu():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lower_thread_priority(by: int) -> int | None:
    """Lower the calling thread's OS priority by ``by`` nice steps (Linux, where nice is per thread), so
    that other threads (the viewer's) get a core first; returns the previous nice value (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    try:
        old = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, old + by))
    except OSError:
        return None
    return old


def restore_thread_priority(old: int | None) -> None:
    """Give the calling (pooled) thread back its nice value ``old``; unprivileged users may not raise
    priority again, in which case the thread stays lowered until its pool retires it."""
    if old is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), old)
        except OSError:
            pass
