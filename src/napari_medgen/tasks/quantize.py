"""Resource trade-off of a model: fp32 vs bf16 vs int8 post-training quantisation, measured on CPU.

A *workload* is a model's core network as one ``nn.Module`` whose ``forward(*inputs)`` does the
work (spade: the generator's decoder from one-hot labels + style; anomaly_ae: encode-decode), a
fixed batch of inputs drawn from the phantom/brain samples, and a post-processing step to images
``(n, y, x)``. Each precision converts the core module:

* ``fp32``: as trained (the reference);
* ``bf16``: weights and activations in bfloat16 (inputs cast in, outputs cast back);
* ``int8_dynamic``: ``torch.ao`` dynamic quantisation (Linear layers only: convolutions stay fp32);
* ``int8_static``: ``torch.ao`` FX graph-mode static quantisation (x86/fbgemm backend, per-channel
  int8 weights and activations, calibrated on the input batch). MONAI networks do not always
  trace or run quantised; the failure is then reported in the table as the measured reason.

Measured per precision: weight size (bytes of the state dict's tensors, MB), peak resident memory added
while running the batch once (Linux ``VmHWM`` after a reset and ``malloc_trim``; it includes
allocator and oneDNN scratch memory; NaN elsewhere), median time per sample
(ms), and quality lost against the fp32 output: SSIM, Fréchet distance of the feature
extractor's features, and (with a ``segmenter``) the Dice of a segmentation model on the output
against the input labels.
"""

from __future__ import annotations

import copy
import ctypes
import csv
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write_bytes, atomic_write_figure
from ..errors import InputError
from ..models.families import load_model
from ..progress import CancelToken, Progress, Task
from .evaluate import frechet_distance, paired_ssim_psnr

PRECISIONS = ("fp32", "bf16", "int8_dynamic", "int8_static")
Segmenter = Callable[[np.ndarray], np.ndarray]


@dataclass
class Workload:
    """core(*inputs) -> tensor; post(tensor) -> images (n, y, x); labels (n, y, x) for downstream Dice or None."""

    name: str
    core: torch.nn.Module
    inputs: tuple[torch.Tensor, ...]
    post: Callable[[torch.Tensor], np.ndarray]
    labels: np.ndarray | None = None


@dataclass
class QuantResult:
    """rows: one dict per precision (see :data:`COLUMNS`); notes: plain-words remarks."""

    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


COLUMNS = ("precision", "status", "weights_mb", "size_ratio", "peak_mem_mb", "ms_per_sample", "speedup",
           "ssim_vs_fp32", "fd_vs_fp32", "dice")


