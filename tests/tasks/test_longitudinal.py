"""Synthetic follow-ups: geometry, what stays fixed, input checks, export, the trainer, and the shipped model's quality."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_medgen.errors import InputError, ModelError
from napari_medgen.io.readers import read_volume
from napari_medgen.io.volume import Volume
from napari_medgen.models.store import SHIPPED_DIR, save_model
from napari_medgen.models.temporal import ProgressionBank, TemporalAE
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.followup import FrameDifference, export_series
from napari_medgen.tasks.longitudinal import compare_series, predict_followups
from tests.benchmark_modules import load_benchmark

SIZE, PIXEL = 32, 12.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An untrained 32 x 32 temporal model (12 mm pixels) with a 5-entry progression bank."""
    torch.manual_seed(0)
    net = TemporalAE(8, size=SIZE, latent_channels=4, channels=(4, 8))
    with torch.no_grad():
        net.direction.copy_(torch.linspace(-1, 1, 4))
    bank = ProgressionBank(5, 4)
    bank.keys.normal_()
    bank.steps.normal_()
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(path, {"model": net, "bank": bank},
               {"family": "temporal", "network": {**net.config, "bank_size": 5}, "shape": [SIZE, SIZE],
                "pixel_mm": PIXEL, "tracked_label": 7, "label_names": {"0": "background", "7": "tumour"}})
    return str(path)


def _baseline(shape=(4, SIZE, SIZE), spacing=(PIXEL, PIXEL, 5.0)):
    rng = np.random.default_rng(0)
    image = Volume(rng.uniform(0, 1, shape).astype(np.float32), spacing, (10.0, -20.0, 30.0))
    labels = np.ones(shape, np.uint8)
    labels[1, 10:20, 10:20] = 7  # only slice 1 holds the tracked structure
    return image, Volume(labels, spacing, (10.0, -20.0, 30.0), is_label=True)


def test_series_keeps_geometry_and_baseline_first(tiny):
    image, labels = _baseline()
    r = run_to_completion(predict_followups(image, tiny, labels=labels, steps=3, time_spacing=2.0, refine_steps=2))
    assert r.image.data.shape == (4,) + image.data.shape and r.labels.data.shape == r.image.data.shape
    assert r.image.spacing == image.spacing and r.image.origin == image.origin
    np.testing.assert_array_equal(r.image.data[0], image.data)
    np.testing.assert_array_equal(r.labels.data[0], labels.data)
    assert r.image.metadata["times"] == [0.0, 2.0, 4.0, 6.0] and r.notes == []
    assert len(r.tracked_ml) == 4 and r.tracked_ml[0] == pytest.approx(100 * PIXEL * PIXEL * 5.0 / 1000)


def test_slices_without_the_tracked_structure_stay_fixed(tiny):
    image, labels = _baseline()
    r = run_to_completion(predict_followups(image, tiny, labels=labels, steps=2, refine_steps=0))
    assert r.slices == [1]
    for z in (0, 2, 3):
        np.testing.assert_array_equal(r.image.data[:, z], np.repeat(image.data[None, z], 3, 0))
    assert np.abs(r.image.data[2, 1] - image.data[1]).max() > 0  # the model did change the tumour slice


def test_manifold_method_and_difference_map(tiny):
    image, labels = _baseline()
    a = run_to_completion(predict_followups(image, tiny, labels=labels, steps=2, refine_steps=0))
    b = run_to_completion(predict_followups(image, tiny, labels=labels, steps=2, refine_steps=0, method="manifold"))
    assert not np.allclose(a.image.data[2], b.image.data[2])
    diff = FrameDifference(b.image.data, 2)
    assert diff.shape == image.data.shape and diff.dtype == np.float32
    np.testing.assert_allclose(np.asarray(diff), b.image.data[2] - image.data, atol=1e-6)
    np.testing.assert_allclose(diff[1, 3:5], (b.image.data[2] - image.data)[1, 3:5], atol=1e-6)  # only that part
    with pytest.raises(InputError):
        FrameDifference(b.image.data, 3)


def test_other_grid_is_resampled_with_a_note(tiny):
    image, labels = _baseline(shape=(2, 48, 40), spacing=(8.0, 8.0, 5.0))
    labels.data[0, 20:26, 18:24] = 7
    r = run_to_completion(predict_followups(image, tiny, labels=labels, steps=1, refine_steps=0))
    assert r.image.data.shape == (2, 2, 48, 40)
    assert r.notes and "resampled" in r.notes[0] and r.image.metadata["notes"] == r.notes


