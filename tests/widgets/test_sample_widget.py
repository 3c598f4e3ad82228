"""The "Sample (diffusion)" dock: Sample shows the layer at once and updates it; Cancel stops the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from qtpy.QtWidgets import QFormLayout

from napari_medgen.models.diffusion import build_unet
from napari_medgen.models.store import save_model
from napari_medgen.widgets.sample import AUTO, OUTPUT, SampleWidget

pytestmark = pytest.mark.gui

BUNDLES = Path(__file__).resolve().parent.parent / "fixtures" / "bundles"
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
    w = SampleWidget(viewer)
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
    w = SampleWidget(viewer)
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
    w = SampleWidget(viewer)
    viewer.add_labels(np.zeros((1, 16, 16), np.uint8), name="mask")
    assert [w.mask.itemText(i) for i in range(w.mask.count())] == ["(none)", "mask"]


def _card(tmp_path, name: str, objective: str, label_nc: int | None = None, names: list[str] | None = None):
    torch.manual_seed(0)
    net = {**NET, **({"label_nc": label_nc, "spade_intermediate_channels": 8} if label_nc else {})}
    names = names or [f"c{i}" for i in range(label_nc or 0)]
    card = {"family": "diffusion", "network": net, "shape": [16, 16], "spacing": [2.0, 2.0, 3.0],
            "scheduler": {"objective": objective, "num_train_timesteps": 1000},
            **({"label_names": {str(i): n for i, n in enumerate(names)}} if label_nc else {})}
    save_model(tmp_path / name, {"unet": build_unet(net)["unet"]}, card)
    return tmp_path / f"{name}.json"


def test_samplers_filtered_per_model(make_napari_viewer, tmp_path):
    w = SampleWidget(make_napari_viewer())
    items = lambda: [w.sampler.itemText(i) for i in range(w.sampler.count())]  # noqa: E731
    w.add_model(_card(tmp_path, "diffusion_flow", "rflow"))
    assert items() == [AUTO, "rflow"]
    w.add_model(_card(tmp_path, "diffusion_ddpm", "ddpm"))
    assert items() == [AUTO, "ddpm", "ddim"]


def test_bundle_conditions_are_named_fields(make_napari_viewer):
    """A published bundle's conditioning values appear as named fields with its defaults and ranges
    (read from its configs; no weights needed)."""
    w = SampleWidget(make_napari_viewer())
    w.add_model(BUNDLES / "brain_image_synthesis_latent_diffusion_model")
    labels = [w.conditions.itemAt(i, QFormLayout.LabelRole).widget().text() for i in range(w.conditions.rowCount())]
    assert labels == ["Gender", "Age", "Ventricular volume", "Brain volume"]
    age = w.condition_inputs["age"]
    assert (age.minimum(), age.maximum(), age.value()) == (0.0, 1.0, 0.1)
    age.setValue(0.7)
    assert w.condition() == {"gender": 0.0, "age": 0.7, "ventricular_vol": 0.2, "brain_vol": 0.4}
    w.add_model(BUNDLES / "maisi_ct_generative")
    region = w.condition_inputs["top_region"]
    assert [region.itemText(i) for i in range(region.count())][:2] == ["auto", "head"]
    assert w.condition_inputs["spacing_z"].maximum() == 5.0


def test_real_mask_of_any_size(make_napari_viewer, qtbot, tmp_path):
    """Issue 20: a 5 x 40 x 30 labels layer conditions a 16 x 16 mask model at the viewer's current slice;
    the samples come back on the layer's grid."""
    viewer = make_napari_viewer()
    w = SampleWidget(viewer)
    w.add_model(_card(tmp_path, "diffusion_mask", "ddpm", label_nc=3))
    data = np.zeros((5, 40, 30), np.uint8)
    data[:, :20] = 2
    viewer.add_labels(data, name="lesions", scale=(2.0, 1.0, 1.0))
    viewer.dims.set_point(0, 6.0)  # world z 6 mm = slice 3
    w.mask.setCurrentText("lesions")
    w.label_table.confirm_same_numbers()  # the layer's values are the model's class numbers
    w.steps.setValue(2)
    w.n.setValue(1)
    handle = w.sample()
    qtbot.waitUntil(lambda: handle.status is not None, timeout=60000)
    assert handle.status == "done", handle.error
    layer = viewer.layers[OUTPUT]
    assert layer.data.shape == (1, 1, 40, 30)
    np.testing.assert_allclose(layer.translate[-3], 6.0)  # placed at the slice it was sampled from


def test_mask_values_mapped_by_the_label_table(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """A lesion painted as 1 is never the model's class 1 ("body") unasked: Sample refuses, naming the layer and
    the model's classes, until the table (the Synthesize dock's) maps it; a name in the layer's features proposes
    the class of the same meaning."""
    import napari_medgen.widgets.sample as widget_mod

    errors = []
    monkeypatch.setattr(widget_mod, "show_error", errors.append)
    viewer = make_napari_viewer()
    w = SampleWidget(viewer)
    w.add_model(_card(tmp_path, "diffusion_mask", "ddpm", label_nc=3, names=["background", "body", "tumour"]))
    assert not w.label_table.isHidden() and w.label_map.isHidden()  # a card's classes: the table
    data = np.zeros((1, 16, 16), np.uint8)
    data[0, 4:12, 4:12] = 1
    layer = viewer.add_labels(data, name="lesion")
    w.mask.setCurrentText("lesion")
    assert w.label_table.values == [0, 1] and w.label_table.selected(0) == 0 and w.label_table.selected(1) is None
    assert w.sample() is None
    assert "Labels layer 'lesion' has label values that model 'diffusion_mask' has no class for: 1 (unnamed)" \
        in errors[-1] and "0 background, 1 body, 2 tumour" in errors[-1]
    layer.features = {"index": [0, 1], "name": ["", "Lesion"]}
    w.refresh_label_table()
    assert w.label_table.selected(1) == 2
    w.steps.setValue(1)
    handle = w.sample()
    qtbot.waitUntil(lambda: handle.status is not None, timeout=60000)
    assert handle.status == "done", handle.error
    assert viewer.layers[OUTPUT].metadata["notes"] == ["label values as the model's classes: 1 (Lesion) -> 2 tumour"]
    w.label_table.choose(1, 1)  # the user's own choice: body
    viewer.add_image(np.zeros((4, 4)), name="another layer")  # the dock's layer lists refresh; the choice stays
    assert w.label_map_specs(layer) == ["0=0", "1=1"]
