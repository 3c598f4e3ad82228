"""Real-scan follow-ups without a model: progression laws, lesion shape, what stays fixed, appearance, bad input, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_medgen.data import lesion_change as lc
from napari_medgen.data import phantom
from napari_medgen.data.progression import Law, Progression, check_months, schedule
from napari_medgen.errors import InputError
from napari_medgen.io.readers import read_volume
from napari_medgen.io.volume import Volume
from napari_medgen.progress import collect, run_to_completion
from napari_medgen.tasks.followup import label_values, propose_tracked, resolve_tracked, simulate_followups
from napari_medgen.tasks.followup_quality import scan_checks, truth_scores

SEED = 3_000_101  # never used to train anything (the method trains nothing; kept apart from every benchmark seed)
SPACING = (2.0, 2.0, 2.5)
Q = (6 / 16) ** (1 / 5)  # the phantom protocol's radius ratio per follow-up
HALVING = np.log(2) / (-3 * np.log(Q)) * 3  # months, with follow-ups 3 months apart


def _small(seed: int, style: str, **kw) -> tuple[Volume, Volume]:
    """A small phantom subject whose field of view (240 x 240 x 128 mm) holds the tumour."""
    return phantom.make_phantom(seed, shape=(32, 80, 80), spacing=(3.0, 3.0, 4.0), style=style, **kw)


def _oblique() -> np.ndarray:
    """A flipped, oblique direction matrix (orthonormal, det -1)."""
    a, b = np.deg2rad(20), np.deg2rad(-35)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx @ np.diag([1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def ct_case():
    """Phantom CT (HU) with its 3-month regression truth; the tumour relabelled 200, the body 1, nothing else."""
    img, lab = phantom.tumour_regression_series(SEED, n=4, shape=(64, 128, 128), spacing=SPACING, style="ct",
                                                start_radius_mm=16.0, end_radius_mm=16.0 * Q ** 3)
    odd = np.where(lab.data == 7, 200, np.where(lab.data > 0, 1, 0)).astype(np.uint8)
    direction = _oblique()
    base = Volume(img.data[0], img.spacing, (12.5, -40.0, 7.0), direction, metadata={"source": "ct.nii.gz"})
    labels = Volume(odd[0], img.spacing, (12.5, -40.0, 7.0), direction, True,
                    {"source": "ct_seg.nii.gz", "label_names": {1: "body", 200: "Tumour"}})
    result = run_to_completion(simulate_followups(base, labels, None, [3.0, 6.0, 9.0], Progression("regression", HALVING)))
    return base, labels, img, odd, result


def test_laws_follow_their_definitions_and_refuse_bad_rates():
    assert Progression("regression", 3.0).ratio(3.0) == pytest.approx(0.5)
    assert Progression("growth", 6.0).ratio(12.0) == pytest.approx(4.0)
    assert Progression("percent", -10.0).ratio(2.0) == pytest.approx(0.81)
    assert Progression().law is Law.REGRESSION and Progression().rate == 3.0
    for law, rate, msg in (("regression", float("nan"), "finite"), ("growth", -2.0, "positive"),
                           ("regression", 0.0, "positive"), ("percent", -100.0, "above -100"),
                           ("shrink", 1.0, "not one of")):
        with pytest.raises(InputError, match=msg):
            Progression(law, rate)
    with pytest.raises(InputError, match="positive months"):
        check_months([3.0, 0.0])
    with pytest.raises(InputError, match="positive months"):
        check_months([-1.0])
    with pytest.raises(InputError, match="increase"):
        check_months([6.0, 3.0])
    assert schedule(3, 2.0) == [2.0, 4.0, 6.0]


def test_phantom_ct_matches_the_truth(ct_case):
    """Masks against the phantom's true regression (Dice, volume) and the image change where the tumour left."""
    base, labels, img, odd, r = ct_case
    s = truth_scores(r.image.data, r.labels.data, img.data, odd, 200, base.spacing[::-1], 10.0)
    assert s["dice"].min() >= 0.9 and np.abs(s["volume_error"]).max() <= 0.1
    assert s["contrast"].min() >= 0.7  # the images carry the change
    assert s["outside_max"].max() == 0.0  # beyond the margin nothing changes at all


