"""``medgen demo``: the shipped samples, and what each capability makes of them, in napari or on disk.

With a display it opens napari with every demo volume as a layer and the plugin's widgets docked.
With ``--out DIR`` (no display, napari is not imported) it writes every volume as NIfTI
(``DIR/<name>.nii.gz``) and a PNG montage of their middle axial slices (``DIR/montage.png``).

The volumes come from :data:`DEMO_STEPS`: each step receives every volume made so far (by layer
name) and returns new named volumes. A capability shows its result in the demo by appending one
function to that list.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import options
from ..errors import InputError
from .sample import demo_diffusion
from .synthesize import demo_synthesis

if TYPE_CHECKING:
    import numpy as np

    from ..io.volume import Volume

PLUGIN = "napari-medgen"
DemoStep = Callable[..., "dict[str, Volume]"]  # step(volumes: dict[str, Volume], *, device: str) -> new volumes


def sample_volumes(volumes: dict[str, Volume], *, device: str = "auto") -> dict[str, Volume]:
    """The shipped samples: the MNI152 brain and the thorax phantom (seed 0), each with its labels."""
    from ..data.samples import brain_sample, phantom_sample

    brain, brain_labels = brain_sample()
    phantom, phantom_labels = phantom_sample(seed=0)
    return {"brain": brain, "brain labels": brain_labels, "phantom": phantom, "phantom labels": phantom_labels}


# The demo, in order. Add a capability's result with one line, e.g. synthesis: a step that returns
# {"brain synthetic": ...} made from volumes["brain labels"].
DEMO_STEPS: list[DemoStep] = [
    sample_volumes,
    demo_synthesis,
    demo_diffusion,
]


def demo_volumes(device: str = "auto", steps: list[DemoStep] | None = None,
                 say: Callable[[str], None] = lambda message: None) -> dict[str, Volume]:
    """Run the demo steps in order; return every volume by layer name (insertion order = layer order).
    say: told what each step is about to do (its docstring's first sentence) and how long it took."""
    import time

    volumes: dict[str, Volume] = {}
    for step in DEMO_STEPS if steps is None else steps:
        say(f"{step_summary(step)} ...")
        t0 = time.perf_counter()
        new = step(dict(volumes), device=device)
        say(f"  {', '.join(new) or 'nothing'} ({time.perf_counter() - t0:.1f} s)")
        volumes.update(new)
    return volumes


def step_summary(step: DemoStep) -> str:
    """A demo step's docstring's first sentence, as plain text (e.g. "the shipped samples: ...")."""
    text = " ".join((step.__doc__ or step.__name__).replace("``", "").split())
    text = text.removeprefix("medgen demo step: ")
    return re.split(r"(?<=[a-z)])\. ", text, maxsplit=1)[0].rstrip(".")


def file_stem(name: str) -> str:
    """Layer name -> safe file stem, e.g. "brain labels" -> "brain_labels"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "volume"


# Under each shipped model's result in the montage: the quality-ledger row (benchmarks/quality.py, recorded in the
# card's metrics["ledger"]) that the model's bar is judged on, measured on data held out from its training.
MONTAGE_ROWS = {
    "spade_brain": "SSIM in brain (24 held-out slices) vs lookup table, blur 1 px",
    "spade_phantom": "background spectrum, max ratio to renderer [mr_vendor_b] vs bar (2x)",
    "diffusion_phantom3d": "share of 20 samples with every structure present (worst) vs bar",
}


def ledger_caption(vol: Volume) -> str | None:
    """The montage caption of a shipped model's result: its :data:`MONTAGE_ROWS` row from the card's ledger,
    e.g. "SSIM in brain (24 held-out slices): 0.81 | lookup table, blur 1 px: 0.76"; None for other volumes
    (the model is read from ``metadata["source"]`` of samples or ``metadata["synthesis"]["model"]``)."""
    from ..models.store import load_card

    synthesis = vol.metadata.get("synthesis")
    path = vol.metadata.get("source") or (synthesis.get("model") if isinstance(synthesis, dict) else None)
    row = MONTAGE_ROWS.get(Path(str(path)).name.removesuffix(".json")) if path else None
    values = load_card(path).get("metrics", {}).get("ledger", {}).get(row) if row else None
    if not values:
        return None
    metric, _, baseline = row.partition(" vs ")
    return f"{metric}: {values[0]:.2f} | {baseline}: {values[1]:.2f}"


def middle_slice(vol: Volume) -> np.ndarray:
    """Middle axial (y, x) slice of the first frame, as napari shows it (anterior up, patient left right)."""
    frame = vol.data[0] if vol.is_time_series else vol.data
    return frame[frame.shape[0] // 2]


def write_montage(volumes: dict[str, Volume], path: Path) -> None:
    """PNG grid of every volume's middle axial slice, titled with its name, with correct aspect ratio; a shipped
    model's result has its ledger figure beneath (:func:`ledger_caption`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path

    label_cmap = matplotlib.colors.ListedColormap(["black", *plt.get_cmap("tab10").colors])  # 0 = background
    n = len(volumes)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, vol) in zip(axes.flat, volumes.items()):
        sl = middle_slice(vol)
        aspect = vol.spacing[1] / vol.spacing[0]
        if vol.is_label:
            ax.imshow(sl, cmap=label_cmap, vmin=0, vmax=label_cmap.N - 1, interpolation="nearest", aspect=aspect)
        else:
            ax.imshow(sl, cmap="gray", aspect=aspect)
        ax.set_title(name)
        caption = ledger_caption(vol)
        if caption:
            ax.text(0.5, -0.02, "\n".join(textwrap.wrap(f"held-out: {caption}", 44)), transform=ax.transAxes,
                    ha="center", va="top", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_demo(volumes: dict[str, Volume], out: Path) -> list[Path]:
    """Write each volume as ``out/<name>.nii.gz`` and the montage as ``out/montage.png``; return the paths."""
    from ..io.writers import write_volume

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, vol in volumes.items():
        path = out / f"{file_stem(name)}.nii.gz"
        write_volume(vol, path)
        paths.append(path)
    montage = out / "montage.png"
    write_montage(volumes, montage)
    return paths + [montage]


def importable_widgets() -> tuple[list[str], list[str]]:
    """Display names of the manifest's widgets whose classes import, and messages for those that do not."""
    import npe2

    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    commands = {c.id: c.python_name for c in manifest.contributions.commands or []}
    ok, problems = [], []
    for w in manifest.contributions.widgets or []:
        module, _, attr = (commands.get(w.command) or ":").partition(":")
        try:
            getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            problems.append(f"widget '{w.display_name}' is not available: {exc}")
        else:
            ok.append(w.display_name)
    return ok, problems


def dock_widgets(viewer: Any) -> list[str]:
    """Dock every importable widget of the manifest (tabbed) as napari's Plugins menu does; return a
    message for each widget that could not be imported or docked."""
    names, problems = importable_widgets()
    for display_name in names:
        try:
            viewer.window.add_plugin_dock_widget(PLUGIN, display_name, tabify=True)
        except Exception as exc:  # a broken widget must not keep the demo from opening; it is reported
            problems.append(f"widget '{display_name}' could not be docked: {type(exc).__name__}: {exc}")
    return problems


def populate_viewer(viewer: Any, volumes: dict[str, Volume]) -> list[str]:
    """Add the volumes as layers and dock the plugin's widgets; return the docking problems."""
    from ..widgets.common import add_volume

    for name, vol in volumes.items():
        add_volume(viewer, vol, name)
    return dock_widgets(viewer)


def has_display() -> bool:
    """False on Linux/BSD without an X11 or Wayland display; True elsewhere."""
    if not sys.platform.startswith(("linux", "freebsd")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    if args.out is None and not has_display():
        raise InputError("no display found (DISPLAY is not set): use `medgen demo --out DIR` to write the "
                         "demo to files instead, or run under xvfb-run")
    say = (lambda message: None) if args.quiet else (lambda message: print(f"medgen demo: {message}", file=sys.stderr,
                                                                         flush=True))
    say("making the demo volumes: the shipped samples, then what each capability makes of them "
        + (f"(written to {args.out})" if args.out is not None else "(then napari opens)"))
    volumes = demo_volumes(args.device, say=say)
    if args.out is not None:
        from ..atomic import replaced_folder

        with replaced_folder(args.out, overwrite=args.overwrite, note="medgen demo") as tmp:
            written = write_demo(volumes, tmp)
        for path in written:
            print(Path(args.out) / path.name)
        return 0
    say("opening napari ...")
    import napari

    viewer = napari.Viewer(title="napari-medgen demo")
    for problem in populate_viewer(viewer, volumes):
        print(f"medgen demo: {problem}", file=sys.stderr)
    from ..widgets.first_view import show_first_view

    show_first_view(viewer)
    napari.run()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="open the sample data in napari with the plugin's widgets, or write it to files",
                              description=__doc__.splitlines()[0])
    options.output(p, "folder", "write the demo volumes (NIfTI) and a PNG montage to DIR instead of opening napari",
                   required=False, metavar="DIR")
    p.set_defaults(func=run)
