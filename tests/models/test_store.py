"""The model store refuses a card whose network would be absurdly large or does not build, before building it."""

import json
import time
import tracemalloc

import pytest

from napari_medgen.errors import ModelError
from napari_medgen.models.families import load_model
from napari_medgen.models.label_vae import build_label_vae
from napari_medgen.models.store import MAX_NETWORK_BYTES, model_paths, save_model

TOY = {"n_classes": 3, "slice_shape": [16, 16], "channels": [4, 8], "strides": [2, 2], "latent_size": 4}


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny"
    save_model(path, build_label_vae(dict(TOY)), {"family": "label_vae", "network": dict(TOY)})
    return path


def _edit_network(path, **network):
    card_path = model_paths(path)[1]
    card = json.loads(card_path.read_text())
    card["network"].update(network)
    card_path.write_text(json.dumps(card))


def test_a_tiny_card_loads(tiny):
    modules, card = load_model(tiny)
    assert card["family"] == "label_vae" and set(modules) == {"model"}


def test_an_absurd_size_is_refused_with_its_estimate_before_building(tiny):
    _edit_network(tiny, n_classes=3_000_000)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        load_model(tiny)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    message = str(info.value)
    assert "tiny.json" in message and "GiB" in message and "refused before building" in message
    estimate = float(message.split("network of ")[1].split(" GiB")[0])
    assert estimate * 2**30 > MAX_NETWORK_BYTES  # 3e6 classes x 4 channels x 3 x 3 weights, in and out: 0.8 GiB
    assert peak < 50 * 2**20 and seconds < 10  # nothing of that size was allocated


def test_a_wrong_typed_field_is_refused_naming_the_card(tiny):
    _edit_network(tiny, n_classes="three")
    with pytest.raises(ModelError, match=r"tiny\.json.*'network' settings do not build"):
        load_model(tiny)