def test_real_scan_checks_on_an_oblique_flipped_ct_with_label_200(ct_case):
    base, labels, _, _, r = ct_case
    assert r.tracked == 200 and r.image.metadata["times"] == [0.0, 3.0, 6.0, 9.0]
    c = scan_checks(r, base, labels)
    assert c["geometry_error"] <= 1e-5 and c["monotone"] == 1.0
    assert c["changed_within_mm"] <= 15.0
    assert c["vacated_moved"] >= 0.5 and 1 / 1.5 <= c["std_ratio"] <= 1.5
    np.testing.assert_array_equal(r.image.data[0], base.data)
    np.testing.assert_array_equal(r.labels.data[0], labels.data)
    assert r.image.data.dtype == np.float32 and r.image.data.min() >= -1100  # still HU
    ratio = np.asarray(r.tracked_ml[1:]) / r.tracked_ml[0]
    np.testing.assert_allclose(ratio, [Progression("regression", HALVING).ratio(m) for m in (3, 6, 9)], rtol=0.02)


def test_vacated_region_is_textured_not_flat(ct_case):
    """The fill carries noise like the lung's, and a flat fill of the shell's mean would not."""
    base, labels, _, _, r = ct_case
    vacated = (labels.data == 200) & (r.labels.data[-1] != 200)
    inner = ndimage.binary_erosion(vacated)
    lung = (labels.data == 1) & (base.data < -500)
    assert r.image.data[-1][inner].std() > 0.5 * base.data[lung].std()


def test_months_change_the_prediction_and_growth_grows():
    img, lab = _small(SEED + 1, "mr_vendor_b", tumour_radius_mm=8.0)
    a = run_to_completion(simulate_followups(img, lab, 7, [2.0], Progression("growth", 4.0)))
    b = run_to_completion(simulate_followups(img, lab, 7, [8.0], Progression("growth", 4.0)))
    assert a.tracked_ml[1] / a.tracked_ml[0] == pytest.approx(2 ** 0.5, rel=0.05)
    assert b.tracked_ml[1] / b.tracked_ml[0] == pytest.approx(4.0, rel=0.05)
    grown = (b.labels.data[1] == 7) & (lab.data != 7)
    assert grown.sum() > 0 and np.all(b.labels.data[1][lab.data == 7] == 7)  # grows around the baseline lesion
    tumour_mean = img.data[lab.data == 7].mean()
    assert abs(b.image.data[1][grown].mean() - tumour_mean) < 0.25 * abs(tumour_mean - img.data[lab.data == 2].mean())


def test_displacement_is_invertible_and_zero_beyond_the_margin():
    mask = np.zeros((40, 60, 60), bool)
    zz, yy, xx = np.ogrid[:40, :60, :60]
    mask[((zz - 20) * 2.5) ** 2 + ((yy - 30) * 1.0) ** 2 + ((xx - 30) * 1.0) ** 2 < 15 ** 2] = True
    sp = (2.5, 1.0, 1.0)
    phi = lc.signed_distance(mask, sp)
    u = lc.pull_field(phi, lc.normals(phi, sp), shrink_mm=10.0, pull=0.5, margin_mm=10.0)
    jac = np.eye(3)[:, :, None, None, None] + np.stack([np.stack(np.gradient(u[i], *sp)) for i in range(3)])
    det = np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))
    assert det.min() > 0.1
    assert np.all(u[:, phi >= 10.0] == 0)


def test_label_values_of_a_map_counted_in_chunks_are_all_values_present():
    data = np.zeros((40, 256, 256), np.uint16)  # 2.6 M voxels: two chunks of counting
    data[0, 0, 0], data[20, 5, 7], data[-1, -1, -1] = 7, 300, 2  # 7 and 300 in the first chunk, 2 in the second
    values = label_values(Volume(data))
    assert values == [2, 7, 300] == [int(v) for v in np.unique(data) if v]


