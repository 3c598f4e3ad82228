"""open_model: one way to open any model, by shipped name or path, into its family's typed handle."""

import pytest

from napari_medgen.errors import ModelError
from napari_medgen.models.diffusion import DiffusionModel
from napari_medgen.models.families import LoadedModel, open_model
from napari_medgen.models.features import FeatureExtractor
from napari_medgen.models.label_vae import LabelVAE
from napari_medgen.models.latent_handle import LatentModel
from napari_medgen.models.store import load_card, shipped_models
from napari_medgen.models.synthesizer import Synthesizer
from napari_medgen.models.temporal import TemporalModel

HANDLES = {"diffusion": DiffusionModel, "feature_encoder": FeatureExtractor, "gan": LatentModel, "label_vae": LabelVAE,
           "spade": Synthesizer, "temporal": TemporalModel, "vae": LatentModel}


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_every_shipped_model_opens_by_name_into_its_handle(name):
    family = load_card(shipped_models()[name])["family"]
    handle = open_model(name, "cpu")
    assert isinstance(handle, HANDLES.get(family, LoadedModel))
    if isinstance(handle, LoadedModel):
        assert handle.card.family == family and handle.modules
        assert all(not m.training for m in handle.modules.values())


def test_shipped_models_filters_by_family_in_the_order_asked():
    both = shipped_models(("vae", "gan"))
    families = [load_card(p)["family"] for p in both.values()]
    assert families and families == sorted(families, key=("vae", "gan").index)
    assert set(shipped_models("spade")) == {n for n, p in shipped_models().items() if load_card(p)["family"] == "spade"}


def test_an_unknown_name_is_refused_naming_it(tmp_path):
    with pytest.raises(ModelError, match="no_such_model"):
        open_model(tmp_path / "no_such_model")
