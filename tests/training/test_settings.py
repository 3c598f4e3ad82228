"""Per-family --set settings: a dataclass per family; unknown keys refused with the valid ones; values converted."""

from dataclasses import dataclass

import pytest

from napari_medgen.errors import InputError
from napari_medgen.training.config import TrainConfig, family_settings
from napari_medgen.training.registry import make_trainer


@dataclass(frozen=True)
class Toy:
    steps: int = 3
    beta: float = 0.5
    flag: bool = False
    name: str = "a"
    groups: int | None = None
    channels: object = "8,16"


def test_values_are_converted_to_the_fields_types():
    s = family_settings(Toy, {"steps": "7", "beta": 1, "flag": "yes", "name": 5, "groups": 4, "channels": [4, 8]}, "toy")
    assert (s.steps, s.beta, s.flag, s.name, s.groups, s.channels) == (7, 1.0, True, "5", 4, [4, 8])
    assert family_settings(Toy, {}, "toy") == Toy()


@pytest.mark.parametrize("extra, words", [
    ({"stepz": 1}, ["Unknown toy setting 'stepz'", "beta, channels, flag, groups, name, steps"]),
    ({"steps": 2.5}, ["steps=2.5", "a whole number"]),
    ({"flag": "maybe"}, ["flag='maybe'", "true or false"]),
    ({"beta": "much"}, ["beta='much'", "a number"]),
])
def test_bad_settings_are_refused_naming_the_valid_ones(extra, words):
    with pytest.raises(InputError) as info:
        family_settings(Toy, extra, "toy")
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("family, key", [("diffusion", "chanels"), ("label_vae", "kl"), ("anomaly_ae", "style"),
                                         ("feature_encoder", "brain"), ("vae", "lr_gan"), ("gan", "beta"),
                                         ("temporal", "adv"), ("spade", "chanels")])
def test_a_family_refuses_an_unknown_setting_before_loading_data(family, key):
    with pytest.raises(InputError, match=f"Unknown {family} setting '{key}'.*valid ones"):
        make_trainer(family, TrainConfig(sample="phantom", device="cpu", extra={key: 1}))


def test_every_shipped_model_training_command_is_accepted_by_its_family_settings():
    """The --set settings recorded in each shipped card's command still parse: the command reproduces."""
    import json
    import shlex

    from napari_medgen.models.store import SHIPPED_DIR
    from napari_medgen.training import (anomaly_trainer, diffusion_trainer, feature_trainer, label_vae_trainer,
                                        latent_trainers, spade_trainer, temporal_trainer)
    from napari_medgen.training.config import parse_settings

    kinds = {"anomaly_ae": anomaly_trainer.AnomalySettings, "diffusion": diffusion_trainer.DiffusionSettings,
             "feature_encoder": feature_trainer.FeatureSettings, "gan": latent_trainers.GANSettings,
             "label_vae": label_vae_trainer.LabelVAESettings, "spade": spade_trainer.SpadeSettings,
             "temporal": temporal_trainer.TemporalSettings, "vae": latent_trainers.VAESettings}
    cards = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(SHIPPED_DIR.glob("*.json"))]
    cards = [c for c in cards if "family" in c]
    assert {c["family"] for c in cards} == set(kinds)
    for card in cards:
        argv = shlex.split(card["training"]["command"])
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        family_settings(kinds[card["family"]], parse_settings(sets), card["family"])
