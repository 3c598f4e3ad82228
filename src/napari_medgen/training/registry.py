"""Which model families can be trained, and the one way a trainer is built.

Each family's trainer module is imported here, where it is registered (on first use, as they pull
in MONAI's networks): add one line to :func:`_families` per family. ``make(config)`` returns an
object implementing :class:`~.loop.Trainer`; :func:`make_trainer` seeds, builds, and under ``torchrun`` wraps it to
train data-parallel (:mod:`.distributed`).
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
from functools import cache

from ..device import resolve_device
from ..errors import InputError
from .checkpoint import seed_everything
from .config import TrainConfig, parse_settings
from .data_parallel import DataParallelTrainer
from .distributed import comm_device, current, shard_config
from .loop import Trainer
from .source import Sources, TrainingSource

__all__ = ["TrainConfig", "TrainerSpec", "make_trainer", "parse_settings", "register_trainer", "trainers"]


@dataclass(frozen=True)
class TrainerSpec:
    """A trainable family: its builder, one line of help and the data it trains on."""

    family: str
    make: Callable[[TrainConfig], Trainer]
    help: str
    sources: Sources = Sources()


@cache
def _families() -> dict[str, TrainerSpec]:
    """The project's trainable families."""
    from . import (anomaly_trainer, diffusion_trainer, feature_trainer, label_vae_trainer, latent_trainers,
                   spade_trainer, temporal_trainer)

    return {spec.family: spec for spec in (
        TrainerSpec("anomaly_ae", anomaly_trainer.AnomalyAETrainer,
                    "VAE of normal anatomy for anomaly maps (2D slices)", anomaly_trainer.SOURCES),
        TrainerSpec("diffusion", diffusion_trainer.DiffusionTrainer,
                    "MONAI DiffusionModelUNet (DDPM/DDIM or rectified flow; SPADE with --set conditioned=1), 2D or 3D",
                    diffusion_trainer.SOURCES),
        TrainerSpec("feature_encoder", feature_trainer.FeatureEncoderTrainer,
                    "small 2D ResNet feature extractor for Fréchet distance / MMD", feature_trainer.SOURCES),
        TrainerSpec("gan", latent_trainers.GANTrainer,
                    "unconditional 2D GAN (image + labels), for latent directions", latent_trainers.SOURCES),
        TrainerSpec("label_vae", label_vae_trainer.LabelVAETrainer,
                    "label-map VAE on 2D slices (label deformation: sample, interpolate)", label_vae_trainer.SOURCES),
        TrainerSpec("spade", spade_trainer.make_spade_trainer,
                    "label-to-image synthesis (MONAI SPADENet VAE-GAN with style encoder)", spade_trainer.SOURCES),
        TrainerSpec("temporal", temporal_trainer.TemporalTrainer,
                    "2D encoder-decoder with a latent time direction (synthetic follow-ups)", temporal_trainer.SOURCES),
        TrainerSpec("vae", latent_trainers.VAETrainer,
                    "unconditional 2D VAE (image + labels), for latent directions", latent_trainers.SOURCES),
    )}


_TRAINERS: dict[str, TrainerSpec] = {}  # registered at run time; a name here wins over a family's


def register_trainer(family: str, make: Callable[[TrainConfig], Trainer], help: str = "",
                     sources: Sources = Sources()) -> None:
    """Make ``family`` trainable at run time (a plugin's family, a test's): ``make(config)`` builds its
    trainer from the data ``sources`` allows (default: a shipped sample or image and label folders)."""
    _TRAINERS[family] = TrainerSpec(family, make, help, sources)


def trainers() -> dict[str, TrainerSpec]:
    """Every trainable family, by name."""
    return dict(sorted({**_families(), **_TRAINERS}.items()))


def make_trainer(family: str, config: TrainConfig) -> Trainer:
    """Seed the global RNGs with ``config.seed``, then build the family's trainer on the device that
    ``config.device`` names ("auto": CUDA, then MPS, then the CPU; resolved here, once: the trainer's
    ``device``, which the card records); the data must be what the family trains on (InputError
    otherwise, naming it: :class:`~.source.TrainingSource`); inside a live
    ``torchrun`` process group, each rank builds its shard (config.batch_size = the global batch)
    and the trainer trains data-parallel."""
    specs = trainers()
    if family not in specs:
        known = ", ".join(specs) or "none registered"
        raise InputError(f"Unknown model family '{family}' for training (known: {known}).")
    TrainingSource.of(config, family, specs[family].sources)
    config = dataclasses.replace(config, device=str(resolve_device(config.device)))  # resolved once, here
    env = current()
    if env.world_size == 1:
        seed_everything(config.seed)
        return specs[family].make(config)
    local = shard_config(config, env)
    seed_everything(local.seed)
    return DataParallelTrainer(specs[family].make(local), env, local.seed, comm_device(local.device))
