import math

import pytest
import torch

from napari_medgen.training.losses import gaussian_kl, total_correlation


def _posteriors(mu: torch.Tensor, std: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logvar = torch.full_like(mu, 2 * math.log(std))
    return mu + std * torch.randn(mu.shape, generator=g), mu, logvar


def test_gaussian_kl_is_zero_for_the_prior_and_positive_otherwise():
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).item() == pytest.approx(0.0)
    assert gaussian_kl(torch.ones(3, 4), torch.zeros(3, 4)).item() == pytest.approx(2.0)  # 0.5 * 4 dims


def test_total_correlation_tells_dependent_latents_from_independent_ones():
    g = torch.Generator().manual_seed(0)
    independent = torch.randn(512, 4, generator=g)
    shared = torch.randn(512, 1, generator=g)
    dependent = torch.cat([shared, shared + 0.1 * torch.randn(512, 1, generator=g), torch.randn(512, 2, generator=g)], 1)
    tc_indep = total_correlation(*_posteriors(independent, 0.5, 1), dataset_size=512).item()
    tc_dep = total_correlation(*_posteriors(dependent, 0.5, 1), dataset_size=512).item()
    assert abs(tc_indep) < 0.2
    assert tc_dep > 0.4 and tc_dep > 4 * abs(tc_indep)


def test_vae_trainer_adds_the_total_correlation_term_only_when_asked():
    from napari_medgen.training.latent_trainers import VAETrainer
    from napari_medgen.training.registry import TrainConfig

    extra = {"n_subjects": 8, "size": 16, "latent_dim": 4, "anatomy_seed": 0}
    plain = VAETrainer(TrainConfig(sample="phantom", seed=0, steps=2, batch_size=4, extra=dict(extra)))
    assert "tc" not in plain.train_step(0)
    tc = VAETrainer(TrainConfig(sample="phantom", seed=0, steps=2, batch_size=4, extra={**extra, "tc_weight": 0.01}))
    logs = tc.train_step(0)
    assert math.isfinite(logs["tc"]) and math.isfinite(logs["loss"])


def test_shared_posteriors_average_the_dimensions_a_pair_shares_and_keep_the_one_that_changed():
    from napari_medgen.training.losses import shared_posteriors

    mu = torch.tensor([[[0.0, 1.0, 2.0, 0.5]], [[0.1, 1.0, -2.0, 0.4]]])  # (2 images, 1 pair, 4 dims): dim 2 changed
    logvar = torch.log(torch.tensor([[[0.1, 0.2, 0.1, 0.3]], [[0.3, 0.2, 0.1, 0.1]]]))
    new_mu, new_logvar = shared_posteriors(mu, logvar)
    shared = [0, 1, 3]
    assert torch.allclose(new_mu[0, 0, shared], new_mu[1, 0, shared])
    assert torch.allclose(new_mu[0, 0, shared], mu[:, 0, shared].mean(0))
    assert torch.allclose(new_logvar[:, 0, shared].exp(), logvar[:, 0, shared].exp().mean(0).expand(2, 3))
    assert torch.equal(new_mu[:, 0, 2], mu[:, 0, 2]) and torch.equal(new_logvar[:, 0, 2], logvar[:, 0, 2])
