"""Synthesize dock: aligned output, live regeneration of painted slices only, coalescing, bad labels."""

import threading

import numpy as np
import pytest

from napari_medgen.widgets import collector
from napari_medgen.widgets import synthesize as widget_mod
from napari_medgen.widgets.synthesize import SynthesizeWidget
from tests.tasks.test_live_synthesis import tiny_spade

N_CLASSES, SHAPE = 8, (32, 32)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_spade(tmp_path_factory.mktemp("models") / "tiny_spade", N_CLASSES, SHAPE)


def _labels(n=4):
    data = np.zeros((n, *SHAPE), np.uint8)
    data[:, 4:28, 4:28] = 1
    data[:, 10:20, 8:16] = 2
    return data


@pytest.fixture
def setup(make_napari_viewer, tiny_model, monkeypatch):
    errors = []
    monkeypatch.setattr(widget_mod, "show_error", errors.append)
    monkeypatch.setattr("napari_medgen.widgets.runner.show_error", errors.append)
    viewer = make_napari_viewer()
    layer = viewer.add_labels(_labels(), name="lab", scale=(5.0, 3.0, 3.0), translate=(-10.0, 4.0, 6.0))
    w = SynthesizeWidget(viewer)
    w.model_combo.add_path(tiny_model)
    w.labels_combo.setCurrentText("lab")
    w.label_table.confirm_same_numbers()  # the painted values are the tiny model's class numbers
    yield viewer, layer, w, errors
    w.stop_live()


def test_style_choices_include_vendors_and_synthesize_gives_aligned_image(setup, qtbot):
    viewer, layer, w, errors = setup
    items = [w.style_a.itemText(i) for i in range(w.style_a.count())]
    assert "vendor:vendor_a" in items and "random" in items
    w.style_a.setCurrentText("vendor:vendor_a")
    handle = w.synthesize()
    qtbot.waitUntil(lambda: handle.status is not None, timeout=30000)
    assert handle.status == "done", errors
    out = viewer.layers["lab synthetic"]
    assert out.data.shape == layer.data.shape
    np.testing.assert_allclose(out.scale, layer.scale)
    np.testing.assert_allclose(out.translate, layer.translate)
    synth = w.synthesizer()
    expected = synth.synthesize_slices(layer.data[:1], synth.resolve_style("vendor:vendor_a"))
    np.testing.assert_allclose(out.data[0], expected[0], atol=1e-4)


def test_label_table_proposes_classes_from_names_and_refuses_unmapped_values(setup, qtbot):
    """A lesion painted as 1 is never the model's class 1 unasked: unnamed values wait for the user's
    choice (Synthesize refuses, naming both sides); names in the layer's features propose classes."""
    viewer, layer, w, errors = setup
    lesion = viewer.add_labels(_labels(), name="lesion", scale=layer.scale, translate=layer.translate)
    w.labels_combo.setCurrentText("lesion")
    assert w.label_table.values == [0, 1, 2] and w.label_table.selected(1) is None
    assert w.synthesize() is None
    assert "1 (unnamed), 2 (unnamed)" in errors[-1] and "0 class0, 1 class1" in errors[-1]
    w.live_box.setChecked(True)
    assert not w.live_box.isChecked() and "1 (unnamed)" in errors[-1]
    lesion.features = {"index": [0, 1, 2], "name": ["class0", "Class5", "class_3"]}
    w.refresh_label_table()
    assert [w.label_table.selected(v) for v in (0, 1, 2)] == [0, 5, 3]
    w.label_table.choose(2, 6)
    handle = w.synthesize()
    qtbot.waitUntil(lambda: handle.status is not None, timeout=30000)
    assert handle.status == "done", errors
    synth = w.synthesizer()
    mapped = np.choose(lesion.data[:1], [0, 5, 6])
    expected = synth.synthesize_slices(mapped, synth.random_style(0))  # style "random", seed 0
    out = viewer.layers["lesion synthetic"]
    np.testing.assert_allclose(out.data[:1], expected, atol=1e-4)
    assert out.metadata["synthesis"]["label_mapping"] == {"0": 0, "1": 5, "2": 6}


def test_label_table_choices_survive_a_layer_being_added(setup, qtbot):
    """Adding any layer (the dock's own output included) rebuilds the layer lists; the user's class
    choices for the chosen label layer stay (a rebuild passing through "no layer" used to forget them)."""
    viewer, layer, w, errors = setup
    w.label_table.choose(2, 6)
    changes = []
    w.labels_combo.currentTextChanged.connect(changes.append)
    viewer.add_image(np.zeros((4, *SHAPE), np.float32), name="another")
    assert w.labels_combo.currentText() == "lab" and w.label_table.selected(2) == 6 and changes == []
    viewer.layers.remove("lab")
    assert changes == [w.labels_combo.currentText()] != ["lab"]  # a real change still reaches the dock


def test_current_slice_scope_fills_only_that_slice(setup, qtbot):
    viewer, layer, w, errors = setup
    w.scope.setCurrentText("current slice")
    viewer.dims.set_point(0, layer.data_to_world((2, 0, 0))[0])
    handle = w.synthesize()
    qtbot.waitUntil(lambda: handle.status is not None, timeout=30000)
    out = viewer.layers["lab synthetic"].data
    assert np.ptp(out[2]) > 0 and not out[[0, 1, 3]].any()


def _start_live(viewer, layer, w, qtbot, z=2):
    viewer.dims.set_point(0, layer.data_to_world((z, 0, 0))[0])
    w.live_box.setChecked(True)
    qtbot.waitUntil(lambda: w.painting.updates >= 1, timeout=30000)
    return viewer.layers["lab synthetic"]


