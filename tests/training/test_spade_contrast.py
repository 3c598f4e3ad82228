"""The closed-form contrast of zero-mean-texture spade models: offsets refitted on training slices,
named styles that paint their vendor's class means."""

from __future__ import annotations

import numpy as np
import torch

from napari_medgen.models import spade
from napari_medgen.data.label_stats import label_means
from napari_medgen.training.spade_contrast import fit_label_offsets, style_with_contrast


def slices_with_known_contrast(n: int = 60, z_dim: int = 3, seed: int = 0):
    """Slices whose label c has mean W_true[c] @ mu_i + b_true[c] (plus zero-mean texture) in slice i."""
    rng = np.random.default_rng(seed)
    w_true, b_true = rng.normal(0, 0.3, (3, z_dim)), np.array([-1.0, 0.2, 0.6])
    mu = rng.normal(0, 1, (n, z_dim))
    labels = np.zeros((n, 16, 16), np.int64)
    labels[:, 2:14, 2:14] = 1
    labels[:, 5:11, 5:11] = 2  # 36 pixels: >= MIN_PIXELS
    images = np.zeros(labels.shape)
    for i in range(n):
        for c in range(3):
            inside = labels[i] == c
            texture = rng.normal(0, 0.1, inside.sum())
            images[i][inside] = w_true[c] @ mu[i] + b_true[c] + texture - texture.mean()
    return mu, images, labels, w_true, b_true


def test_refit_recovers_the_linear_contrast_from_the_slices():
    mu, images, labels, w_true, b_true = slices_with_known_contrast()
    w, b = fit_label_offsets(mu, images, labels, np.zeros((3, 3)), np.zeros(3), ridge=1e-6)
    assert np.allclose(w, w_true, atol=1e-3) and np.allclose(b, b_true, atol=1e-3)


def test_refit_targets_the_noise_free_signal():
    mu, images, labels, w_true, b_true = slices_with_known_contrast()
    w, b = fit_label_offsets(mu, images, labels, np.zeros((3, 3)), np.zeros(3), ridge=1e-6,
                             to_signal=lambda levels: 0.5 * levels)
    assert np.allclose(w, 0.5 * w_true, atol=1e-3) and np.allclose(b, 0.5 * b_true, atol=1e-3)


def test_a_label_in_too_few_slices_keeps_its_weights():
    mu, images, labels, _, _ = slices_with_known_contrast(n=3)
    old_w, old_b = np.full((3, 3), 0.5), np.full(3, 0.25)
    w, b = fit_label_offsets(mu, images, labels, old_w, old_b)
    assert np.array_equal(w, old_w) and np.array_equal(b, old_b)


def test_style_with_contrast_paints_the_target_means_near_the_given_style():
    rng = np.random.default_rng(1)
    weight, bias = rng.normal(0, 1, (4, 6)), rng.normal(0, 1, 4)
    z0, target = rng.normal(0, 1, 6), np.array([0.1, np.nan, 0.9, -0.3])
    z = style_with_contrast(z0, weight, bias, target)
    known = ~np.isnan(target)
    assert np.allclose((weight @ z + bias)[known], target[known], atol=1e-3)
    assert not np.allclose((weight @ z0 + bias)[known], target[known], atol=1e-1)


def test_exported_zero_mean_texture_model_paints_each_vendors_training_means(tmp_path):
    from napari_medgen.models.synthesizer import Synthesizer
    from tests.models.test_spade import TINY, toy_slices
    from napari_medgen.training.spade_trainer import SpadeTrainer

    data = toy_slices()
    data.images[np.asarray(data.styles) == "b"] *= 0.5  # vendor b: half vendor a's contrast
    torch.manual_seed(0)
    trainer = SpadeTrainer(data, spade.network_config(**{**TINY, "zero_mean_texture": True}), seed=0, batch_size=4,
                           lr=2e-3, device="cpu", weights={"w_adv": 1.0, "w_fm": 10.0, "w_l1": 10.0, "w_kl": 0.05})
    for step in range(3):
        trainer.train_step(step)
    trainer.export(tmp_path / "m", {"training": {}})
    synth = Synthesizer(tmp_path / "m", device="cpu")
    styles = np.asarray(data.styles)
    for vendor in ("a", "b"):
        pick = styles == vendor
        want = label_means(data.images[pick], data.labels[pick], 3)
        out = synth.generator.decode(torch.nn.functional.one_hot(torch.as_tensor(data.labels[pick]), 3)
                                     .movedim(-1, 1).float(), torch.as_tensor(synth.resolve_style(vendor))[None]
                                     .expand(int(pick.sum()), -1))
        got = label_means(out[:, 0].detach().numpy(), data.labels[pick], 3)
        assert np.allclose(got, want, atol=0.02), (vendor, got, want)
