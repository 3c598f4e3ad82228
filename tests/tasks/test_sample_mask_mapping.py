"""A mask's values mean a (non-MAISI) mask-conditioned diffusion model's classes only by the label-mapping
rules (data.label_mapping): names, unnamed 0 background, --map VALUE=CLASS, --map identity; never equal
numbers alone."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.errors import InputError
from napari_medgen.io.volume import Volume
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.sample import sample
from napari_medgen.tasks.sample_inputs import mask_inputs

from .test_sample import tiny

CLASSES = {0: "background", 1: "body", 2: "tumour"}


def model(names: dict[int, str] | None = CLASSES):
    m = tiny(label_nc=3)
    m.label_names = names
    return m


def lesion(names: dict[int, str] | None = None) -> Volume:
    """A 16 x 16 mask: 0 around a lesion painted as 1 (named by ``names``), from the file L.nii.gz."""
    data = np.zeros((1, 16, 16), np.uint8)
    data[0, 4:12, 4:12] = 1
    return Volume(data, is_label=True, metadata={"source": "L.nii.gz", **({"label_names": names} if names else {})})


def classes(seg) -> np.ndarray:
    """One-hot (1, label_nc, y, x) -> the class of each pixel (y, x)."""
    return seg[0].argmax(0).numpy()


def test_a_lesion_named_tumour_is_the_tumour_class_not_class_1():
    seg, _, meta = mask_inputs(model(), lesion({1: "Tumor"}))
    assert (classes(seg)[4:12, 4:12] == 2).all() and (classes(seg)[:4] == 0).all()
    assert meta == {"notes": ["label values as the model's classes: 1 (Tumor) -> 2 tumour"]}
    vol = run_to_completion(sample(model(), steps=1, mask=lesion({1: "lesion"}), device="cpu"))
    assert vol.metadata["notes"] == ["label values as the model's classes: 1 (lesion) -> 2 tumour"]
    seg, _, _ = mask_inputs(model(), lesion(), label_map=["1=tumour"])  # the user's explicit choice
    assert (classes(seg)[4:12, 4:12] == 2).all()


def test_an_unnamed_value_is_refused_naming_the_file_values_and_classes():
    with pytest.raises(InputError, match=r"Mask 'L\.nii\.gz' has label values that model 'tiny' has no class for: "
                                         r"1 \(unnamed\)\. The model's classes: 0 background, 1 body, 2 tumour\. "
                                         r"Choose a class for each \(CLI: --map VALUE=CLASS"):
        run_to_completion(sample(model(), steps=1, mask=lesion(), device="cpu"))


def test_identity_confirms_equal_numbers():
    seg, _, meta = mask_inputs(model(), lesion(), label_map=["identity"])
    assert (classes(seg)[4:12, 4:12] == 1).all() and meta == {}
    vol = run_to_completion(sample(model(), steps=1, mask=lesion(), device="cpu", label_map=["identity"]))
    assert vol.data.shape == (1, 1, 16, 16) and "notes" not in vol.metadata


def test_a_value_named_like_no_class_is_refused_even_with_identity():
    for label_map in ([], ["identity"]):
        with pytest.raises(InputError, match=r"L\.nii\.gz' has label values .* no class for: 1 \(kidney\)"):
            mask_inputs(model(), lesion({1: "kidney"}), label_map=label_map)
    with pytest.raises(InputError, match=r"'liver' is not a class of this model; its classes are: 0 background"):
        mask_inputs(model(), lesion(), label_map=["1=liver"])


def test_a_card_without_class_names_maps_only_by_identity_or_explicit_choices():
    with pytest.raises(InputError, match=r"no class for: 0 \(unnamed\), 1 \(unnamed\).* names none of its classes"):
        mask_inputs(model(None), lesion())
    with pytest.raises(InputError, match=r"1 \(tumour\).* names none of its classes .* --map identity"):
        mask_inputs(model(None), lesion({1: "tumour"}), label_map=["identity"])
    seg, _, _ = mask_inputs(model(None), lesion(), label_map=["0=0,1=2"])
    assert (classes(seg)[4:12, 4:12] == 2).all()


def test_a_label_map_needs_a_mask():
    with pytest.raises(InputError, match=r"A label mapping \(--map\) applies to a mask"):
        run_to_completion(sample(tiny(), steps=1, device="cpu", label_map=["identity"]))
