"""Quality metrics agree with known cases: identical sets, growing noise, an inserted training image."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from napari_medgen.errors import Cancelled, InputError, ModelError
from napari_medgen.models.features import (DEFAULT_MODEL, FeatureExtractor, build_feature_encoder, load_extractor,
                                           load_resnet_extractor)
from napari_medgen.progress import CancelToken, run_to_completion
from napari_medgen.tasks import evaluate as ev

NOISE = (0.05, 0.1, 0.2, 0.4)


def blobs(n: int, seed: int, size: int = 64) -> np.ndarray:
    """n images (n, size, size): a bright ellipse of random centre/radius on a dark background, plus texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        cy, cx = rng.normal(size / 2, size / 12, 2)
        ry, rx = rng.uniform(size / 8, size / 3, 2)
        im = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1).astype(np.float32)
        out.append(im + 0.05 * rng.normal(size=(size, size)))
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    torch.manual_seed(0)
    return FeatureExtractor(build_feature_encoder({})["encoder"], (64, 64), 1, "random-init")


def noisy(images: np.ndarray, sigma: float, seed: int = 7) -> np.ndarray:
    return (images + np.random.default_rng(seed).normal(0, sigma, images.shape)).astype(np.float32)


def test_identical_sets_score_zero_and_noise_scores_worse_monotonically(extractor):
    real = blobs(48, 0)
    f_real = extractor(real)
    fd0, mmd0 = ev.frechet_distance(f_real, f_real), ev.mmd(f_real, f_real)
    fds, mmds, ssims, psnrs = [], [], [], []
    for s in NOISE:
        fake = noisy(real, s)
        f_fake = extractor(fake)
        fds.append(ev.frechet_distance(f_real, f_fake))
        mmds.append(ev.mmd(f_real, f_fake))
        ssim, psnr = ev.paired_ssim_psnr(real, fake)
        ssims.append(ssim.mean())
        psnrs.append(psnr.mean())
    assert abs(fd0) < 1e-6 * fds[-1] + 1e-9
    assert abs(mmd0) < 0.5 * mmds[0] and abs(mmd0) < 0.05 * mmds[-1]
    assert np.all(np.diff(fds) > 0), fds
    assert np.all(np.diff(mmds) > 0), mmds
    assert np.all(np.diff(ssims) < 0) and np.all(np.diff(psnrs) < 0), (ssims, psnrs)


def test_paired_identical_images_are_perfect():
    real = blobs(4, 1)
    ssim, psnr = ev.paired_ssim_psnr(real, real.copy())
    assert np.allclose(ssim, 1.0, atol=1e-4) and np.all(psnr > 60)


def test_memorisation_flags_an_inserted_training_image():
    training = blobs(30, 2)
    synthetic = blobs(10, 3)
    synthetic[4] = noisy(training[17][None], 0.005)[0]
    dist, nearest, flagged = ev.memorization(synthetic, training, threshold=0.03)
    assert flagged.tolist() == [i == 4 for i in range(10)]
    assert nearest[4] == 17 and dist[4] < 0.03 < dist[np.arange(10) != 4].min()


def test_diversity_is_lower_for_a_set_of_repeats():
    varied = blobs(16, 4)
    repeats = noisy(np.repeat(varied[:1], 16, axis=0), 0.02)
    assert ev.ms_ssim_diversity(repeats) > ev.ms_ssim_diversity(varied) + 0.2


def test_evaluate_runs_end_to_end_and_exports(tmp_path, extractor):
    real, synthetic = blobs(20, 5), noisy(blobs(20, 6), 0.1)
    synthetic[3] = real[8]
    result = run_to_completion(ev.evaluate(real, synthetic, extractor=extractor, csv_path=tmp_path / "q.csv",
                                           plot_path=tmp_path / "q.png"))
    t = result.table
    assert t["n_pairs"] == 20 and 0 < t["ssim_mean"] < 1 and t["frechet_distance"] > 0
    assert t["near_copies"] == 1 and result.near_copies[0][:2] == ("#3", "#8")
    rows = dict(csv.reader((tmp_path / "q.csv").open()))
    assert float(rows["frechet_distance"]) == pytest.approx(t["frechet_distance"], rel=1e-3)
    assert "near-copy: #3" in rows
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_stops_when_cancelled(extractor):
    token = CancelToken()
    task = ev.evaluate(blobs(4, 0), blobs(4, 1), extractor=extractor, cancel=token)
    next(task)
    token.cancel()
    with pytest.raises(Cancelled):
        run_to_completion(task)


