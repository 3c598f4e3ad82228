"""A growing lesion follows the anatomy (data.lesion_change.growth_distance): through its host tissue,
around other labelled structures, never out of the patient into the air around the body."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_medgen.data import lesion_change as lc
from napari_medgen.data.body import body_mask
from napari_medgen.data.phantom import make_phantom
from napari_medgen.data.progression import Law, Progression
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.followup import simulate_followups


def _ball(shape, centre, sp, radius_mm):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, sp)) <= radius_mm ** 2


def _lesion_at(labels: np.ndarray, border_of: np.ndarray, sp, radius_mm=8.0, value=9) -> np.ndarray:
    edge = np.argwhere(border_of & ~ndimage.binary_erosion(border_of))
    out = labels.copy()
    out[_ball(labels.shape, edge[len(edge) // 2], sp, radius_mm) & (labels > 0)] = value
    return out


def test_the_body_mask_is_the_patient_with_its_lungs_on_ct_and_mr():
    for style in ("ct", "mr_vendor_a"):
        image, labels = make_phantom(seed=3, style=style, shape=(24, 96, 96))
        body = body_mask(image.data)
        agree = (body == (labels.data > 0)).mean()
        assert agree > 0.97, (style, agree)


def test_a_lesion_at_the_skin_never_grows_into_the_air():
    image, labels = make_phantom(seed=3, style="ct", shape=(32, 112, 112))
    sp = labels.spacing[::-1]
    data = _lesion_at(labels.data, labels.data > 0, sp)  # a lesion on the body's surface
    result = run_to_completion(simulate_followups(image, labels.with_data(data), 9, [3, 6],
                                                  Progression(Law.GROWTH, 1.5)))
    assert result.tracked_ml[-1] > 2.5 * result.tracked_ml[0]
    grown = result.labels.data[-1] == 9
    assert not (grown & (labels.data == 0)).any()  # not one voxel of lesion in the air


def test_growth_prefers_the_host_tissue_to_other_structures():
    image, labels = make_phantom(seed=3, style="ct", shape=(40, 128, 128))
    sp = labels.spacing[::-1]
    data = _lesion_at(labels.data, labels.data == 2, sp)  # in the lung, against the chest wall (body)
    lab = labels.with_data(data)
    result = run_to_completion(simulate_followups(image, lab, 9, [6], Progression(Law.GROWTH, 2.0)))
    new = (result.labels.data[1] == 9) & (data != 9)
    into = np.bincount(data[new], minlength=3)
    cost = lc.growth_cost(np.ones(data.shape, bool), data, 9)
    assert cost[data == 2].max() == 1.0 and cost[data == 1].min() == lc.ORGAN_COST  # the lung hosts it
    assert into[2] > 5 * into[1], into  # straight-line growth gave 100 : 61 here


def test_geodesic_distance_goes_around_a_costly_wall():
    sp = (1.0, 1.0, 1.0)
    lesion = np.zeros((1, 40, 40), bool)
    lesion[0, 20, 5] = True
    cost = np.ones(lesion.shape, np.float32)
    cost[0, 10:30, 10] = 100.0  # a wall between the lesion and the right side
    phi = lc.growth_distance(lc.signed_distance(lesion, sp, 0), lesion, cost, sp, smooth_vox=0)
    assert phi[0, 20, 15] > 15  # around the wall, not through it (10 in a straight line)
    assert phi[0, 20, 15] < 100
    assert phi[0, 20, 0] < 6


def _growth_case(shape=(40, 120, 120)):
    rng = np.random.default_rng(5)
    lesion = _ball(shape, [n // 2 for n in shape], (1.0, 1.0, 1.0), 6.0)
    cost = rng.choice(np.float32([1.0, lc.ORGAN_COST, lc.OUTSIDE_COST]), size=shape, p=[0.8, 0.15, 0.05])
    return lesion, cost, (2.5, 0.75, 0.75)


def test_the_geodesic_distance_is_skimages_minimum_cost_path_exactly():
    from skimage.graph import MCP_Geometric

    lesion, cost, sp = _growth_case((20, 60, 60))
    phi = lc.signed_distance(lesion, sp, 0)
    plain, _ = MCP_Geometric(cost, sampling=sp).find_costs(np.argwhere(lesion))
    ours = lc.growth_distance(phi, lesion, cost, sp, smooth_vox=0)
    expected = np.where(lesion, phi, np.minimum(plain, lc.OUTSIDE_COST * float(np.sum(np.asarray(lesion.shape) * sp)))
                        + 0.5 * min(sp)).astype(np.float32)
    assert np.array_equal(ours, expected)


def test_the_geodesic_search_lets_other_threads_run():
    """A viewer's Qt thread waits for the GIL: it must get it every few ms while a worker searches
    (skimage's find_costs alone holds it for the whole search: the main thread's longest gap was the search)."""
    from tests.benchmark_modules import load_benchmark

    lesion, cost, sp = _growth_case()
    phi = lc.signed_distance(lesion, sp, 0)
    gap, _, wall = load_benchmark("longitudinal_gil").longest_gap(lambda: lc.growth_distance(phi, lesion, cost, sp))
    assert wall > 50 and gap < 0.5 * wall, (gap, wall)
