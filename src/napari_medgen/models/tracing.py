"""Frozen TorchScript graphs for fixed-shape inference loops (the live renderer, diffusion sampling).

A traced and frozen module runs as one graph: no Python between operators (about 0.7x the eager
call's time for the 2D networks on CPU, ``benchmarks/diffusion.py``) and no GIL held while it runs,
so a busy GUI thread does not slow it. Tracing costs about half a second plus two slower first
calls, so callers trace only where a run has enough calls to pay that back. TorchScript is
deprecated in PyTorch but needs no compiler at run time (``torch.compile`` does); where tracing
fails (a network with data-dependent control flow, a PyTorch without TorchScript), callers get
None and stay eager.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch

log = logging.getLogger(__name__)


def freeze_trace(module: torch.nn.Module, *example: torch.Tensor) -> Any | None:
    """``module`` traced on ``example`` inputs (fixed shapes from then on) and frozen; None if that fails.

    The module is put in eval mode. Inputs of other shapes than ``example`` must not be passed to
    the result (the tracer records shapes as constants).
    """
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning, torch.jit.TracerWarning))
        try:
            return torch.jit.freeze(torch.jit.trace(module.eval(), example, check_trace=False))
        except Exception as exc:  # noqa: BLE001 - any tracing failure means: stay eager
            log.info("tracing %s failed (%s: %s); running it eagerly", type(module).__name__, type(exc).__name__, exc)
            return None
