"""Shared test setup. torch is imported before Qt (napari) so that its OpenMP runtime loads first."""

import os

import torch  # noqa: F401  (must come before any Qt import)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