class _SpadeDecode(torch.nn.Module):
    def __init__(self, generator: torch.nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, onehot: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(onehot, z)


class _Reconstruct(torch.nn.Module):
    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.decode_forward(self.vae.encode_forward(x)[0], use_sigmoid=True)


def _label_slices(n_classes: int, shape: tuple[int, int], n: int) -> np.ndarray:
    """n label slices (n, y, x): 2D phantoms (8 classes) or the brain sample's central slices."""
    if n_classes == 8:
        from ..data.phantom import make_labels

        return np.concatenate([make_labels(seed=3_000_000 + i, shape=(1, *shape)).data for i in range(n)])
    from ..data.samples import brain_sample
    from ..training.label_vae_trainer import fit_slices

    lab = np.asarray(brain_sample()[1].data)
    mid = len(lab) // 2
    return fit_slices(lab[mid - n // 2: mid - n // 2 + n], shape)


def workload(model: str | Path, n_samples: int = 8) -> Workload:
    """The core network and a fixed input batch of a ``spade`` or ``anomaly_ae`` model."""
    modules, card = load_model(model, "cpu")
    family = card["family"]
    shape = tuple(int(s) for s in card.get("shape", card["network"].get("in_shape", (128, 128))))
    if family == "spade":
        from ..data.normalize import denormalize

        n_classes = int(card["network"]["n_classes"])
        labels = _label_slices(n_classes, shape, n_samples)
        onehot = torch.nn.functional.one_hot(torch.from_numpy(labels.astype(np.int64)), n_classes).movedim(-1, 1).float()
        z = torch.as_tensor(np.asarray(card.get("style_mean", np.zeros(card["network"]["z_dim"])), np.float32))
        return Workload(Path(model).stem, _SpadeDecode(modules["generator"]).eval(),
                        (onehot, z.reshape(1, -1).expand(n_samples, -1).contiguous()),
                        lambda t: denormalize(t[:, 0].float().numpy(), card["normalization"]).astype(np.float32),
                        labels)
    if family == "anomaly_ae":
        from ..training.anomaly_trainer import normal_phantom

        x = np.stack([normal_phantom(3_000_000 + i, shape, ["mr_vendor_a"]) for i in range(n_samples)])
        return Workload(Path(model).stem, _Reconstruct(modules["model"]).eval(), (torch.from_numpy(x)[:, None],),
                        lambda t: t[:, 0].float().numpy())
    raise InputError(f"Model '{model}' is of family '{family}': the resource trade-off runs spade or anomaly_ae models.")


def convert(core: torch.nn.Module, precision: str, inputs: tuple[torch.Tensor, ...]) -> torch.nn.Module:
    """A copy of ``core`` in ``precision`` (see module doc); the fp32 module is left untouched.

    The copy is FX-traced where possible, so every precision keeps exactly the submodules the
    computation uses (e.g. spade's style encoder is not part of decoding) and sizes compare alike.
    """
    m = copy.deepcopy(core).eval()
    try:
        m = torch.fx.symbolic_trace(m)
    except Exception:  # untraceable networks are measured whole  # noqa: BLE001
        pass
    if precision == "fp32":
        return m
    if precision == "bf16":
        return _Cast(m.to(torch.bfloat16), torch.bfloat16)
    if precision == "int8_dynamic":
        return torch.ao.quantization.quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)
    if precision == "int8_static":
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "x86"
        prepared = prepare_fx(m, get_default_qconfig_mapping("x86"), example_inputs=inputs)
        with torch.no_grad():
            prepared(*inputs)  # calibration
        return convert_fx(prepared)
    raise InputError(f"Unknown precision '{precision}' (known: {', '.join(PRECISIONS)}).")


class _Cast(torch.nn.Module):
    """Runs a module in ``dtype``: floating inputs cast in, the output cast back to float32."""

    def __init__(self, module: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.module(*(t.to(self.dtype) if t.is_floating_point() else t for t in inputs)).float()


def weights_mb(module: torch.nn.Module) -> float:
    """Bytes of every tensor in the state dict (quantised and packed weights included), in MB."""
    def nbytes(obj: Any) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, (tuple, list)):
            return sum(nbytes(o) for o in obj)
        return 0

    return sum(nbytes(v) for v in module.state_dict().values()) / 1e6


def _proc_kb(key: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc), so that the next peak is this run's own."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run_measured(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], repeats: int) -> tuple[torch.Tensor, float, float]:
    """(output, median seconds per run, peak MB of resident memory added during one run)."""
    with torch.no_grad():
        out = module(*inputs)  # warm-up (oneDNN kernels, allocator)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            module(*inputs)
            times.append(time.perf_counter() - t0)
        _trim_heap()
        base = _proc_kb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak-RSS counter (Linux)
            module(*inputs)
            peak = (_proc_kb("VmHWM") - base) / 1024
        except OSError:
            peak = float("nan")
    return out, float(np.median(times)), peak


def dice(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean foreground Dice (MONAI) of predicted vs true label slices (n, y, x)."""
    from monai.metrics import compute_dice

    n = int(max(pred.max(), labels.max())) + 1
    oh = lambda a: torch.nn.functional.one_hot(torch.from_numpy(a.astype(np.int64)), n).movedim(-1, 1)  # noqa: E731
    d = compute_dice(oh(pred), oh(labels), include_background=False, ignore_empty=True)
    return float(torch.nanmean(d))


def quantize(model: str | Path, *, precisions: tuple[str, ...] = PRECISIONS, n_samples: int = 8, repeats: int = 3,
             extractor: Any = "default", segmenter: Segmenter | None = None, csv_path: str | Path | None = None,
             plot_path: str | Path | None = None, cancel: CancelToken | None = None) -> Task[QuantResult]:
    """Generator: measure each precision of ``model`` on CPU (module doc); returns a QuantResult.

    extractor: feature extractor for the Fréchet distance ("default", a path, a FeatureExtractor, or
    None to skip). segmenter: images (n, y, x) -> labels (n, y, x) for downstream Dice (spade only).
    """
    from ..models.features import FeatureExtractor, load_extractor

    cancel = cancel or CancelToken()
    yield Progress(0, len(precisions) + 1, "loading model and inputs")
    w = workload(model, n_samples)
    ext = None if extractor is None else extractor if isinstance(extractor, FeatureExtractor) else load_extractor(extractor)
    rows: list[dict[str, Any]] = []
    ref: dict[str, Any] = {}
    notes = [f"{w.name}: {n_samples} samples per batch, {repeats} timed runs, torch threads {torch.get_num_threads()}"]
    for i, prec in enumerate(("fp32",) + tuple(p for p in precisions if p != "fp32")):
        cancel.check()
        yield Progress(i + 1, len(precisions) + 1, f"running {prec}")
        row: dict[str, Any] = {c: float("nan") for c in COLUMNS}
        row.update(precision=prec, status="ok")
        try:
            m = convert(w.core, prec, w.inputs)
            out, sec, peak = run_measured(m, w.inputs, repeats)
            images = w.post(out)
        except Exception as exc:  # a backend that cannot run this network: the reason is the measurement
            row["status"] = f"not supported: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            rows.append(row)
            continue
        row.update(weights_mb=weights_mb(m), peak_mem_mb=peak, ms_per_sample=1000 * sec / n_samples)
        if prec == "fp32":
            ref = {"images": images, "mb": row["weights_mb"], "ms": row["ms_per_sample"],
                   "feats": ext(images) if ext is not None else None}
        row.update(size_ratio=ref["mb"] / row["weights_mb"], speedup=ref["ms"] / row["ms_per_sample"],
                   ssim_vs_fp32=float(paired_ssim_psnr(ref["images"], images)[0].mean()))
        if ext is not None:
            row["fd_vs_fp32"] = 0.0 if prec == "fp32" else frechet_distance(ref["feats"], ext(images))
        if segmenter is not None and w.labels is not None:
            row["dice"] = dice(segmenter(images), w.labels)
        rows.append(row)
    result = QuantResult(rows, notes)
    if csv_path is not None:
        write_csv(result, csv_path)
    if plot_path is not None:
        write_plot(result, plot_path)
    yield Progress(len(precisions) + 1, len(precisions) + 1, "done")
    return result


def format_table(result: QuantResult) -> str:
    """The table as aligned plain text (what benchmarks/quantization.py and the CLI print)."""
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cols = [c for c in COLUMNS if c != "status"]
    lines = ["  ".join(f"{c:>13s}" for c in cols)]
    for r in result.rows:
        lines.append("  ".join(f"{fmt(r[c]):>13s}" for c in cols))
    lines += [f"{r['precision']}: {r['status']}" for r in result.rows if r["status"] != "ok"]
    return "\n".join(lines + result.notes)


def write_csv(result: QuantResult, path: str | Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS))
    w.writeheader()
    w.writerows(result.rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def figure(result: QuantResult) -> Any:
    """Matplotlib Figure: weight size, time per sample and SSIM vs fp32 per precision."""
    from matplotlib.figure import Figure

    rows = [r for r in result.rows if r["status"] == "ok"]
    fig = Figure(figsize=(9, 3), dpi=100)
    names = [r["precision"] for r in rows]
    for ax, key, title in zip(fig.subplots(1, 3), ("weights_mb", "ms_per_sample", "ssim_vs_fp32"),
                              ("weights (MB)", "time per sample (ms)", "SSIM vs fp32")):
        ax.bar(range(len(rows)), [r[key] for r in rows], color="tab:purple")
        ax.set_xticks(range(len(rows)), names, fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def write_plot(result: QuantResult, path: str | Path) -> None:
    atomic_write_figure(path, figure(result))
