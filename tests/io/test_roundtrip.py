"""read -> write -> read reproduces the array exactly (dtype too) and the geometry to 1e-5, every format."""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path as nibabel_data

from napari_medgen.errors import ReadError, WriteError
from napari_medgen.io.readers import read_volume
from napari_medgen.io.volume import Volume
from napari_medgen.io.writers import write_volume

from .helpers import CASES, lps_affine, pydicom_file, write_dicom_series

FORMATS = [".nii.gz", ".nii", ".nrrd", ".mha"]
ORIGIN = (-123.456, 78.9012, -45.6789)


def _assert_same(a: Volume, b: Volume, atol: float = 1e-5) -> None:
    assert a.data.dtype == b.data.dtype
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_allclose(a.spacing, b.spacing, atol=atol)
    np.testing.assert_allclose(a.origin, b.origin, atol=atol)
    np.testing.assert_allclose(a.direction, b.direction, atol=atol)
    assert a.is_label == b.is_label


def _volume(case: str, dtype, is_label: bool, rng, four_d: bool = False) -> Volume:
    direction, spacing = CASES[case]
    shape = (3, 5, 6, 7) if four_d else (5, 6, 7)
    if is_label:
        data = rng.integers(0, 6, shape).astype(dtype)
    else:
        data = (rng.standard_normal(shape) * 100).astype(dtype)
    meta = {"time_spacing": 2.5} if four_d else {}
    return Volume(data, spacing, ORIGIN, direction, is_label=is_label, metadata=meta)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32])
def test_label_dtype_preserved(tmp_path, rng, suffix, dtype):
    vol = _volume("permuted", dtype, True, rng)
    back = read_volume(write_volume(vol, tmp_path / f"labels{suffix}"))
    _assert_same(vol, back)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("case", list(CASES))
def test_image_round_trip(tmp_path, rng, suffix, case):
    vol = _volume(case, np.float32, False, rng)
    back = read_volume(write_volume(vol, tmp_path / f"image{suffix}"))
    _assert_same(vol, back)
    assert back.metadata["source"].endswith(suffix)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("is_label", [False, True])
def test_4d_round_trip(tmp_path, rng, suffix, is_label):
    vol = _volume("oblique", np.uint16 if is_label else np.float32, is_label, rng, four_d=True)
    back = read_volume(write_volume(vol, tmp_path / f"series{suffix}"))
    _assert_same(vol, back)
    assert back.metadata["time_spacing"] == pytest.approx(2.5)


@pytest.mark.parametrize("name", ["example4d.nii.gz", "anatomical.nii", "example_nifti2.nii.gz", "standard.nii.gz"])
@pytest.mark.parametrize("suffix", FORMATS)
def test_nibabel_files_round_trip(tmp_path, name, suffix):
    vol = read_volume(os.path.join(nibabel_data, name))
    _assert_same(vol, read_volume(write_volume(vol, tmp_path / f"out{suffix}")))


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
@pytest.mark.parametrize("suffix", FORMATS)
def test_dicom_file_round_trip(tmp_path, name, suffix):
    path = pydicom_file(name)
    vol = read_volume(path)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
    np.testing.assert_array_equal(vol.data[0], expected)
    np.testing.assert_allclose(vol.origin, [float(v) for v in ds.ImagePositionPatient], atol=1e-4)
    # NIfTI-1 keeps geometry in float32: 1e-5 relative to these ~180 mm coordinates
    _assert_same(vol, read_volume(write_volume(vol, tmp_path / f"out{suffix}")), atol=2e-5)


@pytest.mark.parametrize("suffix", FORMATS)
def test_dicom_series_round_trip(tmp_path, rng, suffix):
    direction, spacing = CASES["oblique"]
    data = rng.integers(-1000, 2000, (5, 6, 7)).astype(np.int16)
    write_dicom_series(tmp_path / "series", data, lps_affine(direction, spacing))
    vol = read_volume(tmp_path / "series")
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine(), lps_affine(direction, spacing), atol=1e-4)
    assert vol.metadata["format"] == "DICOM series" and vol.metadata["n_files"] == 5
    _assert_same(vol, read_volume(write_volume(vol, tmp_path / f"out{suffix}"), as_label=False))


def test_dicom_rescale_applied(tmp_path, rng):
    data = rng.integers(0, 500, (3, 4, 5)).astype(np.int16)
    folder = write_dicom_series(tmp_path / "s", data, lps_affine(np.eye(3), (1.0, 1.0, 2.0)))
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.RescaleSlope, ds.RescaleIntercept = "2", "-1024"
        ds.save_as(f)
    np.testing.assert_array_equal(read_volume(folder).data, data * 2.0 - 1024)


