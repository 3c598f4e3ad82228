"""Make the docs' screenshots: ``xvfb-run -a -s "-screen 0 1280x1024x24" python scripts/screenshots.py [SCENE ...]``.

Each scene opens a fresh napari window, loads what it needs, docks a widget, optionally runs a
scripted action, and the whole window is saved as ``docs/images/<scene>.png``. To document a
widget, add one function decorated with ``@scene("<name>")`` (see ``getting_started``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402  (before Qt, as in the tests)

torch.set_num_threads(1)

import napari  # noqa: E402
import numpy as np  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_medgen.cli.demo import PLUGIN  # noqa: E402
from napari_medgen.widgets.common import add_volume, layer_to_volume_of  # noqa: E402

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
WINDOW_SIZE = (1280, 800)

SCENES: dict[str, Callable[[napari.Viewer], None]] = {}


def scene(name: str) -> Callable[[Callable[[napari.Viewer], None]], Callable[[napari.Viewer], None]]:
    """Register ``fn(viewer)`` as the scene saved to docs/images/<name>.png."""

    def register(fn: Callable[[napari.Viewer], None]) -> Callable[[napari.Viewer], None]:
        SCENES[name] = fn
        return fn

    return register


def load_brain(viewer: napari.Viewer) -> None:
    """The brain sample and its tissue labels, as the File > Open Sample menu loads them."""
    from napari_medgen.data.samples import brain_sample

    image, labels = brain_sample()
    add_volume(viewer, image, "brain")
    add_volume(viewer, labels, "brain labels").contour = 1


def load_phantom(viewer: napari.Viewer) -> None:
    from napari_medgen.data.samples import phantom_sample

    image, labels = phantom_sample(seed=0)
    add_volume(viewer, image, "phantom")
    add_volume(viewer, labels, "phantom labels").contour = 1


def dock(viewer: napari.Viewer, display_name: str, tabify: bool = False):
    """Dock the plugin widget called ``display_name`` (as in napari.yaml); return the widget."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, display_name, tabify=tabify)
    return widget


def settle(seconds: float = 0.5, until: Callable[[], bool] | None = None, timeout: float = 300.0) -> None:
    """Let Qt draw; with ``until``, keep processing events until it is true (e.g. a task finished)."""
    app = QApplication.instance()
    start = time.monotonic()
    while until is not None and not until() and time.monotonic() - start < timeout:
        app.processEvents()
        time.sleep(0.02)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


@scene("getting_started")
def getting_started(viewer: napari.Viewer) -> None:
    """The brain sample with its labels and the plugin's widgets docked (tabbed)."""
    from napari_medgen.cli.demo import dock_widgets

    for problem in dock_widgets(viewer):
        print(f"getting_started: {problem}", file=sys.stderr)
    load_brain(viewer)
    show_tab(viewer, "Synthesize")
    focus(viewer, "brain")


def show_tab(viewer: napari.viewer.Viewer, display_name: str) -> None:
    """Bring the docked widget ``display_name`` to the front of its tab group."""
    settle(0.2)
    for key, dock_widget in viewer.window._wrapped_dock_widgets.items():
        if key == f"{display_name} ({PLUGIN})":
            dock_widget.raise_()
            return
    raise KeyError(f"no docked widget called {display_name!r}")


def focus(viewer: napari.viewer.Viewer, layer_name: str, fill: float = 0.9) -> None:
    """Centre the 2D view on a layer's middle slice and zoom so that it fills the canvas."""
    settle(0.2)
    lo, hi = viewer.layers[layer_name].extent.world
    mid = (lo + hi) / 2
    viewer.dims.set_point(range(len(mid)), mid)
    viewer.scene.camera.center = tuple(mid[-2:])
    canvas = viewer.window._qt_viewer.canvas.size
    viewer.scene.camera.zoom = fill * min(canvas[0] / (hi[-2] - lo[-2]), canvas[1] / (hi[-1] - lo[-1]))
    viewer.layers.selection.active = viewer.layers[layer_name]


