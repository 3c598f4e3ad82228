"""Loss terms several families share."""

from __future__ import annotations

import torch


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dimensions, averaged over the batch.

    mu, logvar: (B, d). Returns a scalar tensor (nats per sample).
    """
    return -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
