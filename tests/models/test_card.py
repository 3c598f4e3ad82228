"""Model cards: every shipped card is in the current form and loads typed; bad cards are refused naming file and key."""

import json

import pytest

from napari_medgen.errors import ModelError
from napari_medgen.models.card import ModelCard, TrainingRecord, migrate
from napari_medgen.models.store import SHIPPED_DIR, load_card, read_card

SHIPPED = sorted(p for p in SHIPPED_DIR.glob("*.json") if not p.name.endswith(".directions.json"))
OLD_NAMES = {"spacing", "plane_spacing", "pixel_mm", "data", "training_data"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_cards_are_current_and_typed(path):
    raw = json.loads(path.read_text())
    assert not OLD_NAMES & set(raw) and migrate(raw) == raw  # migrated once, on disk
    card = read_card(path)
    assert isinstance(card.training, TrainingRecord) and card.training.data and card.training.steps > 0
    assert card.shape is not None and all(s > 0 for s in card.shape)
    assert card.voxel_mm is None or len(card.voxel_mm) in (2, 3) and min(card.voxel_mm) > 0
    assert card.loss_curve is None or (path.parent / card.loss_curve).is_file(), card.loss_curve  # shipped beside it


def test_migrate_gives_each_concept_one_name():
    old = {"family": "x", "network": {}, "plane_spacing": [2.0, 3.0], "data": "phantoms", "training": {"seed": 1}}
    assert migrate(old) == {"family": "x", "network": {}, "voxel_mm": [3.0, 2.0],
                            "training": {"seed": 1, "data": "phantoms"}}
    assert migrate({"family": "x", "network": {}, "spacing": [1, 2, 3], "pixel_mm": 1})["voxel_mm"] == [1, 2, 3]
    assert migrate({"family": "x", "network": {}, "pixel_mm": 4.0, "training_data": "d"}) == {
        "family": "x", "network": {}, "voxel_mm": [4.0, 4.0], "training": {"data": "d"}}


def _write(tmp_path, card):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(card))
    return path


@pytest.mark.parametrize("card, words", [
    ({"family": "vae", "network": {}, "colour": "red"}, ["m.json", "unknown entry 'colour'", "voxel_mm"]),
    ({"family": "vae"}, ["m.json", "lacks the entry 'network'"]),
    ({"family": "vae", "network": {}, "voxel_mm": [1.0, "2"]}, ["m.json", "'voxel_mm' must be a number"]),
    ({"family": "vae", "network": {}, "shape": [64, 0]}, ["m.json", "'shape' must hold positive numbers"]),
    ({"family": "vae", "network": {}, "training": {"steps": "many"}}, ["m.json", "'training.steps'"]),
    ({"family": "vae", "network": {}, "training": {"gpu": "x"}}, ["m.json", "unknown entry 'training.gpu'"]),
    ({"family": "vae", "network": {}, "label_names": {"bg": "background"}}, ["m.json", "'label_names'"]),
    ({"family": "vae", "network": {}, "known_defects": "blurry"}, ["m.json", "'known_defects' must be a list of strings"]),
    (["not", "a", "card"], ["m.json", "no 'family' entry"]),
])
def test_bad_cards_are_refused_naming_file_and_key(tmp_path, card, words):
    with pytest.raises(ModelError) as info:
        load_card(_write(tmp_path, card))
    assert all(w in str(info.value) for w in words), str(info.value)


def test_a_card_of_a_family_this_version_does_not_list_keeps_its_own_entries(tmp_path):
    card = ModelCard.from_json({"family": "plugin-x", "network": {"a": 1}, "own": [1, 2]}, "x.json")
    assert card.details == {"own": [1, 2]}


def test_shipped_models_fit_the_size_budget():
    """Issue #18's budget: each shipped model (its files by stem) at most 25 MB, all together at most 80 MB."""
    sizes: dict[str, int] = {}
    for p in SHIPPED_DIR.iterdir():
        stem = p.name.split(".")[0]
        sizes[stem] = sizes.get(stem, 0) + p.stat().st_size
    assert max(sizes.values()) <= 25e6, sizes
    assert sum(sizes.values()) <= 80e6, sum(sizes.values())