def test_bad_inputs_give_clear_errors(tiny, tmp_path):
    image, labels = _baseline()
    ct = image.with_data(image.data * 1000 - 1000)
    with pytest.raises(InputError, match="Hounsfield.*trained on MR.*without a model"):
        run_to_completion(predict_followups(ct, tiny))
    relabelled = labels.with_data(np.where(labels.data == 7, 200, 1).astype(np.uint8))
    with pytest.raises(InputError, match="follows label 7 \\(tumour\\).*no label 7 \\(it holds 1, 200\\)"):
        run_to_completion(predict_followups(image, tiny, labels=relabelled))
    with pytest.raises(InputError, match="follows label 7 \\(tumour\\).*is label 200"):
        run_to_completion(predict_followups(image, tiny, labels=relabelled, tracked=200))
    with pytest.raises(InputError, match="time series"):
        run_to_completion(predict_followups(image.with_data(np.stack([image.data] * 2)), tiny))
    with pytest.raises(InputError, match="shape"):
        run_to_completion(predict_followups(image, tiny, labels=labels.with_data(labels.data[:2])))
    with pytest.raises(InputError, match="k >= 1"):  # k = 0 wrote NaN images
        run_to_completion(predict_followups(image, tiny, labels=labels, method="manifold", k=0))
    for rate in (float("nan"), 0.0, -1.0):
        with pytest.raises(InputError, match="rate must be a finite number above 0"):
            run_to_completion(predict_followups(image, tiny, labels=labels, rate=rate))
    other = tmp_path / "other"
    save_model(other, TemporalAE(8, size=SIZE, latent_channels=4, channels=(4, 8)), {"family": "vae", "network": {}})
    with pytest.raises(ModelError, match="temporal"):
        run_to_completion(predict_followups(image, other))


@pytest.mark.parametrize("single", [True, False])
def test_export_round_trip(tiny, tmp_path, single):
    image, labels = _baseline()
    r = run_to_completion(predict_followups(image, tiny, labels=labels, steps=2, refine_steps=0))
    paths = export_series(r, tmp_path, single_file=single)
    assert len(paths) == (2 if single else 6) + 2  # + difference series, volumes.csv
    back = read_volume(paths[0])
    expected = r.image.data if single else r.image.data[0]
    np.testing.assert_allclose(back.data, expected, atol=1e-4)
    np.testing.assert_allclose(back.spacing, image.spacing)


def test_compare_series_scores_a_perfect_prediction(tiny):
    image, labels = _baseline()
    r = run_to_completion(predict_followups(image, tiny, labels=labels, steps=1, refine_steps=0))
    true_img, true_lab = r.image, r.labels  # the prediction compared with itself
    s = compare_series(r, true_img, true_lab, 7)
    np.testing.assert_allclose(s["dice"], 1.0)
    np.testing.assert_allclose(s["volume_error"], 0.0)
    assert s["mad_outside"][0] == 0.0


def test_trainer_is_deterministic_and_resumes():
    from napari_medgen.training.registry import TrainConfig, make_trainer

    cfg = {"sample": "phantom", "steps": 4, "batch_size": 2,
           "extra": {"n_subjects": 2, "size": 32, "bank_size": 2, "adv_start": 0.0, "series_length": 4}}
    a = make_trainer("temporal", TrainConfig(**cfg))
    first = a.train_step(0)
    assert set(first) >= {"loss", "rec", "seg", "cons", "adv", "d"} and np.isfinite(first["loss"])
    state = copy.deepcopy(a.state_dict())  # as a checkpoint on disk would be: no shared tensors
    b = make_trainer("temporal", TrainConfig(**cfg))
    b.load_state_dict(state)
    torch.manual_seed(1)
    la = a.train_step(1)
    torch.manual_seed(1)
    lb = b.train_step(1)
    assert la["loss"] == pytest.approx(lb["loss"], rel=1e-5)
    with pytest.raises(InputError, match="phantom"):
        make_trainer("temporal", TrainConfig(sample="brain", steps=1))


SHIPPED = SHIPPED_DIR / "temporal_phantom.json"
DICE_BAR, VOLUME_BAR = 0.8, 0.15  # the bars, at the first follow-ups


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped temporal model not built")
@pytest.mark.parametrize("method", ["direction", "manifold"])
def test_shipped_model_on_heldout_subjects(method):
    """Held-out phantom subjects (never trained on): tumour Dice and volume error at the first follow-ups,
    with the learned direction and with the nearest training progressions."""
    from napari_medgen.models.temporal import TemporalModel

    bench = load_benchmark("longitudinal")

    scores = bench.evaluate(TemporalModel.load(SHIPPED), subjects=3, steps=2, method=method, with_labels=True)
    assert scores["dice"][:, 1:].mean(0).min() >= DICE_BAR
    assert np.abs(scores["volume_error"][:, 1:]).mean(0).max() <= VOLUME_BAR
    assert np.all(np.diff(scores["pred_ml"], axis=1) < 0)  # the tumour shrinks at every step
    assert scores["mad_outside"][:, 1:].mean() < 0.02


