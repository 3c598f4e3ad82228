"""The brain VAE trained with ``--set validation=true`` never sees a validation (or test) slice."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.data import brain_slices as bs
from napari_medgen.data.normalize import normalize
from napari_medgen.errors import InputError
from napari_medgen.models.store import load_card
from napari_medgen.training.latent_trainers import VAETrainer
from napari_medgen.training.registry import TrainConfig


def _trainer(sample: str, **extra) -> VAETrainer:
    settings = {"size": 16, "latent_dim": 4, "n_subjects": 1, **extra}  # n_subjects 1: no deformed copies
    return VAETrainer(TrainConfig(sample=sample, seed=0, steps=1, batch_size=2, device="cpu", extra=settings))


def test_vae_brain_with_validation_never_sees_a_validation_slice(tmp_path):
    trainer = _trainer("brain", validation=True)
    seen = trainer.images[:, 0].numpy()
    train_z = bs.training_slices(16, validation=True)[2]
    assert len(seen) == len(train_z) < len(bs.training_slices(16)[2])
    for held_out in (bs.training_slices(16, held_out=True, validation=True)[0], bs.training_slices(16, held_out=True)[0]):
        held = normalize(held_out, trainer.norm)
        gaps = np.abs(held[:, None] - seen[None]).max(axis=(2, 3))  # (held, seen) largest pixel difference
        assert gaps.min() > 1e-3
    trainer.export(tmp_path / "m", {"training": {"settings": {"validation": True}}})
    training = load_card(tmp_path / "m")["training"]
    assert "validation (model selection): slices at MNI z (mm) in [-8, -2), [24, 30)" in training["held_out"]
    assert training["held_out_slabs_mm"] == [[-24.0, -16.0], [6.0, 14.0], [36.0, 44.0]]


def test_validation_needs_the_brain_sample():
    with pytest.raises(InputError, match="--sample brain"):
        _trainer("phantom", validation=True)
