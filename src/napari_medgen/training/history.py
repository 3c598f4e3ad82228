"""Loss history of a training run: ``history.jsonl`` in the work folder, and its loss-curve plot.

One JSON object per line: ``{"step": 12, "loss": 0.31, ...}`` (step = optimisation steps done,
1-based; the other keys are the losses ``train_step`` returned). Plots use matplotlib's Agg
canvas only (no GUI backend), so this works headless; the training widget draws with
:func:`draw_losses` on its own Qt canvas. Labels avoid mathtext (not thread-safe).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import LogFormatter

from ..atomic import atomic_write_bytes, atomic_write_with

FILE = "history.jsonl"


class LossHistory:
    """Append-only loss log in ``workdir/history.jsonl``, truncated on resume so no step repeats.
    write=False: keep the records in memory only (ranks other than 0 of a distributed run)."""

    def __init__(self, workdir: str | Path, write: bool = True):
        self.path = Path(workdir) / FILE
        self.write = write
        self.records: list[dict[str, float]] = self._read()

    def _read(self) -> list[dict[str, float]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
            if isinstance(rec, dict) and isinstance(rec.get("step"), int):
                records.append(rec)
        return records

    def truncate(self, step: int) -> None:
        """Keep only records up to ``step`` (inclusive); rewrites the file atomically."""
        self.records = [r for r in self.records if r["step"] <= step]
        if not self.write:
            return
        text = "".join(json.dumps(r) + "\n" for r in self.records)
        atomic_write_bytes(self.path, text.encode())

    def append(self, step: int, losses: dict[str, float]) -> dict[str, Any]:
        rec = {"step": int(step), **{k: float(v) for k, v in losses.items()}}
        self.records.append(rec)
        if not self.write:
            return rec
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        return rec


def loss_series(records: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """{loss name: (steps, values)} from history records, skipping non-finite values."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for rec in records:
        for key, value in rec.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                steps, values = series.setdefault(key, ([], []))
                steps.append(rec["step"])
                values.append(float(value))
    return series


def smoothing_window(n: int) -> int:
    """Steps in the running mean drawn over ``n`` loss values: about 2 % of them, 1 (none) under 100."""
    return 1 if n < 100 else max(2, n // 50)


def running_mean(values: list[float], window: int) -> np.ndarray:
    """(n,) trailing mean of ``values`` over ``window`` steps (fewer at the start)."""
    v = np.asarray(values, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def draw_losses(ax: Any, records: list[dict[str, Any]], title: str = "") -> None:
    """Draw every loss against step on a matplotlib Axes (log y-axis when all values are positive): each step's
    value faintly and, once there are 100 or more, its trailing running mean (:func:`smoothing_window`) over it."""
    ax.clear()
    series = loss_series(records)
    for name, (steps, values) in sorted(series.items()):
        window = smoothing_window(len(values))
        if window == 1:
            ax.plot(steps, values, label=name, linewidth=1)
            continue
        (raw,) = ax.plot(steps, values, linewidth=0.5, alpha=0.3)
        ax.plot(steps, running_mean(values, window), color=raw.get_color(), linewidth=1.5,
                label=f"{name} (mean of {window} steps)")
    all_values = [v for _, vals in series.values() for v in vals]
    if all_values and min(all_values) > 0:
        ax.set_yscale("log")
        # plain-text tick labels: matplotlib's mathtext parser is not thread-safe, and the loss PNG may be
        # drawn in a worker thread while the training dock draws its live plot
        ax.yaxis.set_major_formatter(LogFormatter())
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    if series:
        ax.legend(loc="upper right", fontsize="small")
    ax.grid(True, alpha=0.3)


def save_loss_plot(records: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Write the loss curves as a PNG (atomically) and return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    draw_losses(fig.add_subplot(1, 1, 1), records, title)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
    return Path(path)
