"""Ventricles and grey/white contrast found from intensities (the quality ledger's structure rows)."""

import numpy as np
import pytest

from napari_medgen.tasks import brain_structures as bs
from napari_medgen.tasks import quality as q
from napari_medgen.training.diffusion_trainer import sample_data

MEANS = (400.0, 650.0, 820.0)  # CSF, grey, white matter (the drawn brain's intensities)
PX = 2.35  # mm


def _brain(ventricle: bool = True, sulcus: bool = False, uniform: bool = False, folds: bool = True) -> np.ndarray:
    """An 80 x 80 disc of white matter with grey-matter folds (stripes), a deep CSF ellipse at its
    centre, and optionally a CSF cleft from the surface inwards."""
    y, x = np.mgrid[:80, :80] - 39.5
    r = np.hypot(y, x)
    image = np.where(r < 30, MEANS[2], 0.0)
    image[(r < 30) & ((np.abs(x) // 3) % 3 == 0 if folds else r >= 24)] = MEANS[1]
    if uniform:
        image[r < 30] = MEANS[1]
    if ventricle:
        image[(y / 6) ** 2 + (x / 3) ** 2 < 1] = MEANS[0]
    if sulcus:
        image[(np.abs(x) < 2) & (y < 0) & (r < 30)] = MEANS[0]
    return image[None].astype(np.float32)


def _reference() -> bs.Reference:
    image = _brain()
    labels = np.select([image == m for m in MEANS], [1, 2, 3], 0)
    return bs.reference(image, labels)


@pytest.mark.parametrize(("kwargs", "ventricles", "contrast"), [
    ({}, True, True),
    ({"ventricle": False}, False, True),
    ({"ventricle": False, "sulcus": True}, False, True),  # CSF that reaches the surface is no ventricle
    ({"uniform": True, "ventricle": False}, False, False),
    ({"folds": False}, True, False),  # two smooth regions (grey ring, white core): too little boundary
])
def test_structures_of_a_drawn_brain(kwargs, ventricles, contrast):
    found = bs.image_structures(_brain(**kwargs), _reference(), PX)
    assert found["ventricles"].tolist() == [ventricles]
    assert found["grey/white contrast"].tolist() == [contrast]


def test_a_small_deep_csf_spot_is_no_ventricle():
    image = _brain(ventricle=False)
    image[0, 39:42, 39:42] = MEANS[0]  # 9 pixels = 50 mm^2 < 80 mm^2
    assert not bs.image_structures(image, _reference(), PX)["ventricles"][0]


def test_intensities_agree_with_the_label_maps_on_the_training_slices():
    images, labels, spacing = sample_data("brain", 2, 80)
    images, labels = np.stack(images).astype(np.float32), np.stack(labels)
    ref = bs.reference(images, labels)
    from_labels = bs.label_structures(labels, ref, spacing[0])
    from_images = bs.image_structures(images, ref, spacing[0])
    for s in bs.STRUCTURES:
        assert (from_labels[s] == from_images[s]).mean() >= 0.85, s
    assert 0.3 <= from_labels["ventricles"].mean() <= 0.7  # not every axial slice cuts a ventricle
    # shuffling the brain's pixels keeps the histogram and destroys every ventricle
    shuffled = q.shuffle_in_mask(images, q.foreground(images, images, erode=0))
    assert bs.image_structures(shuffled, ref, spacing[0])["ventricles"].mean() == 0.0
    # blurring by 2 pixels leaves no folded grey/white boundary
    assert bs.image_structures(q.smooth(images, 2.0), ref, spacing[0])["grey/white contrast"].mean() <= 0.1


def test_a_deep_csf_piece_needs_its_mirror_image():
    """Lateral ventricles come in mirrored pairs; a mottled texture's dark spots do not."""
    y, x = np.mgrid[:80, :80] - 39.5
    one_side = _brain(ventricle=False)
    one_side[0][((y / 6) ** 2 + ((x + 6) / 3) ** 2) < 1] = MEANS[0]
    both_sides = one_side.copy()
    both_sides[0][((y / 6) ** 2 + ((x - 6) / 3) ** 2) < 1] = MEANS[0]
    found = bs.image_structures(np.concatenate([one_side, both_sides]), _reference(), PX)["ventricles"]
    assert found.tolist() == [False, True]


def test_ledger_rows_judge_structure_against_each_images_own_source():
    from tests.benchmark_modules import load_benchmark

    images, labels, spacing = sample_data("brain", 2, 80)
    train, train_lab = np.stack(images).astype(np.float32), np.stack(labels)
    held = np.stack(sample_data("brain", 2, 80, held_out=True)[0]).astype(np.float32)
    candidates = {"model": q.smooth(train[::3], 2.0),  # a "model" that blurs: no grey/white folds
                  "blurred real (2 px)": q.smooth(held, 2.0), "shuffled real": held[::-1]}  # the real slices again
    pooled = train[::2]  # 25 real training slices as "pooled samples": near the training shares
    rows = load_benchmark("quality").brain_structure_rows("m", candidates, train, train_lab, held, spacing[0], pooled)
    by = {(r.metric.split(" / ")[0], r.baseline): r for r in rows if "pooled" not in r.metric}
    in_pool = {r.metric.split(" / ")[0]: r for r in rows if "pooled (25 samples)" in r.metric}
    assert set(in_pool) == {f"share with {s}" for s in bs.STRUCTURES}
    assert in_pool["share with grey/white contrast"].model_value == pytest.approx(1.0, abs=0.1)
    assert in_pool["share with grey/white contrast"].baseline == "bar (0.8)"
    assert in_pool["share with ventricles"].model_value > 0.6
    assert by[("share with grey/white contrast", "bar (0.8)")].margin < 0  # the blurring model fails the bar
    assert by[("share with grey/white contrast", "shuffled real")].margin < 0  # and loses to real slices
    assert by[("share with grey/white contrast", "shuffled real")].baseline_value == pytest.approx(1.0)
    assert by[("share with ventricles", "blurred real (2 px)")].model_value > 0.3  # blur keeps the ventricles


def test_relative_shares_divide_by_the_real_share():
    found = {"ventricles": np.array([1, 1, 0, 0], bool), "grey/white contrast": np.array([1, 0, 0, 0], bool)}
    source = {"ventricles": np.array([1, 0], bool), "grey/white contrast": np.array([0, 0], bool)}
    shares = bs.relative_shares(found, source)
    assert shares["ventricles"] == pytest.approx(1.0)  # half of the images, as in the real ones
    assert shares["grey/white contrast"] > 1e6  # present where the real images never have it: far from 1


def test_real_draw_ratios_scatter_round_one_and_more_for_fewer_draws():
    from tests.benchmark_modules import load_benchmark

    draws = load_benchmark("structure_draws").real_draw_ratios
    present = np.arange(50) % 9 < 5  # in 56 % of the slices, as the ventricles
    few, many = draws(present, 16, 4000), draws(present, 48, 4000)
    assert np.median(few) == pytest.approx(1.0, abs=0.1) and np.median(many) == pytest.approx(1.0, abs=0.05)
    assert (few < 0.8).mean() > 2 * (many < 0.8).mean() > 0
    with pytest.raises(ValueError, match="no real slice"):
        draws(np.zeros(5, bool), 4, 10)
