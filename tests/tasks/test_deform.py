"""medgen deform's task: geometry kept, labels stay labels, the operations do what they say."""

import numpy as np
import pytest

from napari_medgen.errors import InputError
from napari_medgen.io.volume import Volume
from napari_medgen.progress import collect, run_to_completion
from napari_medgen.tasks import deform as ld


def _ball_labels(spacing=(1.0, 1.0, 1.0), shape=(20, 48, 48)) -> Volume:
    """Label 1 = a big ball (radius 16 voxels in-plane), label 2 = a small ball inside it."""
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    c = np.array(shape) / 2
    r2 = ((z - c[0]) * 3) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2
    data = np.zeros(shape, np.uint8)
    data[r2 < 16 ** 2] = 1
    data[r2 < 6 ** 2] = 2
    direction = np.diag([-1.0, 1.0, 1.0])
    return Volume(data, spacing, (10.0, -5.0, 3.0), direction, True, {"label_names": {0: "bg", 1: "a", 2: "b"}})


def _same_geometry(a: Volume, b: Volume) -> None:
    assert b.is_label and b.data.shape == a.data.shape and b.data.dtype == a.data.dtype
    assert b.spacing == a.spacing and b.origin == a.origin
    np.testing.assert_array_equal(b.direction, a.direction)
    assert b.metadata["label_names"] == a.metadata["label_names"]


def test_elastic_changes_shapes_keeps_label_set_and_is_seeded():
    lab = _ball_labels()
    out = ld.elastic(lab, sigma_mm=6.0, magnitude_mm=4.0, seed=3)
    _same_geometry(lab, out)
    assert set(np.unique(out.data)) == {0, 1, 2}  # nearest neighbour: no new (interpolated) values
    changed = np.mean(out.data != lab.data)
    assert 0.005 < changed < 0.3
    np.testing.assert_array_equal(out.data, ld.elastic(lab, sigma_mm=6.0, magnitude_mm=4.0, seed=3).data)
    assert not np.array_equal(out.data, ld.elastic(lab, sigma_mm=6.0, magnitude_mm=4.0, seed=4).data)
    # volumes are roughly preserved by a smooth small deformation
    assert abs(np.sum(out.data == 1) / np.sum(lab.data == 1) - 1) < 0.2
    assert out.metadata["deformations"]


def test_elastic_leaves_single_slice_axis_alone():
    lab = _ball_labels(shape=(1, 48, 48))
    out = ld.elastic(lab, sigma_mm=6.0, magnitude_mm=4.0, seed=0)
    assert out.data.shape == (1, 48, 48) and np.any(out.data != lab.data)


def test_dilate_erode_by_voxels_and_by_mm_respect_spacing():
    lab = _ball_labels(spacing=(1.0, 1.0, 3.0))
    n2 = np.sum(lab.data == 2)
    grown = ld.dilate(lab, label=2, radius=2)
    shrunk = ld.erode(lab, label=2, radius=1)
    _same_geometry(lab, grown)
    assert np.sum(grown.data == 2) > 1.5 * n2
    assert 0 < np.sum(shrunk.data == 2) < 0.5 * n2
    # eroded voxels take the nearest other label (1 around the inner ball), never background
    assert np.sum(shrunk.data == 0) == np.sum(lab.data == 0)
    # 3 mm in mm units: one voxel along z (3 mm spacing) but three in-plane
    g_mm = ld.dilate(lab, label=2, radius=3, unit="mm").data == 2
    zs = np.nonzero(np.any(lab.data == 2, axis=(1, 2)))[0]
    zs_mm = np.nonzero(np.any(g_mm, axis=(1, 2)))[0]
    assert len(zs_mm) == len(zs) + 2
    ys = np.nonzero(np.any(lab.data == 2, axis=(0, 2)))[0]
    ys_mm = np.nonzero(np.any(g_mm, axis=(0, 2)))[0]
    assert len(ys_mm) == len(ys) + 6