@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped temporal model not built")
def test_calibrated_rate_matches_the_data_change_per_step():
    """The card's time_rate, fitted on training-distribution series, is found again on other fresh
    series, and it is the rate predict_followups uses by default."""
    from napari_medgen.models.temporal import TemporalModel, calibrate_rate
    from napari_medgen.training.temporal_trainer import HELDOUT_SEED_START, PIXEL_MM, phantom_series_2d

    model = TemporalModel.load(SHIPPED)
    assert 0.2 < model.card["time_rate"] < 5
    rng = np.random.default_rng(123)
    series = []
    for _ in range(3):
        img, lab, _ = phantom_series_2d(int(rng.integers(HELDOUT_SEED_START)), model.size, 3, 14.0, rng)
        series.append((img, lab))
    rate = model.card["time_rate"]
    assert calibrate_rate(model, series)["time_rate"] == pytest.approx(rate, rel=0.25)  # other series, same fit
    spacing = (PIXEL_MM, PIXEL_MM, 5.0)
    image, labels = Volume(series[0][0][:, None], spacing), Volume(series[0][1][:, None], spacing, is_label=True)
    default = run_to_completion(predict_followups(image.frame(0), model, labels=labels.frame(0), steps=1))
    explicit = run_to_completion(predict_followups(image.frame(0), model, labels=labels.frame(0), steps=1, rate=rate))
    np.testing.assert_array_equal(default.labels.data, explicit.labels.data)


def test_breathing_series_grow_the_lungs_and_the_setting_is_checked():
    """Breathing series: phase rises by 0.2 per step from exhale; near the lung base the descending diaphragm
    uncovers lung (a large step), at the tumour level the lungs only grow in-plane (a few % per step)."""
    from napari_medgen.training.registry import TrainConfig, make_trainer
    from napari_medgen.training.temporal_trainer import breathing_series_2d

    _, low, f = breathing_series_2d(5, n=4, level_mm=-60.0, rng=np.random.default_rng(5))
    _, high, _ = breathing_series_2d(5, n=4, level_mm=-20.0, rng=np.random.default_rng(5))
    assert f["breathing_phases"] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    low_area, high_area = (low == 2).sum((1, 2)), (high == 2).sum((1, 2))
    assert np.all(np.diff(low_area) > 0) and np.all(np.diff(high_area) > 0)
    assert low_area[1] / low_area[0] > 1.3  # diaphragm: about +60 % lung area in one step at this level
    assert 1.005 < high_area[1] / high_area[0] < 1.06  # in-plane growth only: about +2 %
    assert np.all((low == 7).sum((1, 2)) == (low == 7).sum((1, 2))[0])  # the tumour stays as it is
    trainer = make_trainer("temporal", TrainConfig(sample="phantom", steps=1, batch_size=2, extra={
        "series": "breathing", "n_subjects": 2, "size": 32, "series_length": 3, "bank_size": 2}))
    assert trainer.tracked == 2 and np.isfinite(trainer.train_step(0)["tracked_dice"])
    with pytest.raises(InputError, match="Unknown series 'lungs'.*tumour, breathing"):
        make_trainer("temporal", TrainConfig(sample="phantom", steps=1, extra={"series": "lungs"}))


SHIPPED_BREATHING = SHIPPED_DIR / "temporal_breathing.json"


@pytest.mark.skipif(not SHIPPED_BREATHING.is_file(), reason="shipped breathing model not built")
def test_shipped_breathing_model_on_heldout_subjects():
    """3 held-out breathing series (never trained on): lung Dice and area error at the first follow-ups, the
    predicted lung area growing at every step to full inhale, the card describing the series."""
    from napari_medgen.models.temporal import TemporalModel

    model = TemporalModel.load(SHIPPED_BREATHING)
    assert model.card["series"] == "breathing" and model.tracked == 2 and model.tracked_name == "lung"
    assert "breathing phase" in model.card["time_step"] and model.card["time_rate"] > 0
    scores = load_benchmark("longitudinal").evaluate(model, subjects=3, steps=5, method="direction", with_labels=True)
    assert scores["dice"][:, 1:3].mean(0).min() >= DICE_BAR
    assert np.abs(scores["volume_error"][:, 1:3]).mean(0).max() <= VOLUME_BAR
    assert np.all(np.diff(scores["pred_ml"], axis=1) > 0)  # the lungs grow at every step
    assert scores["mad_outside"][:, 1:3].mean() < 0.02
