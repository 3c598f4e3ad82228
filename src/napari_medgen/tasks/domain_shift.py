"""Does synthetic data help a segmentation network on scanners it has never seen?

Train the small UNet of :mod:`.segmentation` on labelled slices of one domain and test it on others
(:mod:`.seg_domains`: the phantom in one contrast style, or a user's folders), once per arm and seed:

* ``real``: the real training slices;
* ``augment``: the same with MONAI's conventional augmentation (noise, bias field, gamma contrast,
  histogram shift, blur, elastic; :func:`.segmentation.conventional_augmentation`);
* ``synthetic``: the same plus synthetic slices (:mod:`.target_synthesis`) made from the training
  labels, their elastic deformations and label-VAE samples, imaged by a spade model in the style of
  each unseen test domain (from a few of its unlabelled images) or of the model's style prior;
  half of every batch is synthetic;
* ``reduced``: a fraction (default 25 %) of the real slices plus synthetic slices made the same way
  from that fraction's labels;
* ``reduced-real``: that fraction alone (the reference for ``reduced``; not run by default).

Every arm of a seed trains from the same initialisation for the same steps and batch size; seed
s draws other training subjects (phantom), deformations, VAE samples and styles. Scores: MONAI's
Dice per foreground class on each test domain (mean over slices), their mean, and the "unseen mean"
over the test domains other than the training one; the mean over seeds with a 95 % confidence
interval (Student t over seeds).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_figure
from ..errors import InputError
from ..progress import CancelToken, Progress, Task
from . import seg_domains, target_synthesis
from .segmentation import SegData, dice_per_class, segment, train_unet

ARMS = ("real", "augment", "synthetic", "reduced", "reduced-real")
DEFAULT_ARMS = ("real", "augment", "synthetic", "reduced")
DEFAULT_TRAIN = "phantom:mr_vendor_a"
DEFAULT_TESTS = ("phantom:mr_vendor_a", "phantom:mr_vendor_b", "phantom:mr_vendor_c", "phantom:ct")
UNSEEN = "unseen mean"
_SYNTHETIC_ARMS = ("synthetic", "reduced")
_COLOURS = {"real": "tab:blue", "augment": "tab:orange", "synthetic": "tab:green", "reduced": "tab:olive",
            "reduced-real": "tab:gray"}


@dataclass
class ShiftSettings:
    """The experiment's settings (see the module doc). Domains: ``phantom:STYLE`` or folder paths.

    n_train / n_test / n_style: phantom subjects for training, testing and (unlabelled) style
    references per domain; for folders every training slice is used and the first ``n_style`` cases
    of a test folder give only their images. n_synthetic: elastic copies and, as many, label-VAE
    samples per synthetic arm. label_map: ``VALUE=CLASS`` specs (or "identity") for folders' labels.
    label_vae: a model, None / "none", or "auto" (label_vae_phantom for a phantom training domain, else none).
    """

    train: str = DEFAULT_TRAIN
    tests: tuple[str, ...] = DEFAULT_TESTS
    arms: tuple[str, ...] = DEFAULT_ARMS
    seeds: int = 3
    style: str = "target"
    model: str = "spade_phantom"
    label_vae: str | None = "auto"
    steps: int = 300
    batch_size: int = 8
    fraction: float = 0.25
    n_train: int = 24
    n_test: int = 24
    n_style: int = 4
    n_synthetic: int = 24
    label_map: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.tests, self.arms, self.label_map = tuple(self.tests), tuple(self.arms), tuple(self.label_map)
        if self.label_vae in ("auto", "none", None):
            phantom = self.train.startswith(seg_domains.PHANTOM)
            self.label_vae = "label_vae_phantom" if self.label_vae == "auto" and phantom else None
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms:
            raise InputError(f"Unknown arm '{bad[0] if bad else ''}': choose from {', '.join(ARMS)}.")
        if self.style not in target_synthesis.STYLE_SOURCES:
            raise InputError(f"Unknown style source '{self.style}': use {' or '.join(target_synthesis.STYLE_SOURCES)}.")
        if not 0 < self.fraction < 1:
            raise InputError(f"The reduced-real fraction must be between 0 and 1, got {self.fraction}.")
        for f in ("seeds", "steps", "batch_size", "n_train", "n_test"):
            if int(getattr(self, f)) < 1:
                raise InputError(f"{f} must be at least 1, got {getattr(self, f)}.")
        if self.n_style < 1 and self.style == "target" and self.needs_synthesis:
            raise InputError("Target-style synthesis needs n_style >= 1 unlabelled image per target domain.")
        if not self.tests:
            raise InputError("Name at least one test domain.")
        seg_domains.check_spec(self.train)
        for t in self.tests:
            seg_domains.check_spec(t)
        if not self.unseen:
            raise InputError(f"Every test domain is the training domain '{self.train}': name an unseen one.")

    @property
    def needs_synthesis(self) -> bool:
        return any(a in _SYNTHETIC_ARMS for a in self.arms)

    @property
    def unseen(self) -> tuple[str, ...]:
        """The test domains other than the training domain (the targets of the synthetic styles)."""
        return tuple(t for t in self.tests if t != self.train and Path(t) != Path(self.train))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class ShiftResult:
    """rows: one per arm and domain (incl. "unseen mean"): mean over seeds and 95 % CI half-widths;
    per_seed: one per arm, seed and domain; classes: foreground class names; notes."""

    rows: list[dict[str, Any]]
    per_seed: list[dict[str, Any]]
    classes: list[str]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def row(self, arm: str, domain: str) -> dict[str, Any]:
        return next(r for r in self.rows if r["arm"] == arm and r["domain"] == domain)


def mean_ci(values: list[float] | np.ndarray) -> tuple[float, float]:
    """(mean, half-width of the 95 % Student-t confidence interval) of values over seeds (NaN ignored;
    half-width NaN for fewer than 2 values)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


