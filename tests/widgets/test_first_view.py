"""The demo's first view: the whole slice in view, labels over their image, the Synthesize dock in front."""

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QTabBar

from napari_medgen.cli.demo import dock_widgets, sample_volumes
from napari_medgen.widgets.common import add_volume
from napari_medgen.widgets.first_view import show_first_view


def test_first_view_fits_the_slice_puts_labels_over_images_and_raises_synthesize(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    for name, vol in sample_volumes({}).items():  # brain, brain labels, phantom, phantom labels
        add_volume(viewer, vol, name)
    viewer.layers.move(viewer.layers.index("phantom labels"), 0)  # a labels layer below the images
    assert not dock_widgets(viewer)
    viewer.camera.zoom *= 8  # a zoomed crop, as the demo opened before
    show_first_view(viewer)
    qtbot.wait(50)
    names = [layer.name for layer in viewer.layers]
    assert names.index("phantom labels") > names.index("phantom") and names.index("brain labels") > names.index("brain")
    assert [layer.name for layer in viewer.layers if layer.visible] == ["phantom", "phantom labels"]
    assert viewer.layers.selection.active.name == "phantom labels"
    # camera: the phantom's in-plane extent fits the canvas and fills most of one side
    extent = viewer.layers["phantom"].extent.world[:, -2:]
    size_px = (extent[1] - extent[0]) * viewer.camera.zoom
    canvas = np.array(viewer.window._qt_viewer.canvas.size)[::-1]  # (height, width)
    assert np.all(size_px <= canvas + 1) and np.max(size_px / canvas) >= 0.5, (size_px, canvas)
    # the Synthesize tab is the current one of its tab bar, titles in full, set up for the phantom
    bars = [b for b in viewer.window._qt_window.findChildren(QTabBar)
            if any(b.tabText(i).startswith("Synthesize") for i in range(b.count()))]
    assert bars and bars[0].tabText(bars[0].currentIndex()).startswith("Synthesize"), [bars[0].tabText(i) for i in range(bars[0].count())] if bars else None
    assert all(b.elideMode() == Qt.TextElideMode.ElideNone for b in bars)
    from napari_medgen.widgets.first_view import front_dock

    w = front_dock(viewer)
    assert w.labels_combo.currentText() == "phantom labels" and w.model_combo.currentText() == "spade_phantom"