def test_affine_rotation_and_scale_in_physical_space():
    lab = _ball_labels()
    # a bar along x: after 90 degrees it lies along y
    data = np.zeros_like(lab.data)
    data[:, 22:26, 8:40] = 1
    bar = lab.with_data(data)
    rot = ld.affine(bar, rotation_deg=90).data == 1
    assert np.ptp(np.nonzero(rot)[1]) > 25 and np.ptp(np.nonzero(rot)[2]) < 6
    big = ld.affine(lab, scale=1.25)
    _same_geometry(lab, big)
    ratio = np.sum(big.data > 0) / np.sum(lab.data > 0)
    assert 1.6 < ratio < 2.4  # volume scales by 1.25**3 ~ 1.95


def test_4d_series_gets_the_same_transform_per_frame():
    lab = _ball_labels()
    series = Volume(np.stack([lab.data, lab.data]), lab.spacing, lab.origin, lab.direction, True, lab.metadata)
    out = ld.elastic(series, sigma_mm=6.0, magnitude_mm=4.0, seed=1)
    assert out.data.shape == series.data.shape
    np.testing.assert_array_equal(out.data[0], out.data[1])


def test_bad_inputs_give_clear_errors():
    lab = _ball_labels()
    with pytest.raises(InputError, match="not in this label map"):
        ld.dilate(lab, label=5, radius=1)
    with pytest.raises(InputError, match="integer label map"):
        ld.erode(lab.with_data(lab.data + 0.5), label=1)
    with pytest.raises(InputError, match="Unknown deformation method"):
        run_to_completion(ld.deform(lab, "twist"))
    with pytest.raises(InputError, match="label VAE model"):
        run_to_completion(ld.deform(lab, "vae-sample"))


def test_deform_generator_reports_progress_and_returns_volume():
    lab = _ball_labels()
    steps, out = collect(ld.deform(lab, "dilate", label=1, radius=1))
    assert steps[-1].step == steps[-1].total == 1
    assert np.sum(out.data == 1) > np.sum(lab.data == 1)


def test_slerp_endpoints_and_norm():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 16)), rng.standard_normal((4, 16))
    np.testing.assert_allclose(ld.slerp(a, b, 0.0), a, atol=1e-9)
    np.testing.assert_allclose(ld.slerp(a, b, 1.0), b, atol=1e-9)
    mid = ld.slerp(a, a * 2, 0.5)  # parallel: linear fallback
    np.testing.assert_allclose(mid, a * 1.5, atol=1e-9)


def test_cli_deform_writes_a_geometry_correct_label_file(tmp_path):
    from napari_medgen.cli import main
    from napari_medgen.io.readers import read_volume
    from napari_medgen.io.writers import write_volume

    lab = _ball_labels(spacing=(1.5, 1.5, 3.0))
    write_volume(lab, tmp_path / "in.nii.gz")
    rc = main(["--quiet", "deform", "--labels", str(tmp_path / "in.nii.gz"), "--method", "erode", "--label", "1",
               "--radius", "3", "--unit", "mm", "--out", str(tmp_path / "out.nii.gz")])
    assert rc == 0
    src, out = read_volume(tmp_path / "in.nii.gz"), read_volume(tmp_path / "out.nii.gz")
    assert out.is_label and out.data.shape == src.data.shape
    np.testing.assert_allclose(out.spacing, src.spacing, atol=1e-5)
    np.testing.assert_allclose(out.origin, src.origin, atol=1e-5)
    np.testing.assert_allclose(out.direction, src.direction, atol=1e-6)
    assert 0 < np.sum(out.data == 1) < np.sum(src.data == 1)
    assert main(["deform", "--labels", str(tmp_path / "in.nii.gz"), "--method", "dilate",
                 "--out", str(tmp_path / "x.nii.gz")]) == 2  # --label missing: a plain error, no file
    assert not (tmp_path / "x.nii.gz").exists()
