"""The Longitudinal dock: Predict gives a 4D layer with the baseline's geometry, a difference map, a plot; export; grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medgen.io.readers import read_volume
from napari_medgen.models.store import save_model
from napari_medgen.models.temporal import TemporalAE

SIZE, PIXEL = 32, 12.0


@pytest.fixture
def widget(make_napari_viewer, tmp_path, qtbot):
    from napari_medgen.widgets.longitudinal import LongitudinalWidget

    torch.manual_seed(0)
    net = TemporalAE(8, size=SIZE, latent_channels=4, channels=(4, 8))
    with torch.no_grad():
        net.direction.fill_(1.0)
    save_model(tmp_path / "tiny", net, {"family": "temporal", "network": net.config, "shape": [SIZE, SIZE],
                                        "pixel_mm": PIXEL, "tracked_label": 7})
    viewer = make_napari_viewer()
    image = np.random.default_rng(0).uniform(0, 1, (3, SIZE, SIZE)).astype(np.float32)
    labels = np.ones((3, SIZE, SIZE), np.uint8)
    labels[1, 8:16, 8:16] = 7
    viewer.add_image(image, name="baseline", scale=(5.0, PIXEL, PIXEL), translate=(7.0, 3.0, -2.0))
    viewer.add_labels(labels, name="baseline labels", scale=(5.0, PIXEL, PIXEL), translate=(7.0, 3.0, -2.0))
    w = LongitudinalWidget(viewer)
    w.model.addItem("tiny", str(tmp_path / "tiny.json"))
    w.model.setCurrentIndex(w.model.count() - 1)
    w.image_layer.setCurrentText("baseline")
    w.labels_layer.setCurrentText("baseline labels")
    return viewer, w, qtbot


def test_model_path_shows_series_difference_and_plot(widget, tmp_path):
    viewer, w, qtbot = widget
    assert w.tracked.currentIndex() == -1  # labels 1 and 7, unnamed: nothing proposed, the model follows its 7
    assert not w.interval.isEnabled() and not w.law.isEnabled() and "months" in w.interval.toolTip()
    w.steps.setValue(3)
    w.interval.setValue(4.0)  # greyed out: a learned model steps in its own time unit, not in months
    w.predict()
    qtbot.waitUntil(lambda: w.result is not None, timeout=60000)
    series = viewer.layers["follow-ups"]
    assert series.data.shape == (4, 3, SIZE, SIZE)
    np.testing.assert_allclose(series.scale[1:], viewer.layers["baseline"].scale)
    np.testing.assert_allclose(series.translate[1:], viewer.layers["baseline"].translate)
    np.testing.assert_array_equal(series.data[0], viewer.layers["baseline"].data)
    assert w.result.image.metadata["times"] == [0.0, 1.0, 2.0, 3.0]
    assert w.result.image.metadata["time_unit"] == "model steps"
    diff = viewer.layers["follow-ups difference"]
    lo, hi = diff.contrast_limits
    assert lo == pytest.approx(-hi) and hi > 0  # centred at zero, and the model changed something
    np.testing.assert_allclose(diff.data, series.data[3] - series.data[0], atol=1e-6)
    assert len(w.axes.lines) == 1 and list(w.axes.lines[0].get_xdata()) == [0.0, 1.0, 2.0, 3.0]

    w.time_point.setValue(1)
    np.testing.assert_allclose(viewer.layers["follow-ups difference"].data, series.data[1] - series.data[0], atol=1e-6)
    w.side_by_side.setChecked(True)
    assert viewer.canvas.grid.enabled
    assert [lay.name for lay in viewer.layers if lay.visible] == ["baseline", "follow-ups at t"]
    w.side_by_side.setChecked(False)
    assert not viewer.canvas.grid.enabled

    w.single_file.setChecked(True)
    paths = w.export(tmp_path / "out")
    assert len(paths) == 4 and read_volume(paths[0]).data.shape == (4, 3, SIZE, SIZE)


def test_default_real_scan_path_on_a_ct_follows_the_named_lesion(make_napari_viewer, qtbot):
    """No model: the lesion (label 200, named) is pre-selected; the months change the series; linked contrast."""
    from napari_medgen.data import phantom
    from napari_medgen.widgets.longitudinal import NO_MODEL, LongitudinalWidget

    img, lab = phantom.make_phantom(3_000_201, shape=(32, 80, 80), spacing=(3.0, 3.0, 4.0), style="ct")
    seg = np.where(lab.data == 7, 200, np.where(lab.data == 2, 4, 0)).astype(np.uint8)
    viewer = make_napari_viewer()
    viewer.add_image(img.data, name="ct", scale=(4.0, 3.0, 3.0), contrast_limits=(-1000, 400))
    viewer.add_labels(seg, name="seg", scale=(4.0, 3.0, 3.0), metadata={"label_names": {4: "lung", 200: "GTV"}})
    w = LongitudinalWidget(viewer)
    assert w.model.currentText() == NO_MODEL and w.labels_layer.currentText() == "seg"
    assert [w.tracked.itemText(i) for i in range(w.tracked.count())] == ["4 (lung)", "200 (GTV)"]
    assert w.tracked.currentData() == 200 and w.law.currentText() == "regression" and w.rate.value() == 3.0
    volumes = []
    for interval in (1.0, 6.0):
        w.result = None
        w.steps.setValue(2)
        w.interval.setValue(interval)
        w.predict()
        qtbot.waitUntil(lambda: w.result is not None, timeout=60000)
        volumes.append(w.result.tracked_ml)
    assert viewer.layers["follow-ups"].data.shape == (3, 32, 80, 80)
    assert volumes[0][0] == volumes[1][0] and volumes[1][2] < volumes[0][2] < volumes[0][0]
    assert volumes[1][2] / volumes[1][0] == pytest.approx(2 ** -4, rel=0.1)  # 12 months at a 3-month halving time
    assert list(w.axes.lines[0].get_xdata()) == [0.0, 6.0, 12.0]
    w.side_by_side.setChecked(True)
    viewer.layers["ct"].contrast_limits = (-200, 200)
    assert tuple(viewer.layers["follow-ups at t"].contrast_limits) == (-200, 200)
    w.side_by_side.setChecked(False)


def test_no_model_first_then_shipped_models_named_with_what_they_track_tumour_first(make_napari_viewer):
    from napari_medgen.models.store import load_card, shipped_models
    from napari_medgen.widgets.longitudinal import NO_MODEL, LongitudinalWidget

    cards = [load_card(p) for p in shipped_models("temporal").values()]
    w = LongitudinalWidget(make_napari_viewer())
    texts = [w.model.itemText(i) for i in range(w.model.count())]
    assert texts[0] == NO_MODEL and w.model.currentText() == NO_MODEL and len(texts) == len(cards) + 1
    assert all(text.endswith(")") and " (" in text for text in texts[1:])
    if any(card.get("series", "tumour") == "tumour" for card in cards):
        assert texts[1].endswith("(tumour)")


def test_layer_lists_offer_3d_inputs_not_results_and_the_first_label_map(make_napari_viewer):
    from napari_medgen.widgets.combos import NONE
    from napari_medgen.widgets.longitudinal import LongitudinalWidget

    viewer = make_napari_viewer()
    seg = np.zeros((3, 8, 8), np.uint8)
    seg[1, 2:4, 2:4] = 5
    viewer.add_image(np.zeros((3, 8, 8)), name="ct")
    viewer.add_image(np.zeros((8, 8)), name="flat")
    viewer.add_image(np.zeros((3, 8, 8)), name="follow-ups at t")
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="flat labels")
    viewer.add_labels(seg, name="seg")
    viewer.add_labels(seg, name="other")
    w = LongitudinalWidget(viewer)
    items = lambda combo: [combo.itemText(i) for i in range(combo.count())]  # noqa: E731
    assert items(w.image_layer) == ["ct"] and items(w.labels_layer) == [NONE, "seg", "other"]
    assert w.labels_layer.currentText() == "seg" and items(w.tracked) == ["5"]
    viewer.layers.remove("seg")  # a removed label map: the next one, not none; its labels follow
    assert w.labels_layer.currentText() == "other" and items(w.tracked) == ["5"]
    assert w._tracked_source is viewer.layers["other"]
