"""The 3D phantom's structure-presence measure (tasks.structure_presence) on volumes whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.errors import InputError
from napari_medgen.tasks import quality as q
from napari_medgen.tasks import structure_presence as sp
from napari_medgen.training.diffusion_trainer import sample_data

SIZE = 32  # the grid of the last shipped diffusion_phantom3d (12 mm voxels: the tumour at its limit)


@pytest.fixture(scope="module")
def data() -> tuple[sp.Measure, np.ndarray, np.ndarray]:
    """The measure built from the 3D diffusion trainer's phantoms; held-out phantoms (seeds 1000..) and labels."""
    train, train_lab = (np.stack(x) for x in sample_data("phantom", 3, SIZE)[:2])
    held, held_lab = (np.stack(x) for x in sample_data("phantom", 3, SIZE, held_out=True)[:2])
    return sp.Measure.from_training(train.astype(np.float32), train_lab), held.astype(np.float32), held_lab


def test_held_out_real_phantoms_have_every_structure_and_are_segmented_like_their_labels(data):
    measure, held, held_lab = data
    rates = measure.rates(measure.segment(held))
    assert set(rates) == set(sp.STRUCTURES.values())
    # the tumour (3-8 voxels, a radius of about one voxel on the 12 mm grid) is at the grid's limit:
    # one held-out subject's is darker than the myocardium/tumour midpoint after bias correction
    assert min(v for k, v in rates.items() if k != "tumour") >= 0.95, rates
    assert rates["tumour"] >= 0.9, rates
    seg = sp.segment(held[0], measure.means, measure.sigma)
    for k in (0, 1, 2, 4):  # background, body, lung, myocardium: intensities far from every other class
        dice = 2 * ((seg == k) & (held_lab[0] == k)).sum() / ((seg == k).sum() + (held_lab[0] == k).sum())
        assert dice > 0.9, (sp.STRUCTURES.get(k, "background"), dice)


def test_shuffled_voxels_and_a_missing_heart_are_caught(data):
    measure, held, held_lab = data
    flat = lambda x: x.reshape(len(x), -1, x.shape[-1])  # noqa: E731
    shuffled = q.shuffle_in_mask(flat(held), flat(held_lab > 0)).reshape(held.shape)
    rates = measure.rates(measure.segment(shuffled))
    assert rates["body"] == 1.0  # the outline is kept
    assert max(v for k, v in rates.items() if k != "body") <= 0.1, rates
    no_heart = held.copy()
    heart = np.isin(held_lab, (3, 4, 5))
    no_heart[heart] = float(measure.means[1])  # painted over with the body's mean
    rates = measure.rates(measure.segment(no_heart))
    assert rates["lv_blood"] == rates["myocardium"] == rates["rv"] == 0.0, rates
    assert rates["lung"] >= 0.95 and rates["spine"] >= 0.95


def test_bias_field_is_recovered_and_bad_input_is_refused(data):
    measure, held, _ = data
    ramp = np.linspace(0.85, 1.15, SIZE)[None, None, :]
    field = sp.bias_field(held[0] * ramp, float(measure.means[1])) / sp.bias_field(held[0], float(measure.means[1]))
    assert np.abs(field - ramp).max() < 0.05
    with pytest.raises(InputError, match="finite class means"):
        sp.segment(held[0], measure.means[:3], measure.sigma)
    with pytest.raises(InputError, match="holds no"):
        sp.reference([np.zeros((4, 4, 4), np.uint8)])
    with pytest.raises(InputError, match="not images"):  # raw volumes where label maps belong
        measure.rates(held[:1])


def test_centres_are_the_structures_and_their_spread_tells_a_template_from_real_variety(data):
    measure, held, held_lab = data
    judged = measure.judge(measure.segment(held))
    for k, centre in judged[0].items():
        if centre is not None and k in (1, 4, 6):  # body, myocardium, spine: segmented like their labels
            assert np.linalg.norm(centre - np.argwhere(held_lab[0] == k).mean(0)) < 1.0, sp.STRUCTURES[k]
    real = sp.centre_spread(judged)
    assert real > 0.3  # the phantoms' tumour side and place, heart and body size vary between subjects
    assert sp.centre_spread([judged[0]] * len(held)) < 1e-9  # one volume drawn again and again
    assert sp.centre_spread(judged[:1] + measure.judge(measure.segment(held[1:3]))) > 0
    with pytest.raises(InputError, match="no spread"):
        sp.centre_spread(judged[:1])


def test_balls_in_the_lungs_count_the_tumours_a_volume_has(data):
    """Real phantoms have one tumour in the lungs; painting it over leaves none, and a copy of it mirrored
    into the other lung makes two (what presence, judging the largest piece only, cannot see)."""
    measure, held, held_lab = data
    assert [sp.lung_balls(s) for s in measure.segment(held)] == [1] * len(held)
    vol, lab = held[0].copy(), held_lab[0]
    tumour = lab == 7
    mirrored = tumour[..., ::-1]
    assert (lab[mirrored] == 2).all()  # the mirror image lies in the other lung
    two = vol.copy()
    two[mirrored] = vol[tumour].mean()
    none = vol.copy()
    none[tumour] = float(measure.means[2])
    assert [sp.lung_balls(s) for s in measure.segment([two, none])] == [2, 0]


def test_2d_slices_are_segmented_and_a_mirrored_heart_is_told_from_one_in_place():
    """The same measure on (y, x) slices (the 2D diffusion trainer's phantoms): held-out real slices have
    their hearts in place, the same slices mirrored left-right do not, and the body and lungs are found."""
    train, train_lab = (np.stack(x) for x in sample_data("phantom", 2, 64)[:2])
    held = np.stack(sample_data("phantom", 2, 64, held_out=True)[0])
    measure = sp.Measure.from_training(train.astype(np.float32), train_lab)
    assert measure.hearts_in_place(measure.segment(held)).all()
    assert not measure.hearts_in_place(measure.segment(held[..., ::-1])).any()
    assert not measure.hearts_in_place(measure.segment([np.zeros_like(held[0])])).any()  # no blood pool: not in place
    rates = measure.rates(measure.segment(held))
    assert rates["body"] == rates["lung"] == rates["spine"] == 1.0, rates
