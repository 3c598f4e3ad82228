"""Import, once per session, what a dock's background jobs would otherwise import lazily mid-job.

A job's first run in a fresh session imports modules in its worker thread, and module
initialisation holds the GIL, so those imports stall the Qt thread (up to ~0.7 s for the ~800
modules an in-process optimiser step pulls in: ``torch._dynamo`` with sympy;
``benchmarks/viewer_heartbeat.py``). Each dock names what its jobs import in the viewer's process
and calls :func:`warm_up` when it opens: the imports run in a daemon thread while the user is still
choosing settings, and jobs start warm. Docks whose jobs run elsewhere name less: training runs in
a child process, so the Train dock warms only what the parent side loads, and opening it never
imports sympy into the viewer. napari's activity dock builds its first progress bar widget lazily
(tens of ms, hundreds under load): the first :func:`warm_up` makes and closes one on the Qt thread.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Iterable

log = logging.getLogger(__name__)

MODEL_FAMILIES = ("napari_medgen.models.families",)  # every model family a job may load
OPTIMISER = ("torch._dynamo",)  # imported (with sympy) by the first optimiser step of an in-process job
TRAINING_PARENT = ("multiprocessing.popen_spawn_posix",)  # train_in_child's side (the dock imports the trainers)

_threads: list[threading.Thread] = []
_requested: set[str] = set()
_bar_warmed = [False]


def _import_all(names: list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # a job that needs it reports the failure properly
            log.debug("warm-up import of %s failed", name, exc_info=True)


def warm_up(modules: Iterable[str] = ()) -> threading.Thread | None:
    """Import ``modules`` not yet imported or requested in a daemon thread (call on the Qt thread);
    returns that thread, or None when there is nothing new to import."""
    if not _bar_warmed[0]:
        from napari.utils import progress

        _bar_warmed[0] = True
        progress(total=0, desc="napari-medgen warm-up").close()
    modules = tuple(modules)  # read twice below
    names = [m for m in modules if m not in _requested and m not in sys.modules]
    _requested.update(modules)
    if not names:
        return None
    thread = threading.Thread(target=_import_all, args=(names,), name="medgen-warm-up", daemon=True)
    _threads.append(thread)
    thread.start()
    return thread


def warming() -> bool:
    """Whether any warm-up import thread is still running."""
    return any(t.is_alive() for t in _threads)
