"""Anomaly maps from the shipped normal-anatomy VAE: an unseen tumour stands out (AUC bar 0.9)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.data.phantom import STYLES, make_phantom
from napari_medgen.errors import InputError, ModelError
from napari_medgen.models.anomaly_ae import phantom_tumour_auc
from napari_medgen.models.families import load_model
from napari_medgen.progress import CancelToken, run_to_completion
from napari_medgen.tasks.anomaly import DEFAULT_MODEL, anomaly_map, tumour_auc
from napari_medgen.training.loop import train
from napari_medgen.training.registry import TrainConfig, make_trainer

UNSEEN = 2_000_000  # training drew seeds below 1,000,000 and never had a tumour


@pytest.mark.parametrize("style", STYLES)
def test_unseen_tumour_stands_out(style):
    image, labels = make_phantom(seed=UNSEEN, shape=(1, 128, 128), tumour_radius_mm=12.0, style=style)
    heat = run_to_completion(anomaly_map(image))
    assert heat.data.shape == image.data.shape and heat.spacing == image.spacing and heat.origin == image.origin
    assert not heat.is_label
    assert tumour_auc(heat, labels) >= 0.9


def test_score_comes_from_the_tumour_not_its_location():
    with_t, labels = make_phantom(seed=UNSEEN + 1, shape=(1, 128, 128), tumour_radius_mm=12.0)
    without, _ = make_phantom(seed=UNSEEN + 1, shape=(1, 128, 128), tumour_radius_mm=0.0)
    mask = labels.data == 7
    s_with = run_to_completion(anomaly_map(with_t)).data[mask].mean()
    s_without = run_to_completion(anomaly_map(without)).data[mask].mean()
    assert s_with > 2 * s_without


def test_3d_volume_is_scored_slice_by_slice_and_cancels():
    image, _ = make_phantom(seed=UNSEEN, shape=(4, 64, 64), tumour_radius_mm=12.0)
    heat = run_to_completion(anomaly_map(image, chunk=2))
    assert heat.data.shape == (4, 64, 64) and np.isfinite(heat.data).all() and heat.data.max() > 0
    token = CancelToken()
    task = anomaly_map(image, chunk=1, cancel=token)
    next(task)
    token.cancel()
    with pytest.raises(Exception, match="cancelled"):
        run_to_completion(task)


def test_bad_inputs_are_refused(tmp_path):
    image, labels = make_phantom(seed=0, shape=(1, 32, 32))
    with pytest.raises(InputError, match="label map"):
        run_to_completion(anomaly_map(labels))
    with pytest.raises(InputError, match="no voxel"):
        tumour_auc(image.data, np.zeros_like(labels.data))
    card = tmp_path / "other.json"
    card.write_text('{"family": "feature_encoder", "network": {}}')
    with pytest.raises(ModelError):
        run_to_completion(anomaly_map(image, tmp_path / "other"))


def test_trainer_trains_exports_and_reloads(tmp_path):
    cfg = TrainConfig(sample="phantom", seed=0, steps=2, batch_size=2, lr=1e-3, device="cpu",
                      extra={"in_shape": [32, 32], "channels": [4, 8], "strides": [2, 2], "latent_size": 8,
                             "styles": ["mr_vendor_a"]})
    trainer = make_trainer("anomaly_ae", cfg)
    result = run_to_completion(train(trainer, 2, tmp_path / "work", checkpoint_every=1))
    assert result.status == "done" and np.isfinite(result.history[-1]["loss"])
    trainer.export(tmp_path / "tiny", {"training": {"seed": 0}})
    modules, card = load_model(tmp_path / "tiny")
    assert card["family"] == "anomaly_ae" and 0.0 <= card["metrics"]["auc_mean"] <= 1.0
    assert set(phantom_tumour_auc(modules["model"], [UNSEEN], ["ct"])) == {"auc_ct", "auc_mean"}


def test_shipped_model_card_records_its_auc():
    _, card = load_model(DEFAULT_MODEL)
    assert card["metrics"]["auc_mean"] >= 0.9 and "medgen" in card["training"]["command"]