def test_several_series_picks_largest(tmp_path, rng):
    aff = lps_affine(np.eye(3), (1.0, 1.0, 2.0))
    write_dicom_series(tmp_path / "mix", rng.integers(0, 9, (4, 4, 5)).astype(np.int16), aff, series_uid="1.2.3.4")
    big = rng.integers(0, 9, (6, 4, 5)).astype(np.int16)
    small = tmp_path / "mix"
    for f in small.iterdir():
        f.rename(small / f"a_{f.name}")
    write_dicom_series(small, big, aff, series_uid="1.2.3.5")
    vol = read_volume(small)
    np.testing.assert_array_equal(vol.data, big)
    assert any("2 DICOM series" in n for n in vol.metadata["notes"])


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path, rng, monkeypatch):
    target = tmp_path / "keep.nii.gz"
    first = _volume("identity", np.float32, False, rng)
    write_volume(first, target)
    before = target.read_bytes()

    def boom(vol, path):
        path.write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr("napari_medgen.io.writers.write_nifti", boom)
    with pytest.raises(WriteError, match="keep.nii.gz"):
        write_volume(first, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.nii.gz"]


def test_write_unsupported_suffix(tmp_path, rng):
    with pytest.raises(WriteError, match="unsupported"):
        write_volume(_volume("identity", np.float32, False, rng), tmp_path / "x.png")


def test_bool_and_float16_are_stored(tmp_path, rng):
    vol = _volume("identity", np.float32, False, rng)
    back = read_volume(write_volume(vol.with_data(vol.data > 0, is_label=True), tmp_path / "m.nrrd"))
    assert back.data.dtype == np.uint8 and back.is_label
    np.testing.assert_array_equal(back.data, vol.data > 0)
    back = read_volume(write_volume(vol.with_data(vol.data.astype(np.float16)), tmp_path / "h.mha"))
    np.testing.assert_array_equal(back.data, vol.data.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("suffix", FORMATS)
def test_temporary_file_keeps_the_extension(tmp_path, rng, monkeypatch, suffix):
    import napari_medgen.io._itk as itk_writer
    import napari_medgen.io.writers as writers

    seen = []
    for module, name in ((writers, "write_nifti"), (itk_writer, "write_itk")):  # write_itk is imported when used
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda vol, path, real=real: (seen.append(path.name), real(vol, path)))
    write_volume(_volume("identity", np.float32, False, rng), tmp_path / f"out{suffix}")
    assert len(seen) == 1 and seen[0].endswith(suffix) and seen[0] != f"out{suffix}"


def test_dicom_series_missing_slice_is_reported(tmp_path, rng):
    folder = write_dicom_series(tmp_path / "gap", rng.integers(0, 99, (6, 4, 5)).astype(np.int16),
                                lps_affine(np.eye(3), (1.0, 1.0, 2.0)))
    assert "notes" not in read_volume(folder).metadata
    (folder / "slice003.dcm").unlink()
    vol = read_volume(folder)
    assert vol.data.shape == (5, 4, 5)
    assert any("not evenly spaced" in n and "2 to 4 mm" in n for n in vol.metadata["notes"])


@pytest.mark.parametrize("suffix", FORMATS)
def test_label_names_round_trip(tmp_path, rng, suffix):
    names = {0: "background", 1: "CSF", 2: "grey matter", 3: "white matter"}
    vol = _volume("flipped", np.uint8, True, rng)
    vol.metadata["label_names"] = names
    assert read_volume(write_volume(vol, tmp_path / f"named{suffix}")).metadata["label_names"] == names


@pytest.mark.parametrize("with_trigger", [True, False])
def test_multiphase_dicom_series_opens_as_4d(tmp_path, rng, with_trigger):
    direction, spacing = CASES["oblique"]
    phases = rng.integers(0, 900, (3, 4, 5, 6)).astype(np.int16)
    folder = tmp_path / "cine"
    for t in (2, 0, 1):  # written out of order: the reader orders by TriggerTime / instance number
        write_dicom_series(folder, phases[t], lps_affine(direction, spacing), series_uid="1.2.3.44",
                           trigger_ms=40.0 * t if with_trigger else None, first_instance=1 + 4 * t)
    vol = read_volume(folder)
    np.testing.assert_array_equal(vol.data, phases)
    np.testing.assert_allclose(vol.affine(), lps_affine(direction, spacing), atol=1e-4)
    assert vol.metadata["time_spacing"] == (40.0 if with_trigger else 1.0)
    assert any("4D" in n for n in vol.metadata["notes"])
    back = read_volume(write_volume(vol, tmp_path / "cine.nrrd"))
    np.testing.assert_array_equal(back.data, phases)


def test_dicom_series_with_unequal_time_points_is_refused(tmp_path, rng):
    aff = lps_affine(np.eye(3), (1.0, 1.0, 2.0))
    folder = write_dicom_series(tmp_path / "odd", rng.integers(0, 9, (4, 4, 5)).astype(np.int16), aff, series_uid="1.5")
    write_dicom_series(folder, rng.integers(0, 9, (2, 4, 5)).astype(np.int16), aff, series_uid="1.5", first_instance=5)
    with pytest.raises(ReadError, match="odd.*unequally often"):
        read_volume(folder)
