"""Voxels land at their physical point: file -> read_volume -> volume_to_layer -> napari world (z, y, x) LPS mm.

Each file is written with its format's own library from a known LPS affine and holds a known
linear function of the LPS position; a napari layer built from the reader's kwargs must show at
every world point the value of that function there. Covers flipped, permuted, anisotropic and
oblique directions, NIfTI, NRRD (LPS and RAS space), MetaImage and a DICOM series.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medgen.io.layers import layer_to_volume, volume_to_layer
from napari_medgen.io.readers import read_volume
from napari_medgen.io.volume import Volume

from .helpers import (CASES, COEF, index_grid, layer_world_points, linear_field, lps_affine, write_dicom_series,
                      write_nifti, write_nrrd)

SHAPE = (6, 7, 8)  # (z, y, x)
FORMATS = ["nifti", "nrrd_lps", "nrrd_ras", "mha", "dicom"]


def _write(fmt: str, tmp_path, data, affine):
    if fmt == "nifti":
        return write_nifti(tmp_path / "v.nii.gz", data.astype(np.float32), affine)
    if fmt.startswith("nrrd"):
        return write_nrrd(tmp_path / "v.nrrd", data.astype(np.float32), affine, space=fmt[-3:].upper())
    if fmt == "mha":
        from .helpers import sitk_image

        sitk.WriteImage(sitk_image(data.astype(np.float32), affine), str(tmp_path / "v.mha"))
        return tmp_path / "v.mha"
    return write_dicom_series(tmp_path / "series", np.round(data), affine)


def _inside(points_lps: np.ndarray, affine: np.ndarray, shape_zyx) -> np.ndarray:
    ijk = (points_lps - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    upper = np.array(shape_zyx[::-1]) - 1
    return np.all((ijk > -1e-6) & (ijk < upper + 1e-6), axis=1)


def _sample(shape, n, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n) for s in shape], axis=1)


def test_hand_computed_point_nifti(tmp_path):
    """RAS affine diag(2, 3, 4), origin (-10, 20, 30): voxel (1, 2, 3) is RAS (-8, 26, 42) = LPS (8, -26, 42)."""
    import nibabel as nib

    data = np.zeros((2, 3, 4), np.int16)  # nibabel (x, y, z) order
    data[1, 2, 3] = 5
    ras = np.array([[2, 0, 0, -10], [0, 3, 0, 20], [0, 0, 4, 30], [0, 0, 0, 1]], float)
    nib.save(nib.Nifti1Image(data, ras), str(tmp_path / "p.nii"))
    layer_data, kwargs, kind = volume_to_layer(read_volume(tmp_path / "p.nii", as_label=False))
    idx = np.argwhere(layer_data == 5)
    assert len(idx) == 1
    np.testing.assert_allclose(layer_world_points(layer_data, kwargs, kind, idx)[0], [42.0, -26.0, 8.0], atol=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(CASES))
def test_reader_geometry_matches_file(tmp_path, fmt, case):
    direction, spacing = CASES[case]
    affine = lps_affine(direction, spacing)
    path = _write(fmt, tmp_path, linear_field(SHAPE, affine), affine)
    vol = read_volume(path)
    if fmt == "dicom" and np.linalg.det(direction) < 0:
        # DICOM's slice axis is the cross product of its row and column directions: GDCM stacks the
        # slices the other way round; the voxels still land right (test_world_coordinates)
        direction = direction @ np.diag([1.0, 1.0, -1.0])
        affine = lps_affine(direction, spacing, origin=affine[:3, 3] + affine[:3, 2] * (SHAPE[0] - 1))
        assert vol.data.shape == SHAPE
        np.testing.assert_allclose(vol.affine(), affine, atol=1e-4)
        np.testing.assert_allclose(vol.data, linear_field(SHAPE, affine), atol=0.51)
        return
    assert vol.data.shape == SHAPE
    np.testing.assert_allclose(vol.affine(), affine, atol=1e-4)
    tol = 0.51 if fmt == "dicom" else 1e-3
    np.testing.assert_allclose(vol.data, linear_field(SHAPE, affine), atol=tol)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("oblique", ["resample", "affine"])
def test_world_coordinates(tmp_path, fmt, case, oblique):
    direction, spacing = CASES[case]
    affine = lps_affine(direction, spacing)
    path = _write(fmt, tmp_path, linear_field(SHAPE, affine), affine)
    data, kwargs, kind = volume_to_layer(read_volume(path), oblique=oblique)
    if case == "oblique":
        assert any("oblique" in n for n in kwargs["metadata"]["notes"])
        assert ("affine" in kwargs) == (oblique == "affine")
    else:
        assert "affine" not in kwargs
    idx = _sample(data.shape, 60, seed=len(case))
    world = layer_world_points(data, kwargs, kind, idx)
    lps = world[:, ::-1]
    keep = _inside(lps, affine, SHAPE)
    assert keep.sum() >= 10
    expected = lps[keep] @ COEF + 7.0
    tol = (1.01 if fmt == "dicom" else 1e-3)
    np.testing.assert_allclose(data[tuple(idx[keep].T)], expected, atol=tol)


def test_oblique_labels_resampled_nearest(tmp_path):
    direction, spacing = CASES["oblique"]
    affine = lps_affine(direction, spacing)
    labels = (index_grid(SHAPE) // 3).astype(np.uint8) @ np.array([1, 3, 9], np.uint8)
    write_nifti(tmp_path / "v_seg.nii.gz", labels.astype(np.uint8), affine)
    vol = read_volume(tmp_path / "v_seg.nii.gz")
    assert vol.is_label and vol.data.dtype == np.uint8
    data, kwargs, kind = volume_to_layer(vol)
    assert kind == "labels" and data.dtype == np.uint8
    assert set(np.unique(data)) <= set(np.unique(labels))
    idx = _sample(data.shape, 80, seed=3)
    lps = layer_world_points(data, kwargs, kind, idx)[:, ::-1]
    ijk = np.rint((lps - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(SHAPE[::-1])), axis=1)
    expected = labels[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]]
    assert inside.sum() >= 10
    assert np.mean(data[tuple(idx[inside].T)] == expected) >= 0.97


def _signed_permutations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            d = np.zeros((3, 3))
            d[list(perm), [0, 1, 2]] = signs
            yield d


@pytest.mark.parametrize("direction", list(_signed_permutations()), ids=lambda d: "".join(
    f"{'-' if v < 0 else '+'}{'xyz'[int(np.argmax(np.abs(d[:, c])))]}" for c, v in enumerate(d.sum(axis=0))))
@pytest.mark.parametrize("ndim", [3, 4])
def test_all_48_axis_aligned_orientations(direction, ndim):
    """Every signed permutation: exact reorientation, right world point, exact way back."""
    spacing, origin = (0.7, 1.3, 2.9), (12.5, -7.25, 3.0)
    shape = ((2,) if ndim == 4 else ()) + SHAPE
    vol = Volume(np.arange(np.prod(shape), dtype=np.int32).reshape(shape), spacing, origin, direction,
                 metadata={"time_spacing": 5.0})
    data, kwargs, kind = volume_to_layer(vol)
    assert "affine" not in kwargs and sorted(data.shape) == sorted(shape)
    ijk = np.array([[0, 0, 0], [7, 6, 5], [3, 1, 4]])
    values = vol.data[(-1, *ijk.T[::-1])] if ndim == 4 else vol.data[tuple(ijk.T[::-1])]
    idx = np.array([np.argwhere(data == v)[0] for v in values])
    world = layer_world_points(data, kwargs, kind, idx)[:, -3:][:, ::-1]
    np.testing.assert_allclose(world, vol.index_to_physical(ijk), atol=1e-9)
    back = layer_to_volume(data, kwargs["scale"], kwargs["translate"], None, kwargs["metadata"])
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine(), vol.affine(), atol=1e-12)


@pytest.mark.parametrize("case", list(CASES))
def test_layer_round_trip_restores_volume(case):
    direction, spacing = CASES[case]
    vol = Volume(np.arange(np.prod(SHAPE), dtype=np.int32).reshape(SHAPE), spacing, (3.0, -4.0, 5.5), direction,
                 is_label=True, metadata={"label_names": {1: "a"}})
    data, kwargs, kind = volume_to_layer(vol, name="x", oblique="affine")
    back = layer_to_volume(data, kwargs["scale"], kwargs["translate"], kwargs.get("affine"), kwargs["metadata"],
                           is_label=kind == "labels")
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine(), vol.affine(), atol=1e-9)
    assert back.metadata["label_names"] == {1: "a"} and back.is_label


def test_time_series_world_axis():
    direction, spacing = CASES["permuted"]
    vol = Volume(np.zeros((3,) + SHAPE, np.float32), spacing, (1.0, 2.0, 3.0), direction,
                 metadata={"time_spacing": 7.5})
    vol.data[2, 1, 2, 3] = 1.0  # t=2, voxel (i, j, k) = (3, 2, 1)
    data, kwargs, kind = volume_to_layer(vol)
    assert data.ndim == 4 and kwargs["scale"][0] == 7.5
    idx = np.argwhere(data == 1.0)
    world = layer_world_points(data, kwargs, kind, idx)[0]
    assert world[0] == pytest.approx(15.0)
    np.testing.assert_allclose(world[1:][::-1], vol.index_to_physical([3, 2, 1]), atol=1e-9)


def test_detached_nhdr_and_mhd(tmp_path):
    import nrrd

    direction, spacing = CASES["permuted"]
    affine = lps_affine(direction, spacing)
    data = linear_field(SHAPE, affine).astype(np.float32)
    nrrd.write(str(tmp_path / "v.nhdr"), data.T, {"space": "left-posterior-superior", "space directions": affine[:3, :3].T,
                                                  "space origin": affine[:3, 3]}, detached_header=True, index_order="F")
    from .helpers import sitk_image

    sitk.WriteImage(sitk_image(data, affine), str(tmp_path / "v.mhd"))
    for name in ("v.nhdr", "v.mhd"):
        vol = read_volume(tmp_path / name)
        np.testing.assert_allclose(vol.affine(), affine, atol=1e-6)
        np.testing.assert_array_equal(vol.data, data)


def test_nifti_units_in_metres_become_mm(tmp_path):
    affine = lps_affine(np.eye(3), (0.002, 0.003, 0.004), origin=(0.01, -0.02, 0.03))
    path = write_nifti(tmp_path / "m.nii", np.zeros(SHAPE, np.float32), affine, xyzt_units=1)  # 1 = metre
    vol = read_volume(path)
    np.testing.assert_allclose(vol.spacing, (2.0, 3.0, 4.0), atol=1e-4)
    np.testing.assert_allclose(vol.origin, (10.0, -20.0, 30.0), atol=1e-4)


@pytest.mark.parametrize("oblique", ["resample", "affine"])
def test_4d_oblique(oblique):
    direction, spacing = CASES["oblique"]
    affine = lps_affine(direction, spacing)
    frames = np.stack([linear_field(SHAPE, affine) * (t + 1) for t in range(3)]).astype(np.float32)
    vol = Volume(frames, spacing, affine[:3, 3], direction, metadata={"time_spacing": 4.0})
    data, kwargs, kind = volume_to_layer(vol, oblique=oblique)
    assert data.ndim == 4 and data.shape[0] == 3 and kwargs["scale"][0] == 4.0
    idx = _sample(data.shape, 80, seed=5)
    world = layer_world_points(data, kwargs, kind, idx)
    keep = _inside(world[:, 1:][:, ::-1], affine, SHAPE)
    t = world[keep, 0] / 4.0
    expected = (world[keep, 1:][:, ::-1] @ COEF + 7.0) * (t + 1)
    np.testing.assert_allclose(data[tuple(idx[keep].T)], expected, rtol=1e-5, atol=1e-3)


def test_nifti_sform_preferred_over_qform(tmp_path):
    import nibabel as nib

    img = nib.Nifti1Image(np.zeros((2, 3, 4), np.float32), np.eye(4))
    img.set_sform(np.diag([2.0, 3.0, 4.0, 1.0]), code="scanner")
    img.set_qform(np.diag([5.0, 6.0, 7.0, 1.0]), code="scanner")
    nib.save(img, str(tmp_path / "both.nii"))
    assert read_volume(tmp_path / "both.nii").spacing == pytest.approx((2.0, 3.0, 4.0))
    img.set_sform(None, code=0)
    nib.save(img, str(tmp_path / "qonly.nii"))
    assert read_volume(tmp_path / "qonly.nii").spacing == pytest.approx((5.0, 6.0, 7.0))