def test_lesion_is_chosen_by_name_or_as_the_only_label_and_bad_choices_are_refused():
    data = np.zeros((4, 8, 8), np.uint8)
    data[1:3, 2:5, 2:5] = 3
    data[0, 0, 0] = 9
    named = Volume(data, metadata={"source": "seg.nrrd", "label_names": {3: "Liver mass", 9: "vessel"}})
    assert propose_tracked(named) == 3 and resolve_tracked(named, "VESSEL") == 9
    assert propose_tracked(Volume((data == 3).astype(np.uint8))) == 1
    assert propose_tracked(Volume(data)) is None
    with pytest.raises(InputError, match=r"seg.nrrd has no voxels with label 5; it holds 3 \(Liver mass\), 9 \(vessel\)"):
        resolve_tracked(named, 5)
    with pytest.raises(InputError, match="no label named 'tumour'"):
        resolve_tracked(named, "tumour")
    with pytest.raises(InputError, match="choose the label to follow"):
        resolve_tracked(Volume(data), None)


def test_bad_inputs_give_one_clear_message():
    img, lab = _small(SEED + 2, "ct")
    run = lambda *a, **k: run_to_completion(simulate_followups(*a, **k))  # noqa: E731
    with pytest.raises(InputError, match="2D"):
        run(img.with_data(img.data[:1]), lab.with_data(lab.data[:1]), 7, [3.0])
    with pytest.raises(InputError, match="no voxels with label 4"):
        run(img, lab.with_data(np.where(lab.data == 4, 0, lab.data)), 4, [3.0])
    with pytest.raises(InputError, match="positive months"):
        run(img, lab, 7, [0.0])
    with pytest.raises(InputError, match="shape"):
        run(img, lab.with_data(lab.data[:8]), 7, [3.0])
    with pytest.raises(InputError, match="geometry"):
        run(img, Volume(lab.data, lab.spacing, (1.0, 2.0, 3.0), is_label=True), 7, [3.0])


def test_progress_is_reported_per_follow_up():
    img, lab = _small(SEED + 3, "mr_vendor_c")
    seen, r = collect(simulate_followups(img, lab, "tumour", [1.0, 2.0, 4.0]))
    assert [p.step for p in seen] == [0, 1, 2, 3] and all(p.total == 4 for p in seen)
    assert r.image.data.shape == (4,) + img.data.shape


def test_cli_writes_the_series_and_refuses_bad_input(tmp_path, capsys):
    from napari_medgen.cli import main
    from napari_medgen.io.writers import write_volume

    img, lab = _small(SEED + 4, "ct")
    write_volume(img, tmp_path / "ct.nii.gz")
    write_volume(lab, tmp_path / "seg.nii.gz")
    common = ["longitudinal", "--baseline", str(tmp_path / "ct.nii.gz"), "--labels", str(tmp_path / "seg.nii.gz")]
    for extra, msg in ((["--tracked", "50", "--rate", "3"], "no voxels with label 50"),
                       (["--tracked", "spleen"], "no label named 'spleen'"),
                       (["--rate", "nan"], "finite"), (["--rate", "-2"], "positive"),
                       (["--months", "0,3"], "positive months"), (["--months", "-3"], "positive months")):
        out = tmp_path / f"bad{len(extra)}{extra[-1]}"
        try:  # refused by the task (returns 2) or by the option's type while parsing (exits 2)
            status = main([*common, "--out", str(out), *extra])
        except SystemExit as exc:
            status = exc.code
        assert status == 2
        assert msg in capsys.readouterr().err and not out.exists()
    out = tmp_path / "series"
    assert main([*common, "--tracked", "tumour", "--months", "3,6", "--out", str(out), "--single-file"]) == 0
    series = read_volume(out / "followups.nii.gz")
    assert series.data.shape == (3,) + img.data.shape
    np.testing.assert_allclose(series.data[0], img.data, atol=1e-3)
    rows = (out / "volumes.csv").read_text().split()
    assert rows[0] == "time_months,volume_ml" and len(rows) == 4
    assert float(rows[3].split(",")[1]) < float(rows[1].split(",")[1])