def test_local_resnet_state_dict_loads_safely(tmp_path):
    from monai.networks.nets import ResNet

    torch.manual_seed(0)
    net = ResNet("basic", [2, 2, 2, 2], [64, 128, 256, 512], spatial_dims=2, n_input_channels=3,
                 conv1_t_size=7, conv1_t_stride=2, num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    ext = load_resnet_extractor(path, size=64)
    feats = ev.extract_features(blobs(3, 0), ext)
    assert feats.shape == (3, 512) and np.all(np.isfinite(feats))
    vols = np.stack([blobs(2, 0), blobs(2, 1)])  # two volumes of two slices: features averaged per volume
    assert ev.extract_features(vols, ext).shape == (2, 512)

    pickled = tmp_path / "whole_model.pt"
    torch.save(net, pickled)  # a pickled module, not a state dict: must be refused, never unpickled
    with pytest.raises(ModelError, match="whole_model.pt"):
        load_resnet_extractor(pickled)


def test_shipped_encoder_separates_noisy_images():
    """Model-quality check of the shipped feature encoder: FD grows with noise and dwarfs the identical-set value."""
    ext = load_extractor("default")
    assert DEFAULT_MODEL.with_suffix(".json").is_file()
    real = blobs(48, 0)
    f = ext(real)
    fds = [ev.frechet_distance(f, ext(noisy(real, s))) for s in NOISE]
    assert np.all(np.diff(fds) > 0), fds
    assert abs(ev.frechet_distance(f, f)) < 1e-3 * fds[0]


def test_cli_evaluate_and_anomaly_on_files(tmp_path, capsys):
    from napari_medgen.cli import main
    from napari_medgen.data.phantom import make_phantom
    from napari_medgen.io.readers import read_volume
    from napari_medgen.io.writers import write_volume

    for folder, noise in (("real", 0.02), ("synthetic", 0.1)):
        for seed in range(3):
            write_volume(make_phantom(seed=seed, shape=(2, 64, 64), noise=noise)[0], tmp_path / folder / f"s{seed}.nii.gz")
    assert main(["--quiet", "evaluate", "--real", str(tmp_path / "real"), "--synthetic", str(tmp_path / "synthetic"),
                 "--csv", str(tmp_path / "q.csv")]) == 0
    rows = dict(csv.reader((tmp_path / "q.csv").open()))
    assert int(rows["n_pairs"]) == 6 and float(rows["ssim_mean"]) < 0.99  # paired by file name and slice
    image, labels = make_phantom(seed=2_000_003, shape=(1, 128, 128))
    write_volume(image, tmp_path / "img.nii.gz")
    write_volume(labels, tmp_path / "lab.nii.gz")
    assert main(["--quiet", "anomaly", "--image", str(tmp_path / "img.nii.gz"), "--labels", str(tmp_path / "lab.nii.gz"),
                 "--out", str(tmp_path / "heat.nrrd")]) == 0
    assert float(capsys.readouterr().out.split("ROC AUC (label 7):")[1]) >= 0.9
    heat = read_volume(tmp_path / "heat.nrrd")
    assert heat.data.shape == image.data.shape and np.allclose(heat.spacing, image.spacing)
    assert main(["--quiet", "evaluate", "--real", str(tmp_path / "nowhere"), "--synthetic", str(tmp_path)]) == 2


def test_medicalnet_style_3d_resnet_gives_one_feature_per_volume(tmp_path):
    from monai.networks.nets import ResNet

    torch.manual_seed(0)
    net = ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], spatial_dims=3, n_input_channels=1, conv1_t_size=7,
                 conv1_t_stride=2, shortcut_type="A", bias_downsample=False)
    path = tmp_path / "resnet_10.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")}}, path)
    ext = load_resnet_extractor(path, size=24)
    assert ext.spatial_dims == 3
    real = [blobs(8, s, size=32) for s in range(4)]  # four volumes of 8 slices
    fake = [noisy(v, 0.3) for v in real]
    result = run_to_completion(ev.evaluate(real, fake, extractor=ext))
    assert result.table["n_real"] == 32 and result.table["frechet_distance"] > 0
    assert ev.set_features(ev.load_image_set(real), ext).shape == (4, 64)
    with pytest.raises(InputError, match="3D"):
        ev.set_features(ev.load_image_set(blobs(4, 0)), ext)


def test_arrays_of_different_lengths_are_not_paired(extractor):
    result = run_to_completion(ev.evaluate(blobs(6, 0), blobs(9, 1), extractor=extractor))
    assert "n_pairs" not in result.table and "No pairs" in result.notes[0]