def _scores(net: Any, test: SegData, n_classes: int, classes: list[str]) -> dict[str, float]:
    d = dice_per_class(segment(net, test.images), test.labels, n_classes)
    return {"dice_mean": float(np.nanmean(d)), **{f"dice_{c}": float(v) for c, v in zip(classes, d)}}


def experiment(settings: ShiftSettings | None = None, *, csv_path: str | Path | None = None,
               plot_path: str | Path | None = None, cancel: CancelToken | None = None) -> Task[ShiftResult]:
    """Generator: run every arm for every seed (module doc); returns the table (and writes CSV / PNG)."""
    from ..data.label_mapping import parse_map
    from ..models.synthesizer import Synthesizer

    s = settings or ShiftSettings()
    cancel = cancel or CancelToken()
    total = s.seeds * len(s.arms) * s.steps
    yield Progress(0, total, f"loading {Path(s.model).name} and the test domains")
    synth = Synthesizer(s.model, "cpu")
    grid = seg_domains.Grid(synth.slice_shape, synth.plane_spacing, synth.label_names)
    explicit, identity = parse_map(s.label_map, grid.names, grid.n_classes)
    n_style = s.n_style if s.style == "target" and s.needs_synthesis else 0
    tests = {t: seg_domains.test_sets(t, grid, s.n_test, n_style if t in s.unseen else 0, explicit, identity)
             for t in s.tests}
    names = {t: seg_domains.domain_name(t) for t in s.tests}
    classes = [grid.names.get(c, str(c)) for c in range(1, grid.n_classes)]
    vae = target_synthesis.load_label_vae(s.label_vae, grid.names) if s.needs_synthesis else None
    target = (target_synthesis.target_styles(synth, [tests[t][1] for t in s.unseen])
              if s.needs_synthesis and s.style == "target" else None)
    per_seed: list[dict[str, Any]] = []
    done = 0
    for seed in range(s.seeds):
        cancel.check()
        real = seg_domains.training_set(s.train, grid, s.n_train, seed, explicit, identity)
        n_red = max(1, round(s.fraction * len(real)))
        reduced = real.subset(np.random.default_rng([seed, 3]).permutation(len(real))[:n_red])
        styles = target if target is not None or not s.needs_synthesis else target_synthesis.prior_styles(
            synth, len(s.unseen), s.n_synthetic, seed)
        for arm in s.arms:
            base = reduced if arm.startswith("reduced") else real
            extra = None
            if arm in _SYNTHETIC_ARMS:
                labels = target_synthesis.label_pool(base.labels, grid.plane_spacing, seed, n_deformed=s.n_synthetic,
                                                     n_vae=s.n_synthetic, vae=vae)
                task = target_synthesis.synthetic_set(synth, labels, styles, grid.names, cancel)
                extra = yield from _relay(task, done, total, f"seed {seed}, {arm}", counts=False)
            task = train_unet(base, grid.n_classes, s.steps, batch_size=s.batch_size, seed=seed, extra=extra,
                              augment=arm == "augment", cancel=cancel, label=f"seed {seed}, {arm}")
            net = yield from _relay(task, done, total, "", counts=True)
            done += s.steps
            row = {"arm": arm, "seed": seed, "n_real": len(base), "n_synthetic": 0 if extra is None else len(extra)}
            seen = {names[t]: _scores(net, tests[t][0], grid.n_classes, classes) for t in s.tests}
            for domain, scores in seen.items():
                per_seed.append({**row, "domain": domain, **scores})
            unseen = [seen[names[t]] for t in s.unseen]
            mean = {k: float(np.nanmean([u[k] for u in unseen])) for k in unseen[0]}
            per_seed.append({**row, "domain": UNSEEN, **mean})
    result = ShiftResult(summarise(per_seed, classes), per_seed, classes, s.as_dict(), _notes(s, tests, synth))
    if csv_path is not None:
        write_csv(result, csv_path)
    if plot_path is not None:
        write_plot(result, plot_path)
    return result