@scene("directions")
def directions(viewer: napari.Viewer) -> None:
    """The latent-directions dock on the shipped phantom VAE: its saved directions, one slider moved."""
    widget = dock(viewer, "Latent directions")
    widget.model.setCurrentText("vae_phantom")
    widget.random_base()
    if widget.sliders:
        widget.sliders[0].setValue(20)
    settle(0.5)


def finished(handle) -> bool:
    """Whether a task started through ``run_task`` is over (a None handle: the dock refused to start)."""
    if handle is None:
        raise RuntimeError("the dock did not start its task (see the notification above)")
    return not handle.running


def run_and_wait(handle, timeout: float = 300.0) -> None:
    """Process Qt events until the task behind ``handle`` has ended; fail unless it ended "done"."""
    settle(0.5, until=lambda: finished(handle), timeout=timeout)
    if handle.status != "done":
        raise RuntimeError(f"{handle.name} ended {handle.status!r}: {handle.error}")


def grid(viewer: napari.viewer.Viewer, names: list[str], slice_of: str, shape: tuple[int, int] | None = None) -> None:
    """Show only the layers ``names``, one per grid cell (default 1 x n), at the middle slice of ``slice_of``."""
    for layer in viewer.layers:
        layer.visible = layer.name in names
    viewer.canvas.grid.shape = shape or (1, len(names))
    viewer.canvas.grid.enabled = True
    lo, hi = viewer.layers[slice_of].extent.world
    viewer.dims.set_point(range(len(lo)), (lo + hi) / 2)
    settle(0.3)
    viewer.reset_view()


def resize(viewer: napari.viewer.Viewer, width: int, height: int) -> None:
    """Resize the window (pixels; the Xvfb screen is 1280 x 1024) for a dock that needs more room."""
    viewer.window._qt_window.resize(width, height)
    settle(0.3)


@scene("synthesis_widget")
def synthesis_widget(viewer: napari.Viewer) -> None:
    """Synthesize dock on the brain sample: whole volume with spade_brain; real, labels, synthetic side by side."""
    load_brain(viewer)
    viewer.layers["brain labels"].contour = 0
    widget = dock(viewer, "Synthesize")
    widget.labels_combo.setCurrentText("brain labels")
    widget.model_combo.setCurrentText("spade_brain")
    widget.scope.setCurrentText("whole volume")
    run_and_wait(widget.synthesize())
    grid(viewer, ["brain", "brain labels", "brain labels synthetic"], "brain")


@scene("deform")
def deform(viewer: napari.Viewer) -> None:
    """Deform labels dock: elastic deformation (10 mm) of the phantom labels; input and result side by side."""
    load_phantom(viewer)
    widget = dock(viewer, "Deform labels")
    widget.labels_combo.setCurrentText("phantom labels")
    widget.method.setCurrentText("elastic")
    widget.magnitude_mm.setValue(10.0)
    run_and_wait(widget.run())
    viewer.layers["phantom labels"].contour = 0
    grid(viewer, ["phantom labels", "phantom labels elastic"], "phantom labels")


@scene("sample")
def sample(viewer: napari.Viewer) -> None:
    """Sample (diffusion) dock: four samples of the shipped diffusion_brain2d with its default sampler (DDPM 1000),
    stacked on the layer's first axis."""
    widget = dock(viewer, "Sample (diffusion)")
    widget.model.setCurrentText("diffusion_brain2d")
    widget.n.setValue(4)
    run_and_wait(widget.sample())
    stack = layer_to_volume_of(viewer.layers["diffusion sample"])
    names = [f"sample {k}" for k in range(stack.data.shape[0])]
    for k, name in enumerate(names):  # one layer per sample, only to show all of them at once
        add_volume(viewer, stack.frame(k), name)
    grid(viewer, names, names[0], shape=(2, 2))


