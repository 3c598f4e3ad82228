"""The latent-directions dock: discover, slide, invert a real slice, export a walk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medgen.models.latent import ImageLabelVAE
from napari_medgen.models.store import save_model

NORM = {"kind": "percentile", "low": 0.5, "high": 99.5, "lo_value": 0.0, "hi_value": 1.0, "range": [0.0, 1.0]}


@pytest.fixture
def widget(make_napari_viewer, tmp_path, qtbot):
    from napari_medgen.widgets.directions import DirectionsWidget

    torch.manual_seed(0)
    model = ImageLabelVAE(8, size=16, latent_dim=6, channels=(8, 8))
    save_model(tmp_path / "tiny", model, {"family": "vae", "network": model.config, "normalization": NORM,
                                          "data": "random 2D phantoms"})
    viewer = make_napari_viewer()
    w = DirectionsWidget(viewer)
    w.model.addItem("tiny", str(tmp_path / "tiny.json"))
    w.model.setCurrentIndex(w.model.count() - 1)
    return viewer, w, qtbot


def _discover(w, qtbot, method="sefa", k=3):
    w.method.setCurrentText(method)
    w.k.setValue(k)
    w.discover()
    qtbot.waitUntil(lambda: len(w.sliders) == k, timeout=30000)


def test_discover_then_slider_changes_the_output_layer(widget):
    viewer, w, qtbot = widget
    _discover(w, qtbot)
    assert "latent edit" in viewer.layers and "latent edit labels" in viewer.layers
    before = np.array(viewer.layers["latent edit"].data)
    w.sliders[0].setValue(30)  # +3 std
    after = np.array(viewer.layers["latent edit"].data)
    assert after.shape == before.shape
    assert np.abs(after - before).mean() > 1e-4
    strip = w.rows.itemAtPosition(1, 0).widget().pixmap()
    assert strip is not None and strip.width() == 5 * 16


def test_invert_a_real_slice_keeps_its_geometry(widget):
    viewer, w, qtbot = widget
    _discover(w, qtbot, k=2)
    image = np.random.default_rng(0).random((5, 32, 40)).astype(np.float32)
    viewer.add_image(image, name="scan", scale=(4.0, 1.5, 1.5), translate=(10.0, -20.0, 30.0))
    w.image_layer.setCurrentText("scan")
    viewer.dims.set_point(0, 10.0 + 4.0 * 2)  # slice 2
    w.invert_layer()
    qtbot.waitUntil(lambda: viewer.layers["latent edit"].data.shape[-2:] == (32, 40), timeout=60000)
    out = viewer.layers["latent edit"]
    assert np.allclose(out.scale[-2:], (1.5, 1.5))
    assert np.allclose(out.translate, (18.0, -20.0, 30.0))


def test_walk_export_and_save(widget, tmp_path):
    viewer, w, qtbot = widget
    _discover(w, qtbot, k=2)
    w.names[1].setText("body size")
    w.walk_k.setValue(1)
    w.export_walk()
    walk = viewer.layers["walk body size"]
    assert walk.data.shape[0] == 7
    w.save()
    assert (tmp_path / "tiny.directions.json").is_file()
    assert "body size" in (tmp_path / "tiny.directions.json").read_text()


def test_pca_on_a_non_phantom_model_is_a_message_not_a_crash(widget, tmp_path):
    viewer, w, qtbot = widget
    card = tmp_path / "tiny.json"
    card.write_text(card.read_text().replace("random 2D phantoms", "brain slices"))
    w.load_model()
    w.method.setCurrentText("pca")
    w.discover()
    assert w.sliders == []


def test_the_dock_lists_the_shipped_vaes_before_the_gans(widget):
    from napari_medgen.models.store import load_card, shipped_models

    _, w, _ = widget
    families = [load_card(p)["family"] for p in shipped_models(("vae", "gan")).values()]
    assert families == sorted(families, key=("vae", "gan").index)  # the VAE (encoder, measured directions) first
    if families:
        assert w.model.itemText(0) == next(iter(shipped_models(("vae", "gan"))))
