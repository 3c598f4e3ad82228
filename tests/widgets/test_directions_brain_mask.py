"""The latent-directions dock inverts a brain slice with the brain mask the user picks (a labels layer)."""

from __future__ import annotations

import numpy as np
import torch

from napari_medgen.models.latent import ImageLabelVAE
from napari_medgen.models.store import save_model
from napari_medgen.training.latent_trainers import BRAIN_DATA

NORM = {"kind": "percentile", "low": 0.5, "high": 99.5, "lo_value": 0.0, "hi_value": 1.0, "range": [0.0, 1.0]}


def test_the_brain_mask_layer_is_used_and_a_mismatched_one_refused(make_napari_viewer, tmp_path, qtbot):
    from napari_medgen.widgets.directions import AUTO_MASK, DirectionsWidget

    torch.manual_seed(0)
    model = ImageLabelVAE(4, size=16, latent_dim=4, channels=(8, 8))
    save_model(tmp_path / "brainy", model, {"family": "vae", "network": model.config, "normalization": NORM,
                                            "data": BRAIN_DATA})
    viewer = make_napari_viewer()
    w = DirectionsWidget(viewer)
    w.model.addItem("brainy", str(tmp_path / "brainy.json"))
    w.model.setCurrentIndex(w.model.count() - 1)
    yy, xx = np.mgrid[:60, :50]
    disk = ((yy - 30) ** 2 + (xx - 25) ** 2 < 15 ** 2).astype(np.uint8)
    image = np.stack([disk * (100.0 + yy)] * 3).astype(np.float32)
    viewer.add_image(image, name="scan", scale=(2.0, 2.0, 2.0))
    viewer.add_labels(np.stack([disk] * 3), name="brain")
    viewer.add_labels(np.zeros((3, 10, 10), np.uint8), name="other")
    assert [w.mask_layer.itemText(i) for i in range(w.mask_layer.count())] == [AUTO_MASK, "brain", "other"]
    w.image_layer.setCurrentText("scan")
    w.mask_layer.setCurrentText("other")
    w.invert_layer()  # wrong shape: a message, nothing inverted
    assert w.editor.prepared is None
    w.mask_layer.setCurrentText("brain")
    w.invert_layer()
    qtbot.waitUntil(lambda: "latent edit" in viewer.layers
                    and viewer.layers["latent edit"].data.shape[-2:] == (60, 50), timeout=60000)
    assert [w.image_layer.itemText(i) for i in range(w.image_layer.count())] == ["scan"]  # not its own output
    assert [w.mask_layer.itemText(i) for i in range(w.mask_layer.count())] == [AUTO_MASK, "brain", "other"]
    inside = image[1][disk > 0]
    assert w.editor.prepared.lo == np.percentile(inside, 0.5) and w.editor.prepared.hi == np.percentile(inside, 99.5)