@scene("longitudinal")
def longitudinal(viewer: napari.Viewer) -> None:
    """Longitudinal dock, default real-scan path (no model) on a phantom CT: 5 follow-ups, 3-month halving time."""
    from napari_medgen.data import phantom

    image, labels = phantom.make_phantom(3_000_500, shape=(48, 160, 160), spacing=(2.0, 2.0, 2.5), style="ct",
                                         tumour_radius_mm=15.0)
    add_volume(viewer, image, "baseline", contrast_limits=(-1000.0, 400.0))
    add_volume(viewer, labels, "baseline labels").contour = 1
    widget = dock(viewer, "Longitudinal")
    widget.image_layer.setCurrentText("baseline")
    widget.labels_layer.setCurrentText("baseline labels")
    widget.predict()
    settle(0.5, until=lambda: widget.result is not None)
    if widget.result is None:
        raise RuntimeError(f"Predict gave no result: {widget.panel.status.text()}")
    viewer.layers["follow-ups labels"].contour = 1
    resize(viewer, 1280, 1000)
    grid(viewer, ["baseline", "follow-ups", "follow-ups labels", "follow-ups difference"], "follow-ups", shape=(2, 2))
    viewer.dims.set_current_step(0, widget.time_point.value())
    z = int(np.argmax((np.asarray(labels.data) == 7).sum((1, 2))))
    viewer.dims.set_current_step(1, z)


@scene("train")
def train(viewer: napari.Viewer) -> None:
    """Train dock: a short spade run on the thorax phantom sample, to the end: loss plot and preview."""
    import tempfile

    widget = dock(viewer, "Train")
    widget.family.setCurrentText("spade")
    widget.source.setCurrentText("Sample: thorax phantom")
    for field, value in ((widget.steps, 40), (widget.checkpoint_every, 20), (widget.preview_every, 10),
                         (widget.batch_size, 2)):
        field.setValue(value)
    widget.workdir.setText(str(Path(tempfile.mkdtemp(prefix="medgen-screenshot-")) / "run"))
    run_and_wait(widget.start())
    focus(viewer, "training preview")


@scene("evaluation")
def evaluation(viewer: napari.Viewer) -> None:
    """Evaluate dock, Quality tab: phantom subject 0 (real) against spade_phantom's image from its labels."""
    from napari_medgen.data.samples import phantom_sample
    from napari_medgen.progress import run_to_completion
    from napari_medgen.models.store import resolve_model
    from napari_medgen.tasks.synthesize import synthesize

    image, labels = phantom_sample(seed=0)
    add_volume(viewer, image, "phantom")
    add_volume(viewer, run_to_completion(synthesize(labels, resolve_model("spade_phantom"))), "phantom synthetic")
    widget = dock(viewer, "Evaluate")
    widget.real_source.setCurrentText("phantom")
    widget.synthetic_source.setCurrentText("phantom synthetic")
    run_and_wait(widget.run_quality())
    resize(viewer, 1280, 1000)
    grid(viewer, ["phantom", "phantom synthetic"], "phantom", shape=(2, 1))


def shoot(name: str) -> Path:
    """Run one scene in a fresh window and save docs/images/<name>.png."""
    viewer = napari.Viewer(title=f"napari-medgen: {name}")
    try:
        resize(viewer, *WINDOW_SIZE)
        viewer.reset_view()
        SCENES[name](viewer)
        settle(1.0)
        IMAGES.mkdir(parents=True, exist_ok=True)
        path = IMAGES / f"{name}.png"
        viewer.screenshot(str(path), canvas_only=False)
        return path
    finally:
        viewer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", nargs="*", metavar="SCENE", help=f"scenes to make (default: all): {', '.join(sorted(SCENES))}")
    args = parser.parse_args(argv)
    unknown = set(args.scenes) - set(SCENES)
    if unknown:
        parser.error(f"unknown scene(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(SCENES))}")
    for name in args.scenes or sorted(SCENES):
        print(shoot(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
