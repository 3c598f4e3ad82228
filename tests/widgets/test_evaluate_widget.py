"""Evaluate dock under Xvfb: quality from two layers (table, plot, CSV/PNG), anomaly heat map, usefulness under
domain shift (selected domains and arms, cancel, refusal)."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_medgen.data.phantom import make_phantom
from napari_medgen.io.layers import volume_to_layer
from napari_medgen.widgets.evaluate import FOLDER, EvaluateWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    w = EvaluateWidget(viewer)
    qtbot.addWidget(w)
    return w


def add_phantom(viewer, name, seed, shape=(6, 64, 64), **kw):
    image, _ = make_phantom(seed=seed, shape=shape, **kw)
    data, layer_kw, _ = volume_to_layer(image, name)
    return viewer.add_image(data, **layer_kw)


def wait_done(qtbot, w):
    qtbot.waitUntil(lambda: w.handle.status is not None, timeout=120_000)
    return w.handle.status


def test_quality_from_two_layers_fills_table_plot_and_exports(widget, qtbot, tmp_path):
    add_phantom(widget.viewer, "real", 0)
    add_phantom(widget.viewer, "synthetic", 0, noise=0.08)
    assert widget.real_source.findText(FOLDER) >= 0
    widget.real_source.setCurrentText("real")
    widget.synthetic_source.setCurrentText("synthetic")
    assert not widget.real_folder.isEnabled()
    widget.run_quality()
    assert wait_done(qtbot, widget) == "done"
    cells = {widget.table.item(i, 0).text(): widget.table.item(i, 1).text() for i in range(widget.table.rowCount())}
    assert int(cells["n_pairs"]) == 6 and 0 < float(cells["ssim_mean"]) < 1 and float(cells["frechet_distance"]) > 0
    assert widget.csv_button.isEnabled()
    widget.export_csv(tmp_path / "q.csv")
    widget.export_png(tmp_path / "q.png")
    assert "frechet_distance" in (tmp_path / "q.csv").read_text()
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"


def test_anomaly_map_layer_has_the_image_geometry(widget, qtbot):
    layer = add_phantom(widget.viewer, "scan", 2_000_000, shape=(1, 128, 128))
    widget.anomaly_layer.setCurrentText("scan")
    widget.run_anomaly()
    assert wait_done(qtbot, widget) == "done"
    heat = widget.viewer.layers["scan anomaly"]
    assert heat.data.shape == layer.data.shape
    np.testing.assert_allclose(heat.scale, layer.scale)
    np.testing.assert_allclose(heat.translate, layer.translate)


def test_usefulness_runs_in_background_and_cancels(widget, qtbot):
    widget.steps.setValue(10_000)
    handle = widget.run_usefulness()
    qtbot.waitUntil(lambda: handle.last is not None and handle.last.step >= 1, timeout=120_000)
    widget.panel.cancel()
    assert wait_done(qtbot, widget) == "cancelled"


def test_usefulness_domains_and_arms_are_selectable(widget, qtbot):
    """Train on vendor b, test on vendor a and CT only, two arms: the table holds exactly those rows."""
    widget.train_domain.setCurrentText("phantom:mr_vendor_b")
    for i in range(widget.test_domains.count()):
        item = widget.test_domains.item(i)
        item.setCheckState(Qt.Checked if item.text() in ("phantom:mr_vendor_a", "phantom:ct") else Qt.Unchecked)
    for arm, box in widget.arm_boxes.items():
        box.setChecked(arm in ("real", "augment"))
    widget.seeds.setValue(2)
    widget.steps.setValue(3)
    widget.subjects.setValue(2)
    kw = widget.shift_choices()
    assert kw["tests"] == ("phantom:mr_vendor_a", "phantom:ct") and kw["arms"] == ("real", "augment")
    widget.run_usefulness()
    assert wait_done(qtbot, widget) == "done"
    rows = [(widget.table.item(i, 0).text(), widget.table.item(i, 1).text()) for i in range(widget.table.rowCount())]
    assert rows == [(a, d) for a in ("real", "augment") for d in ("mr_vendor_a", "ct", "unseen mean")]
    assert widget.csv_button.isEnabled()


def test_usefulness_refusal_is_reported(widget, qtbot):
    for i in range(widget.test_domains.count()):
        widget.test_domains.item(i).setCheckState(Qt.Unchecked)
    widget.run_usefulness()
    assert wait_done(qtbot, widget) == "error"
    assert "at least one test domain" in widget.panel.status.text()


def test_layer_lists_follow_the_viewer_and_no_layer_is_refused(widget, monkeypatch):
    """The image lists are the viewer's image layers (then Folder...); the folder field is usable only with
    Folder... chosen; an anomaly map without an image layer is refused with a message, no job started."""
    from napari_medgen.widgets import evaluate as evaluate_widget

    errors: list[str] = []
    monkeypatch.setattr(evaluate_widget, "show_error", errors.append)
    assert widget.real_source.currentText() == FOLDER and widget.real_folder.isEnabled()
    assert widget.run_anomaly() is None and errors and widget.handle is None
    add_phantom(widget.viewer, "scan", 1)
    assert [widget.real_source.itemText(i) for i in range(widget.real_source.count())] == ["scan", FOLDER]
    assert widget.real_source.currentText() == "scan" and not widget.real_folder.isEnabled()
    assert widget.anomaly_layer.layer() is widget.viewer.layers["scan"]
