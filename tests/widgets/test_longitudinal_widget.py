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


def test_predict_shows_series_difference_and_plot(widget, tmp_path):
    viewer, w, qtbot = widget
    w.steps.setValue(3)
    w.span.setValue(12.0)
    w.predict()
    qtbot.waitUntil(lambda: w.result is not None, timeout=60000)
    series = viewer.layers["follow-ups"]
    assert series.data.shape == (4, 3, SIZE, SIZE)
    np.testing.assert_allclose(series.scale[1:], viewer.layers["baseline"].scale)
    np.testing.assert_allclose(series.translate[1:], viewer.layers["baseline"].translate)
    np.testing.assert_array_equal(series.data[0], viewer.layers["baseline"].data)
    assert w.result.image.metadata["times"] == [0.0, 4.0, 8.0, 12.0]
    diff = viewer.layers["follow-ups difference"]
    lo, hi = diff.contrast_limits
    assert lo == pytest.approx(-hi) and hi > 0  # centred at zero, and the model changed something
    np.testing.assert_allclose(diff.data, series.data[3] - series.data[0], atol=1e-6)
    assert len(w.axes.lines) == 1 and list(w.axes.lines[0].get_xdata()) == [0.0, 4.0, 8.0, 12.0]

    w.time_point.setValue(1)
    np.testing.assert_allclose(viewer.layers["follow-ups difference"].data, series.data[1] - series.data[0], atol=1e-6)
    w.side_by_side.setChecked(True)
    assert viewer.canvas.grid.enabled
    assert [lay.name for lay in viewer.layers if lay.visible] == ["baseline", "follow-ups at t"]
    w.side_by_side.setChecked(False)
    assert not viewer.canvas.grid.enabled

    w.single_file.setChecked(True)
    paths = w.export(tmp_path / "out")
    assert len(paths) == 2 and read_volume(paths[0]).data.shape == (4, 3, SIZE, SIZE)


def test_shipped_models_are_named_with_what_they_track_tumour_first(make_napari_viewer):
    from napari_medgen.models.store import load_card, shipped_models
    from napari_medgen.widgets.longitudinal import LongitudinalWidget

    cards = [load_card(p) for p in shipped_models(("temporal",))]
    if not cards:
        pytest.skip("no shipped temporal model")
    w = LongitudinalWidget(make_napari_viewer())
    texts = [w.model.itemText(i) for i in range(w.model.count())]
    assert len(texts) == len(cards)
    assert all(text.endswith(")") and " (" in text for text in texts)
    if any(card.get("series", "tumour") == "tumour" for card in cards):
        assert w.model.currentText().endswith("(tumour)")
