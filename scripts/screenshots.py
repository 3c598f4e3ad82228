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
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_medgen.cli.demo import PLUGIN  # noqa: E402
from napari_medgen.widgets.common import add_volume  # noqa: E402

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
    widget.random_base()
    if widget.sliders:
        widget.sliders[0].setValue(20)
    settle(0.5)


def shoot(name: str) -> Path:
    """Run one scene in a fresh window and save docs/images/<name>.png."""
    viewer = napari.Viewer(title=f"napari-medgen: {name}")
    try:
        viewer.window._qt_window.resize(*WINDOW_SIZE)
        settle(0.2)
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
