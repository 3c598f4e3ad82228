"""tasks/synthesize and ``medgen synthesize``: geometry, styles, bad input (tiny untrained model), and the
quality bars of the shipped models (brain SSIM and tissue order, phantom vendor-style correlation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medgen.cli import main
from napari_medgen.errors import Cancelled, InputError
from napari_medgen.io.volume import Volume
from napari_medgen.models import spade
from napari_medgen.progress import CancelToken, run_to_completion
from napari_medgen.tasks.synthesize import (Synthesizer, heldout_slice_quality, shipped_models,
                                            style_transfer_correlation, synthesize)
from napari_medgen.training.spade_trainer import BRAIN_HOLDOUT_EVERY, PHANTOM_HOLDOUT_SEEDS, SpadeTrainer

from ..models.test_spade import TINY, toy_slices


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Synthesizer:
    """An untrained tiny model (3 classes, 32 x 32 slices at 2 mm, styles "a" and "b")."""
    torch.manual_seed(0)
    trainer = SpadeTrainer(toy_slices(), spade.network_config(**TINY), seed=0, batch_size=4, lr=1e-3, device="cpu",
                           weights={"w_adv": 1.0, "w_fm": 10.0, "w_l1": 10.0, "w_kl": 0.05})
    path = tmp_path_factory.mktemp("toy") / "toy_spade"
    trainer.export(path, {"training": {"command": "test fixture"}})
    return Synthesizer(path, device="cpu")


def label_volume(shape=(6, 30, 28), spacing=(2.0, 2.0, 2.0), seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 3, size=shape).astype(np.uint8)
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return Volume(data, spacing, (-10.0, 5.0, 3.0), direction, is_label=True, metadata={"source": "lab.nii.gz"})


def test_output_has_the_labels_geometry_and_matches_the_fast_path(toy_model):
    labels = label_volume(spacing=(2.0, 2.0, 2.0))
    labels.direction = np.eye(3)
    image = run_to_completion(synthesize(labels, toy_model, style="vendor:a", batch=4))
    assert image.data.shape == labels.data.shape and image.data.dtype == np.float32 and not image.is_label
    assert image.spacing == labels.spacing and image.origin == labels.origin
    np.testing.assert_array_equal(image.direction, labels.direction)
    assert image.metadata["notes"] == [] and image.metadata["synthesis"]["slice_axis"] == 0
    fast = toy_model.synthesize_slices(labels.data[2:4], toy_model.named_styles()["a"])
    np.testing.assert_allclose(fast, image.data[2:4], atol=1e-5)
    assert np.ptp(image.data) > 0


def test_slice_axis_follows_the_thick_axis_and_partial_slices(toy_model):
    labels = label_volume(shape=(28, 30, 5), spacing=(6.0, 2.0, 2.0))  # x is the thick axis
    image = run_to_completion(synthesize(labels, toy_model, slices=[1, 3]))
    assert image.metadata["synthesis"]["slice_axis"] == 2
    assert np.all(image.data[..., [0, 2, 4]] == 0) and np.all(np.ptp(image.data[..., [1, 3]], axis=(0, 1)) > 0)


def test_far_spacing_is_resampled_with_a_note_and_mapped_back(toy_model):
    labels = label_volume(shape=(3, 80, 90), spacing=(0.5, 0.5, 4.0))
    image = run_to_completion(synthesize(labels, toy_model))
    assert image.data.shape == (3, 80, 90)
    assert len(image.metadata["notes"]) == 1 and "resampled" in image.metadata["notes"][0]


def test_progress_previews_and_cancel(toy_model):
    labels = label_volume()
    n = labels.data.shape[toy_model.check_labels(labels).axis]
    steps = list(_progress(synthesize(labels, toy_model, batch=4)))
    assert [p.step for p in steps] == [0, *range(4, n, 4), n] and steps[-1].preview.shape == labels.data.shape
    token = CancelToken()
    task = synthesize(labels, toy_model, batch=2, cancel=token)
    next(task)
    token.cancel()
    with pytest.raises(Cancelled):
        next(task)


def _progress(task):
    while True:
        try:
            yield next(task)
        except StopIteration:
            return


@pytest.mark.parametrize("data, message", [
    (np.array([0, 1, 5, 7], np.int16), "label values 5, 7"),
    (np.array([0.0, 0.5, 1.0], np.float32), "non-integer"),
    (np.array([0, -1, 2], np.int32), "label values -1"),
])
def test_bad_labels_are_refused_with_a_plain_message(toy_model, data, message):
    labels = np.zeros((2, 32, 32), data.dtype)
    labels[0, 0, : data.size] = data
    with pytest.raises(InputError, match=message) as err:
        toy_model.synthesize_slices(labels, toy_model.random_style(0))
    assert "3 classes" in str(err.value) or "label map" in str(err.value)
    with pytest.raises(InputError, match=message):
        run_to_completion(synthesize(Volume(labels, is_label=True), toy_model))


def test_integer_valued_float_labels_are_accepted_and_4d_refused(toy_model):
    labels = np.ones((1, 32, 32), np.float32)
    assert toy_model.synthesize_slices(labels, toy_model.mean_style()).shape == (1, 32, 32)
    with pytest.raises(InputError, match="4D"):
        run_to_completion(synthesize(Volume(np.zeros((2, 2, 32, 32), np.uint8), is_label=True), toy_model))


def test_styles(toy_model):
    a, b = toy_model.named_styles()["a"], toy_model.named_styles()["b"]
    np.testing.assert_array_equal(toy_model.resolve_style("vendor:a"), a)
    np.testing.assert_allclose(toy_model.interpolate(a, b, 0.0), a)
    np.testing.assert_allclose(toy_model.interpolate(a, b, 1.0), b)
    np.testing.assert_array_equal(toy_model.random_style(3), toy_model.random_style(3))
    assert not np.allclose(toy_model.random_style(3), toy_model.random_style(4))
    with pytest.raises(InputError, match="vendor:a"):
        toy_model.resolve_style("vendor:nope")
    with pytest.raises(InputError, match="4 values"):
        toy_model.resolve_style(np.zeros(3))
    data = toy_slices(4, seed=3)
    style = toy_model.encode_style(data.images, data.labels)
    assert style.shape == (toy_model.style_dim,) and np.all(np.isfinite(style))


def test_cli_writes_a_geometry_correct_nifti(toy_model, tmp_path, capsys):
    from napari_medgen.io.readers import read_volume
    from napari_medgen.io.writers import write_volume

    labels = label_volume(shape=(4, 30, 28), spacing=(2.0, 2.0, 3.0))
    write_volume(labels, tmp_path / "lab.nii.gz")
    out = tmp_path / "syn.nii.gz"
    assert main(["--quiet", "synthesize", "--labels", str(tmp_path / "lab.nii.gz"), "--model", toy_model.path,
                 "--style", "vendor:b", "--out", str(out)]) == 0
    image, back = read_volume(out, as_label=False), read_volume(tmp_path / "lab.nii.gz")
    assert image.data.shape == back.data.shape
    np.testing.assert_allclose(image.affine(), back.affine(), atol=1e-4)
    write_volume(labels.with_data(labels.data + 0.5, is_label=False), tmp_path / "float.nii.gz")
    assert main(["--quiet", "synthesize", "--labels", str(tmp_path / "float.nii.gz"), "--model", toy_model.path,
                 "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "non-integer" in capsys.readouterr().err and not (tmp_path / "x.nii.gz").exists()


# --- shipped models: the quality bars -------------------------------------------------------

@pytest.mark.slow
def test_brain_model_heldout_ssim_and_tissue_order():
    from napari_medgen.data.samples import brain_sample

    synth = Synthesizer(shipped_models()["spade_brain"], device="cpu")
    image, labels = brain_sample()
    held = [z for z in range(labels.data.shape[0]) if z % BRAIN_HOLDOUT_EVERY == BRAIN_HOLDOUT_EVERY // 2]
    q = heldout_slice_quality(synth, image, labels, held)
    assert len(q["slices"]) >= 8
    assert q["ssim_mean"] >= 0.6, q["ssim"]
    real, fake = q["real_label_means"], q["synthetic_label_means"]
    assert real[3] > real[2] > real[1]  # T1: white matter > grey matter > CSF in the real image ...
    assert fake[3] > fake[2] > fake[1], fake  # ... and in the synthetic one


@pytest.mark.slow
@pytest.mark.parametrize("vendor", ["mr_vendor_a", "mr_vendor_b", "mr_vendor_c"])
def test_phantom_style_from_a_reference_reproduces_its_label_means(vendor):
    from napari_medgen.data.phantom import make_phantom

    synth = Synthesizer(shipped_models()["spade_phantom"], device="cpu")
    reference = make_phantom(seed=PHANTOM_HOLDOUT_SEEDS[0], style=vendor, shape=(16, 128, 128))
    _, target = make_phantom(seed=PHANTOM_HOLDOUT_SEEDS[1], shape=(16, 128, 128))
    assert style_transfer_correlation(synth, reference, target) >= 0.9
