"""The Diffusion dock: Sample shows the layer at once and updates it; Cancel stops the run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medgen.models.diffusion import build_unet
from napari_medgen.models.store import save_model
from napari_medgen.widgets.diffusion import OUTPUT, DiffusionWidget

pytestmark = pytest.mark.gui

NET = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [8, 8], "attention_levels": [False, False],
       "num_res_blocks": 1, "norm_num_groups": 8, "num_head_channels": 8}


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    card = {"family": "diffusion", "network": NET, "shape": [16, 16], "spacing": [2.0, 2.0, 3.0],
            "scheduler": {"objective": "ddpm", "num_train_timesteps": 1000}}
    save_model(tmp_path / "diffusion_tiny", {"unet": build_unet(NET)["unet"]}, card)
    return tmp_path / "diffusion_tiny.json"


def test_sample_adds_stacked_layer(make_napari_viewer, qtbot, tiny_model):
    viewer = make_napari_viewer()
    w = DiffusionWidget(viewer)
    w.add_model(tiny_model)
    w.sampler.setCurrentText("ddim")
    w.steps.setValue(4)
    w.n.setValue(3)
    w.preview_every.setValue(1)
    handle = w.sample()
    # the layer is there before the job has produced anything: zeros placed like the result (its first
    # frame at once, all three one event-loop turn later: widgets.common.show_placeholder)
    assert viewer.layers[OUTPUT].data.shape == (1, 16, 16) and not viewer.layers[OUTPUT].data.any()
    placed = viewer.layers[OUTPUT].scale.copy(), viewer.layers[OUTPUT].translate.copy()
    qtbot.waitUntil(lambda: handle.status is not None, timeout=60000)
    assert handle.status == "done"
    layer = viewer.layers[OUTPUT]
    assert layer.data.shape == (3, 1, 16, 16)
    np.testing.assert_allclose(layer.scale[-2:], (2.0, 2.0))
    np.testing.assert_allclose(layer.scale[1:], placed[0])  # the placeholder's frame lies where the samples do
    np.testing.assert_allclose(layer.translate[1:], placed[1])
    assert np.isfinite(layer.data).all() and layer.data.std() > 0


def test_cancel_stops_early(make_napari_viewer, qtbot, tiny_model):
    viewer = make_napari_viewer()
    w = DiffusionWidget(viewer)
    w.add_model(tiny_model)
    w.sampler.setCurrentText("ddpm")
    assert w.steps.value() == 1000
    w.preview_every.setValue(1)
    handle = w.sample()
    qtbot.waitUntil(lambda: OUTPUT in viewer.layers, timeout=60000)  # the layer appears at once
    w.panel.cancel()
    qtbot.waitUntil(lambda: handle.status is not None, timeout=60000)
    assert handle.status == "cancelled"
    assert handle.last is not None and handle.last.step < 1000


def test_labels_layers_offered_as_masks(make_napari_viewer):
    viewer = make_napari_viewer()
    w = DiffusionWidget(viewer)
    viewer.add_labels(np.zeros((1, 16, 16), np.uint8), name="mask")
    assert [w.mask.itemText(i) for i in range(w.mask.count())] == ["(none)", "mask"]


def test_condition_field_reaches_the_sampler(make_napari_viewer, qtbot, tiny_model):
    """Values typed in 'condition' go to the task: a model that takes none refuses them by name."""
    from napari_medgen.errors import InputError

    viewer = make_napari_viewer()
    w = DiffusionWidget(viewer)
    w.add_model(tiny_model)
    w.steps.setValue(2)
    w.condition.setText("0.5, 0.2")
    handle = w.sample()
    qtbot.waitUntil(lambda: handle.status is not None, timeout=60000)
    assert handle.status == "error"
    assert isinstance(handle.error, InputError) and "takes no conditioning values" in str(handle.error)
