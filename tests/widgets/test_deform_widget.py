"""The "Deform labels" dock: each method gives a new labels layer with the input's geometry."""

import numpy as np
import pytest

from napari_medgen.models.label_vae import build_label_vae
from napari_medgen.models.store import save_model
from napari_medgen.widgets.deform import DeformWidget

SCALE, TRANSLATE = (5.0, 2.0, 2.0), (-20.0, 3.0, 7.0)


def _labels():
    z, y, x = np.mgrid[:6, :32, :32]
    data = np.zeros((6, 32, 32), np.uint8)
    data[(y - 16) ** 2 + (x - 16) ** 2 < 12 ** 2] = 1
    data[(y - 16) ** 2 + (x - 14) ** 2 < 5 ** 2] = 2
    return data


@pytest.fixture
def setup(make_napari_viewer, monkeypatch):
    errors = []
    monkeypatch.setattr("napari_medgen.widgets.runner.show_error", errors.append)
    viewer = make_napari_viewer()
    layer = viewer.add_labels(_labels(), name="lab", scale=SCALE, translate=TRANSLATE)
    w = DeformWidget(viewer)
    assert w.labels_combo.currentText() == "lab"
    return viewer, layer, w, errors


def _run(w, qtbot):
    handle = w.run()
    qtbot.waitUntil(lambda: handle.status is not None, timeout=30000)
    return handle


def test_dilate_gives_a_new_aligned_labels_layer(setup, qtbot):
    viewer, layer, w, errors = setup
    w.method.setCurrentText("dilate")
    w.label.setValue(2)
    w.radius.setValue(2)
    assert w.form.isRowVisible(w.radius) and not w.form.isRowVisible(w.sigma_mm)
    assert _run(w, qtbot).status == "done", errors
    out = viewer.layers["lab dilate"]
    assert out.__class__.__name__ == "Labels" and out.data.shape == layer.data.shape
    np.testing.assert_allclose(out.scale, SCALE)
    np.testing.assert_allclose(out.translate, TRANSLATE)
    assert np.sum(out.data == 2) > 1.4 * np.sum(layer.data == 2)
    np.testing.assert_array_equal(layer.data, _labels())  # the input layer is untouched


def test_elastic_is_seeded_and_errors_are_notified(setup, qtbot):
    viewer, layer, w, errors = setup
    w.method.setCurrentText("elastic")
    w.sigma_mm.setValue(6)
    w.magnitude_mm.setValue(4)
    w.seed.setValue(5)
    _run(w, qtbot)
    first = viewer.layers["lab elastic"].data.copy()
    assert np.any(first != layer.data)
    _run(w, qtbot)
    np.testing.assert_array_equal(viewer.layers["lab elastic"].data, first)
    w.method.setCurrentText("erode")
    w.label.setValue(9)
    assert _run(w, qtbot).status == "error"
    assert "Label 9 is not in this label map" in errors[-1]


def test_vae_interpolation_between_two_layers(setup, qtbot, tmp_path):
    viewer, layer, w, errors = setup
    net = {"n_classes": 3, "slice_shape": [32, 32], "latent_size": 4, "channels": [4, 8], "strides": [2, 2]}
    save_model(tmp_path / "lvae", build_label_vae(net), {"family": "label_vae", "network": net,
                                                         "label_names": {"0": "bg", "1": "a", "2": "b"}})
    w.model_combo.add_path(tmp_path / "lvae")
    viewer.add_labels(np.roll(_labels(), 5, axis=2), name="other")
    w.labels_combo.setCurrentText("lab")
    w.method.setCurrentText("vae-interpolate")
    w.other.setCurrentText("other")
    w.t.setValue(30)
    assert _run(w, qtbot).status == "error"  # unnamed values 1, 2 are not the VAE's classes "a", "b" unasked
    assert "1 (unnamed), 2 (unnamed)" in errors[-1] and "0 bg, 1 a, 2 b" in errors[-1]
    w.label_map.setText("1=b, 2=a")
    assert _run(w, qtbot).status == "done", errors
    out = viewer.layers["lab vae-interpolate"]
    assert out.data.shape == layer.data.shape and out.data.dtype == layer.data.dtype
    np.testing.assert_allclose(out.scale, SCALE)
    assert set(np.unique(out.data)) <= {0, 1, 2}


def test_docked_from_the_plugin_menu(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_labels(_labels(), name="lab", scale=SCALE)
    _, w = viewer.window.add_plugin_dock_widget("napari-medgen", "Deform labels")
    assert isinstance(w, DeformWidget)
    w.method.setCurrentText("affine")
    w.rotation.setValue(90)
    handle = w.run()
    qtbot.waitUntil(lambda: handle.status is not None, timeout=30000)
    assert handle.status == "done" and "lab affine" in viewer.layers
