"""Usefulness experiment: arms, held-out Dice and cancellation, on a tiny 64 px phantom set."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.errors import Cancelled, InputError
from napari_medgen.progress import CancelToken, run_to_completion
from napari_medgen.tasks.usefulness import SegData, dice_per_class, phantom_data, segment, train_unet, usefulness


@pytest.fixture(autouse=True)
def one_thread():
    """UNet training steps are tiny: on a shared 2-core machine two torch threads only wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    # the phantom's own renderer stands in for the synthesis model here (tests only)
    return phantom_data(6, 8, 6, source="renderer", size=64)


def test_phantom_data_shapes_and_labels(tiny):
    real, syn, held = tiny
    assert real.images.shape == (6, 64, 64) and syn.images.shape == (8, 64, 64) and held.labels.shape == (6, 64, 64)
    assert 0 <= syn.images.min() and syn.images.max() <= 1 and syn.labels.max() <= 7
    assert not np.array_equal(real.labels, held.labels[:6])  # held-out subjects differ from training ones


def test_training_learns_the_body(tiny):
    real, _, held = tiny
    net = run_to_completion(train_unet(real, 8, 40, seed=0))
    d = dice_per_class(segment(net, held.images), held.labels, 8)
    assert d[0] > 0.8  # body is large and bright: 40 steps suffice, an untrained net scores far less


def test_experiment_table_has_all_arms(tiny, tmp_path):
    real, syn, held = tiny
    result = run_to_completion(usefulness(real, syn, held, steps=5, reduced_fraction=0.5, csv_path=tmp_path / "u.csv",
                                          plot_path=tmp_path / "u.png"))
    arms = [r["arm"] for r in result.rows]
    assert arms == ["real", "real+synthetic", "50% real", "50% real+synthetic"]
    assert [r["n_real"] for r in result.rows] == [6, 6, 3, 3] and [r["n_synthetic"] for r in result.rows] == [0, 8, 0, 8]
    assert all(0 <= r["dice_mean"] <= 1 for r in result.rows) and "dice_tumour" in result.rows[0]
    assert (tmp_path / "u.csv").read_text().startswith("arm,") and (tmp_path / "u.png").exists()


def test_synthetic_images_come_from_a_spade_model(tmp_path):
    import torch

    from napari_medgen.data.phantom import LABELS
    from napari_medgen.models.spade import build_spade, network_config
    from napari_medgen.models.store import save_model

    cfg = network_config(n_classes=8, input_shape=[64, 64], channels=[8, 16], spade_hidden=8, z_dim=4)
    torch.manual_seed(0)
    card = {"family": "spade", "network": cfg, "shape": [64, 64], "plane_spacing": [6.0, 6.0],
            "label_names": {str(k): v for k, v in LABELS.items()},
            "normalization": {"kind": "percentile", "low": 0.5, "high": 99.5, "lo_value": 0.0, "hi_value": 1.0}}
    save_model(tmp_path / "spade_tiny", build_spade(cfg), card)
    real, syn, _ = phantom_data(2, 3, 2, source=str(tmp_path / "spade_tiny"), size=64)
    assert syn.images.shape == (3, 64, 64) and np.isfinite(syn.images).all() and syn.images.max() <= 1
    assert not np.allclose(syn.images[0], syn.images[1])  # different label maps and styles


def test_cancel_and_bad_input(tiny):
    real, syn, held = tiny
    token = CancelToken()
    task = usefulness(real, syn, held, steps=50, cancel=token)
    next(task)
    token.cancel()
    with pytest.raises(Cancelled):
        run_to_completion(task)
    small = SegData(real.images[:, :32, :32], real.labels[:, :32, :32])
    with pytest.raises(InputError, match="same size"):
        run_to_completion(usefulness(small, syn, held, steps=1))
