"""models/acquisition_noise: measuring a scan's noise in its background, adding it back, and the
spade trainer/synthesizer path that uses it (the generator draws the noise-free image)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medgen.data.phantom import make_phantom
from napari_medgen.errors import InputError, ModelError
from napari_medgen.models import spade
from napari_medgen.models.acquisition_noise import NoiseModel, estimate
from napari_medgen.models.synthesizer import Synthesizer
from napari_medgen.training.spade_trainer import SpadeTrainer

from .test_spade import TINY, toy_slices


@pytest.mark.parametrize(("style", "kind", "sigma"), [("mr_vendor_b", "rician", 0.03), ("ct", "gaussian", 20.0)])
def test_estimate_recovers_the_renderers_noise(style, kind, sigma):
    noise = sigma if kind == "rician" else sigma / 1000.0  # the phantom's CT noise is given per 1000 HU
    image, labels = make_phantom(seed=3, style=style, shape=(8, 96, 96), noise=noise)
    got = estimate(image.data, labels.data, kind)
    assert got.kind == kind and got.sigma == pytest.approx(sigma, rel=0.05)


def test_rician_noise_in_air_is_rayleigh_and_keeps_gradients():
    clean = torch.zeros(200_000, requires_grad=True)
    noisy = NoiseModel("rician", 0.5).apply(clean, torch.Generator().manual_seed(0))
    assert float(noisy.detach().mean()) == pytest.approx(0.5 * np.sqrt(np.pi / 2), rel=0.02)
    bright = NoiseModel("rician", 0.5).apply(torch.full((200_000,), 10.0), torch.Generator().manual_seed(0))
    assert float(bright.std()) == pytest.approx(0.5, rel=0.03)  # high signal: nearly Gaussian
    noisy.sum().backward()
    assert clean.grad is not None and torch.isfinite(clean.grad).all()


def test_bad_noise_entries_are_refused():
    with pytest.raises(InputError, match="Unknown acquisition noise"):
        NoiseModel("poisson", 1.0)
    with pytest.raises(InputError, match="sigma"):
        NoiseModel("gaussian", float("nan"))
    with pytest.raises(ModelError, match="m.json.*acquisition_noise"):
        NoiseModel.from_card({"kind": "rician"}, "m.json")
    with pytest.raises(InputError, match="too few"):
        estimate(np.zeros((1, 8, 8)), np.ones((1, 8, 8), int), "rician")


def test_the_discriminator_sees_noise_and_synthesis_adds_it_reproducibly(tmp_path):
    torch.manual_seed(0)
    trainer = SpadeTrainer(toy_slices(), spade.network_config(**TINY), seed=0, batch_size=2, lr=1e-3, device="cpu",
                           weights={"w_adv": 1.0, "w_fm": 10.0, "w_l1": 10.0, "w_kl": 0.05},
                           noise=NoiseModel("gaussian", 0.2))
    clean = torch.zeros(2, 1, 32, 32)
    assert float(trainer._acquired(clean).std()) > 0.05  # the discriminator's input carries the noise
    trainer.train_step(0)
    trainer.export(tmp_path / "noisy", {"training": {"command": "test"}})
    synth = Synthesizer(tmp_path / "noisy", device="cpu")
    assert synth.noise == NoiseModel("gaussian", 0.2)
    labels = np.zeros((32, 32), np.int64)
    style = synth.mean_style()
    a, b = synth.synthesize_slices(labels, style, noise_seed=1), synth.synthesize_slices(labels, style, noise_seed=1)
    free = synth.synthesize_slices(labels, style, noise_seed=None)
    np.testing.assert_array_equal(a, b)
    assert float((a - free).std()) == pytest.approx(0.2, rel=0.1)
    assert float((synth.synthesize_slices(labels, style, noise_seed=2) - a).std()) > 0.1


def test_rician_mean_level_matches_drawn_noise_and_inverts():
    noise = NoiseModel("rician", 0.02)
    signal = np.array([0.0, 0.01, 0.03, 0.06, 0.3, 0.9])
    level = noise.mean_level(signal)
    drawn = [noise.apply(torch.full((100_000,), float(s), dtype=torch.float64), torch.Generator().manual_seed(1))
             .mean().item() for s in signal]
    np.testing.assert_allclose(level, drawn, atol=3e-4)
    assert level[0] == pytest.approx(0.02 * np.sqrt(np.pi / 2)) and level[1] > 0.02  # the floor lifts dark tissue
    np.testing.assert_allclose(noise.signal_for_level(level), signal, atol=1e-5)
    assert noise.signal_for_level(np.array([0.001]))[0] == 0.0  # below the floor: no signal
    gaussian = NoiseModel("gaussian", 5.0)
    np.testing.assert_array_equal(gaussian.signal_for_level(np.array([-3.0, 40.0])), [-3.0, 40.0])
