"""Loss terms several families share."""

from __future__ import annotations

import math

import torch


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dimensions, averaged over the batch.

    mu, logvar: (B, d). Returns a scalar tensor (nats per sample).
    """
    return -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))


def total_correlation(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, dataset_size: int) -> torch.Tensor:
    """Total correlation KL(q(z) || prod_d q(z_d)) of the aggregate posterior, estimated on one batch.

    Importance-weighted batch estimate (Chen et al. 2018, "Isolating sources of disentanglement in
    VAEs"): for z_i drawn from x_i's posterior, q(z_i) = 1/N q(z_i | x_i) + the other N - 1
    posteriors, represented by the batch's B - 1 others each weighted (N - 1) / (N (B - 1)).
    z, mu, logvar: (B, d), z sampled from N(mu, exp(logvar)); dataset_size N >= B.
    Returns a scalar tensor (nats per sample).
    """
    b = z.shape[0]
    # log N(z_i,d | mu_j,d, var_j,d) for every pair (i, j) and dimension d: (B, B, d)
    diff = z[:, None, :] - mu[None, :, :]
    log_density = -0.5 * (diff.pow(2) * torch.exp(-logvar[None]) + logvar[None] + math.log(2 * math.pi))
    log_w = torch.full((b, b), math.log((dataset_size - 1) / (dataset_size * max(b - 1, 1))), device=z.device)
    log_w.fill_diagonal_(-math.log(dataset_size))
    log_qz = torch.logsumexp(log_density.sum(2) + log_w, dim=1)
    log_prod_qzd = torch.logsumexp(log_density + log_w[..., None], dim=1).sum(1)
    return (log_qz - log_prod_qzd).mean()
