"""Import, once per session, what background jobs would otherwise import lazily mid-job.

The first training or sampling job in a fresh session imports about 800 modules in its worker
thread (``torch.optim`` pulls in ``torch._dynamo`` and sympy; SimpleITK loads its library; the
family trainers register). Module initialisation holds the GIL, so those imports stall the Qt
thread for up to ~0.7 s (``benchmarks/viewer_heartbeat.py``, "cold" phase). Docks that start
jobs call :func:`warm_up` when they open: the imports then run in a daemon thread while the user
is still choosing settings, and jobs start warm. napari's activity dock builds its first progress
bar widget lazily (tens of ms, hundreds under load): :func:`warm_up` makes and closes one on the
Qt thread.
"""

from __future__ import annotations

import importlib
import logging
import threading

log = logging.getLogger(__name__)

# what a training or sampling job imports lazily (measured: modules new in sys.modules after one job)
WARM_MODULES = (
    "torch.optim",
    "torch._dynamo",  # imported by the first optimiser step, with sympy
    "torch.distributed",
    "SimpleITK",
    "napari_medgen.training.trainers",
    "napari_medgen.tasks.train",
    "napari_medgen.tasks.sample",
)

_thread: threading.Thread | None = None


def _import_all() -> None:
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # a job that needs it reports the failure properly
            log.debug("warm-up import of %s failed", name, exc_info=True)


def warm_up() -> threading.Thread:
    """Start the warm-up (only the first call does; call it on the Qt thread); returns the import thread."""
    global _thread
    if _thread is None:
        _thread = threading.Thread(target=_import_all, name="medgen-warm-up", daemon=True)
        _thread.start()
        from napari.utils import progress

        progress(total=0, desc="napari-medgen warm-up").close()
    return _thread