def _relay(task: Task[Any], done: int, total: int, prefix: str, counts: bool) -> Task[Any]:
    """Re-yield a sub-task's progress on the experiment's scale (``counts``: its steps add to ``done``)."""
    while True:
        try:
            p = next(task)
        except StopIteration as stop:
            return stop.value
        message = f"{prefix}: {p.message}" if prefix else p.message
        yield Progress(done + p.step if counts else done, total, message, metrics=p.metrics)


def summarise(per_seed: list[dict[str, Any]], classes: list[str]) -> list[dict[str, Any]]:
    """Mean over seeds and 95 % CI half-width of each score, per arm and domain (in first-seen order)."""
    keys = ["dice_mean"] + [f"dice_{c}" for c in classes]
    rows = []
    for arm, domain in dict.fromkeys((r["arm"], r["domain"]) for r in per_seed):
        runs = [r for r in per_seed if r["arm"] == arm and r["domain"] == domain]
        row: dict[str, Any] = {"arm": arm, "domain": domain, "n_seeds": len(runs), "n_real": runs[0]["n_real"],
                               "n_synthetic": runs[0]["n_synthetic"]}
        for k in keys:
            row[k], row[k.replace("dice_", "ci95_")] = mean_ci([r[k] for r in runs])
        rows.append(row)
    return rows


def _notes(s: ShiftSettings, tests: dict[str, Any], synth: Any) -> list[str]:
    styles = ("styles encoded from " + f"{s.n_style} unlabelled images of each unseen domain" if s.style == "target"
              else "styles drawn from the model's style prior")
    return [f"trained on {seg_domains.domain_name(s.train)}; {s.seeds} seeds x {s.steps} steps x batch {s.batch_size}; "
            f"test slices: " + ", ".join(f"{seg_domains.domain_name(t)} {len(v[0])}" for t, v in tests.items()),
            f"synthetic: {synth.name}, {styles}; label maps: training labels + {s.n_synthetic} elastic + "
            f"{s.n_synthetic if s.label_vae else 0} label-VAE ({Path(s.label_vae).name if s.label_vae else 'none'})",
            "95 % CI: Student t over seeds"]


def table_text(result: ShiftResult) -> str:
    """Plain-text table: arm, domain, mean foreground Dice +- 95 % CI."""
    lines = [f"{'arm':14s} {'domain':14s} {'Dice':>7s} {'95% CI':>8s}"]
    for r in result.rows:
        lines.append(f"{r['arm']:14s} {r['domain']:14s} {r['dice_mean']:7.3f} {r['ci95_mean']:8.3f}")
    return "\n".join(lines)


def write_csv(result: ShiftResult, path: str | Path) -> None:
    """Summary rows (seed "mean", with ci95_* half-widths) then per-seed rows, one CSV."""
    rows = [{**r, "seed": "mean"} for r in result.rows] + result.per_seed
    keys = ["arm", "domain", "seed", "n_seeds"] + [k for k in dict.fromkeys(k for r in rows for k in r)
                                                   if k not in ("arm", "domain", "seed", "n_seeds")]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, restval="")
    w.writeheader()
    w.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def figure(result: ShiftResult, title: str = "") -> Any:
    """Grouped bars: mean foreground Dice per test domain (and the unseen mean) per arm, 95 % CI whiskers."""
    from matplotlib.figure import Figure

    arms = list(dict.fromkeys(r["arm"] for r in result.rows))
    domains = list(dict.fromkeys(r["domain"] for r in result.rows))
    fig = Figure(figsize=(7.5, 3.4), dpi=100)
    ax = fig.subplots()
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        rows = [result.row(arm, d) for d in domains]
        x = np.arange(len(domains)) + (i - (len(arms) - 1) / 2) * width
        err = np.nan_to_num([r["ci95_mean"] for r in rows])
        ax.bar(x, [r["dice_mean"] for r in rows], width, yerr=err, capsize=2, label=arm,
               color=_COLOURS.get(arm, "tab:purple"))
    ax.set_xticks(range(len(domains)), domains, fontsize=8)
    ax.set(ylim=(0, 1), ylabel="Dice (mean foreground)",
           title=title or f"Trained on {seg_domains.domain_name(result.settings['train'])}: Dice on each test domain")
    ax.legend(fontsize=7, ncol=len(arms), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    return fig


def write_plot(result: ShiftResult, path: str | Path, title: str = "") -> None:
    atomic_write_figure(path, figure(result, title))