def _expected(w, labels_slice):
    return w.synthesizer().synthesize_slices(labels_slice[None], w.painting.style)[0]


def test_live_regenerates_the_painted_slice_only(setup, qtbot):
    viewer, layer, w, errors = setup
    image = _start_live(viewer, layer, w, qtbot)
    assert collector.held()  # live mode holds the garbage collector while it is on (widgets.collector)
    assert not image.data[[0, 1, 3]].any() and np.ptp(image.data[2]) > 0
    before = image.data[2].copy()
    n = w.painting.updates
    layer.paint((2, 16, 16), 5)
    qtbot.waitUntil(lambda: w.painting.updates > n, timeout=30000)
    qtbot.wait(100)  # any extra (wrong) regeneration would land now
    assert not image.data[[0, 1, 3]].any()
    assert not np.allclose(image.data[2], before)
    np.testing.assert_allclose(image.data[2], _expected(w, layer.data[2]), atol=1e-4)
    # scrolling to a slice live mode has not made yet synthesises it (once)
    n = w.painting.updates
    viewer.dims.set_point(0, layer.data_to_world((0, 0, 0))[0])
    qtbot.waitUntil(lambda: w.painting.updates > n, timeout=30000)
    np.testing.assert_allclose(image.data[0], _expected(w, layer.data[0]), atol=1e-4)
    assert not image.data[[1, 3]].any()
    assert not errors
    w.set_live(False)
    assert not collector.held()


def test_burst_of_paint_events_coalesces_and_ends_on_final_labels(setup, qtbot, monkeypatch):
    viewer, layer, w, errors = setup
    image = _start_live(viewer, layer, w, qtbot)
    fast = w.painting.live.render
    gate = threading.Event()

    def slow(lab):  # the network is busy until the brush stops: every later edit must merge into one request
        gate.wait(10)
        return fast(lab)

    monkeypatch.setattr(w.painting.live, "render", slow)
    start = w.painting.live.computations
    for k in range(20):
        layer.paint((2, 6 + k, 6 + k), 3 + k % 4)
    gate.set()
    qtbot.waitUntil(lambda: w.painting.live.dirty.empty and w.painting.live.computations > start, timeout=30000)
    qtbot.wait(200)
    done = w.painting.live.computations - start
    assert 1 <= done <= 2, done
    np.testing.assert_allclose(image.data[2], _expected(w, layer.data[2]), atol=1e-4)
    assert not errors


def test_fast_renders_of_the_shown_slice_happen_inside_the_paint_call(setup, qtbot):
    viewer, layer, w, errors = setup
    image = _start_live(viewer, layer, w, qtbot)
    for k in range(3):  # the worker's renders show the tiny model fits in a frame
        n = w.painting.updates
        layer.paint((2, 4 + k, 4), 2 + k)
        qtbot.waitUntil(lambda: w.painting.updates > n and w.painting.live.in_flight == 0, timeout=30000)
    qtbot.wait(50)  # past the spacing after any inline render
    assert w.painting.live.may_render_inline()
    n, computations = w.painting.updates, w.painting.live.computations
    layer.paint((2, 20, 20), 6)
    assert w.painting.updates == n + 1 and w.painting.live.computations == computations + 1  # applied before paint returned
    np.testing.assert_allclose(image.data[2], _expected(w, layer.data[2]), atol=1e-4)
    assert not image.data[[0, 1, 3]].any() and not errors


def test_labels_beyond_the_models_classes_show_an_error_and_napari_keeps_running(setup, qtbot):
    viewer, layer, w, errors = setup
    image = _start_live(viewer, layer, w, qtbot)
    n = w.painting.updates
    layer.paint((2, 16, 16), 12)  # class 12 does not exist in an 8-class model
    qtbot.waitUntil(lambda: len(errors) >= 1, timeout=30000)
    assert "12 (unnamed)" in errors[0] and "no model class" in errors[0] and "7 class7" in errors[0]
    assert w.painting.updates == n  # the image was not touched
    layer.paint((2, 16, 16), 3)  # fixing the labels brings live synthesis back
    qtbot.waitUntil(lambda: w.painting.updates > n, timeout=30000)
    np.testing.assert_allclose(image.data[2], _expected(w, layer.data[2]), atol=1e-4)
    # a whole bad label map: Live refuses with a message and unticks itself; the button reports too
    w.live_box.setChecked(False)
    bad = viewer.add_labels(np.full((2, *SHAPE), 9, np.uint8), name="bad")
    w.labels_combo.setCurrentText("bad")
    w.live_box.setChecked(True)
    assert not w.live_box.isChecked() and "9" in errors[-1]
    n_errors = len(errors)
    assert w.synthesize() is None and len(errors) == n_errors + 1 and "9 (unnamed)" in errors[-1]
    viewer.add_image(np.ones((4, 4)), name="still alive")
    assert "still alive" in viewer.layers and bad in viewer.layers


def test_docked_from_the_plugin_menu_live_works_through_napari_s_proxy(make_napari_viewer, tiny_model, qtbot):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(_labels(), name="lab", scale=(5.0, 3.0, 3.0))
    _, w = viewer.window.add_plugin_dock_widget("napari-medgen", "Synthesize")
    assert isinstance(w, SynthesizeWidget)
    w.model_combo.add_path(tiny_model)
    w.labels_combo.setCurrentText("lab")
    w.label_table.confirm_same_numbers()
    try:
        _start_live(viewer, layer, w, qtbot)
        n = w.painting.updates
        layer.paint((2, 16, 16), 4)
        qtbot.waitUntil(lambda: w.painting.updates > n, timeout=30000)
        np.testing.assert_allclose(viewer.layers["lab synthetic"].data[2], _expected(w, layer.data[2]), atol=1e-4)
    finally:
        w.stop_live()
