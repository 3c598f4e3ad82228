"""data/label_mapping: proposals from names, refusals naming both sides, --map parsing, applying."""

import numpy as np
import pytest

from napari_medgen.data import label_mapping as lm
from napari_medgen.errors import InputError

PHANTOM = {0: "background", 1: "body", 2: "lung", 3: "lv_blood", 4: "myocardium", 5: "rv", 6: "spine", 7: "tumour"}
BRAIN = {0: "background", 1: "csf", 2: "grey_matter", 3: "white_matter"}


def test_names_propose_classes_of_the_same_meaning_never_equal_numbers():
    proposal = lm.propose([0, 1, 2], {1: "Lesion", 2: "Lungs"}, PHANTOM)
    assert proposal == {0: 0, 1: 7, 2: 2}
    assert lm.propose([0, 1], {}, PHANTOM) == {0: 0, 1: None}  # an unnamed 1 is not "body"
    assert lm.propose([1, 2, 3], {1: "CSF", 2: "Gray Matter", 3: "white-matter"}, BRAIN) == {1: 1, 2: 2, 3: 3}
    assert lm.propose([1], {1: "liver"}, PHANTOM) == {1: None}
    assert lm.propose([1], {1: "lesion"}, {0: "bg", 1: "tumor", 2: "mass"}) == {1: None}  # ambiguous


def test_a_lesion_without_a_class_is_refused_naming_both_sides():
    with pytest.raises(InputError) as err:
        lm.resolve([0, 1], {1: "lesion"}, BRAIN, 4, what="Label map 'lesion.nii.gz'", model="model 'spade_brain'")
    msg = str(err.value)
    assert "lesion.nii.gz" in msg and "1 (lesion)" in msg and "spade_brain" in msg
    assert "0 background, 1 csf, 2 grey_matter, 3 white_matter" in msg and "--map" in msg
    with pytest.raises(InputError, match=r"1 \(unnamed\)"):
        lm.resolve([0, 1], {}, PHANTOM, 8)


def test_explicit_choices_and_confirmed_identity():
    assert lm.resolve([0, 1], {}, PHANTOM, 8, explicit={1: 7}).table == {0: 0, 1: 7}
    assert lm.resolve([0, 1, 2], {}, BRAIN, 4, identity=True).table == {0: 0, 1: 1, 2: 2}
    with pytest.raises(InputError, match=r"1 \(lesion\)"):  # identity never overrides a name that disagrees
        lm.resolve([0, 1], {1: "lesion"}, BRAIN, 4, identity=True)
    with pytest.raises(InputError, match="9"):  # values past the classes are not made identical
        lm.resolve([0, 9], {}, BRAIN, 4, identity=True)
    with pytest.raises(InputError, match="class 12"):
        lm.resolve([0, 1], {}, BRAIN, 4, explicit={1: 12})


def test_parse_map_by_number_and_name():
    assert lm.parse_map(["1=tumour", "2=2,3=Lungs"], PHANTOM, 8) == ({1: 7, 2: 2, 3: 2}, False)
    assert lm.parse_map(["identity", "5=Tumor"], PHANTOM, 8) == ({5: 7}, True)
    for bad, match in (("1", "VALUE=CLASS"), ("x=1", "VALUE=CLASS"), ("1=liver", "liver"), ("1=8", "'8'")):
        with pytest.raises(InputError, match=match) as err:
            lm.parse_map([bad], PHANTOM, 8)
        if match != "VALUE=CLASS":
            assert "7 tumour" in str(err.value)


def test_apply_maps_every_voxel_and_refuses_values_outside_the_table():
    data = np.array([[0, 1], [200, 1]], np.uint8)
    mapping = lm.LabelMapping({0: 0, 1: 7, 200: 2})
    out = mapping.apply(data)
    np.testing.assert_array_equal(out, [[0, 7], [2, 7]])
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(mapping.apply(data.astype(np.float32)), out)  # whole-number floats
    with pytest.raises(InputError, match=r"5 \(unnamed\).*7 tumour"):
        mapping.apply(np.array([0, 5]), model_names=PHANTOM, n_classes=8)
    with pytest.raises(InputError, match="non-integer"):
        mapping.apply(np.array([0.5]))
    with pytest.raises(InputError, match="negative"):
        mapping.apply(np.array([-1, 0]))
    ident = lm.LabelMapping({0: 0, 1: 1})
    assert ident.is_identity and ident.apply(data[:1, :]) is not None


def test_user_names_from_metadata_or_layer_features():
    assert lm.user_label_names({"label_names": {"1": "lesion"}}) == {1: "lesion"}
    assert lm.user_label_names({}, {"index": [0, 3], "name": ["background", "tumour"]}) == {0: "background", 3: "tumour"}
    assert lm.user_label_names({}, {"label": ["", "lesion"]}) == {1: "lesion"}
    assert lm.user_label_names({}, {"area": [1.0, 2.0]}) == {}


def test_tracked_candidates_prefer_lesion_names_then_the_only_foreground():
    assert lm.tracked_candidates([0, 1, 4], {1: "liver", 4: "Tumor"}) == [4]
    assert lm.tracked_candidates([0, 9], {}) == [9]
    assert lm.tracked_candidates([0, 1, 2], {}) == []
