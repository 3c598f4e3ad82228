"""Loss terms several families share."""

from __future__ import annotations

import math

import torch


def class_frequency_weights(labels: torch.Tensor, n_classes: int, alpha: float = 0.5,
                            mean_over: str = "classes") -> torch.Tensor:
    """Per label value 0..n_classes-1, its share of the label voxels to the power -alpha (rarer classes weigh
    more), 0 for a class with no voxel -> (n_classes,) float32. Normalised to a mean of 1 over the classes
    present (``mean_over="classes"``, cross-entropy weights) or over the voxels (``"voxels"``, per-voxel loss
    weights). labels: int tensor, values >= 0."""
    counts = torch.bincount(labels.flatten().long(), minlength=n_classes).double()
    present = counts > 0
    weights = torch.zeros(len(counts), dtype=torch.float64)
    weights[present] = (counts[present] / counts.sum()) ** -alpha
    norm = weights[present].mean() if mean_over == "classes" else (counts * weights).sum() / counts.sum()
    return (weights / norm).float()


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


def shared_posteriors(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ada-GVAE posteriors of image pairs that share an unknown subset of factors (Locatello et al. 2020).

    mu, logvar: (2, B, d), the posteriors of the pairs' first and second images. Per pair, the
    dimensions whose KL(q(z_d | x1) || q(z_d | x2)) lies below the midpoint of that pair's smallest
    and largest per-dimension KL are taken as shared, and both images get the average of the two
    posteriors there (mean of the means, mean of the variances). Returns mu, logvar (2, B, d).
    """
    var = logvar.exp()
    kl = 0.5 * (logvar[1] - logvar[0] + (var[0] + (mu[0] - mu[1]).pow(2)) / var[1] - 1)  # (B, d)
    lo, hi = kl.min(1, keepdim=True).values, kl.max(1, keepdim=True).values
    shared = (kl < (lo + hi) / 2)[None]
    return (torch.where(shared, mu.mean(0, keepdim=True), mu),
            torch.where(shared, var.mean(0, keepdim=True).log(), logvar))
