"""Bad input: one clear ReadError naming the file and the problem in plain words, or a sane open."""

from __future__ import annotations

import gzip
import os
import re

import matplotlib
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from napari_medgen.errors import ReadError
from napari_medgen.io import _common
from napari_medgen.io.readers import read_volume

JARGON = re.compile(r"Traceback|\.cxx|\.h:\d|0x[0-9a-f]{6,}|itk::|HeaderDataError|ImageFileError", re.IGNORECASE)


def _fails(path, *words) -> str:
    with pytest.raises(ReadError) as info:
        read_volume(path)
    msg = str(info.value)
    assert os.path.basename(str(path)) in msg, msg
    assert not JARGON.search(msg), msg
    assert len(msg.splitlines()) == 1, msg
    for word in words:
        assert word.lower() in msg.lower(), msg
    return msg


def _image(shape=(12, 10, 8)) -> np.ndarray:
    return np.random.default_rng(0).random(shape).astype(np.float32) + 1.0


def _raw_nifti(path, data, *, sform=None, qform=None, pixdim=None, shape=None):
    """A .nii written byte by byte so that its header can say anything."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape if shape is not None else data.shape)
    hdr.set_data_dtype(data.dtype)
    if sform is not None:
        hdr.set_sform(sform, code=1)
    if qform is not None:
        hdr.set_qform(qform, code=1)
    if pixdim is not None:
        hdr["pixdim"][1:4] = pixdim
    hdr["vox_offset"] = 352
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + data.tobytes(order="F"))
    return path


def test_missing_file(tmp_path):
    _fails(tmp_path / "nothing.nii", "no such file")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    _fails(tmp_path / "empty.nii.gz", "empty")


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_truncated_nii_gz_never_opens_as_zeros(tmp_path, cut):
    full = tmp_path / "full.nii.gz"
    nib.save(nib.Nifti1Image(_image(), np.eye(4)), str(full))
    raw = full.read_bytes()
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(raw[: int(len(raw) * cut)])
    _fails(bad, "truncated")


def test_truncated_nii_gz_tail_missing(tmp_path):
    full = tmp_path / "full.nii.gz"
    nib.save(nib.Nifti1Image(_image(), np.eye(4)), str(full))
    (tmp_path / "tail.nii.gz").write_bytes(full.read_bytes()[:-4])  # only the gzip size field is gone
    _fails(tmp_path / "tail.nii.gz", "truncated")


def test_corrupted_crc_nii_gz(tmp_path):
    full = tmp_path / "full.nii.gz"
    nib.save(nib.Nifti1Image(_image(), np.eye(4)), str(full))
    raw = bytearray(full.read_bytes())
    raw[-6] ^= 0xFF  # inside the CRC32 field
    (tmp_path / "crc.nii.gz").write_bytes(bytes(raw))
    _fails(tmp_path / "crc.nii.gz", "damaged")


def test_complete_gzip_with_too_little_data(tmp_path):
    full = tmp_path / "full.nii"
    nib.save(nib.Nifti1Image(_image(), np.eye(4)), str(full))
    raw = full.read_bytes()
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    _fails(tmp_path / "short.nii.gz", "truncated")


def test_truncated_uncompressed_nii(tmp_path):
    full = tmp_path / "full.nii"
    nib.save(nib.Nifti1Image(_image(), np.eye(4)), str(full))
    (tmp_path / "cut.nii").write_bytes(full.read_bytes()[:1000])
    _fails(tmp_path / "cut.nii", "truncated")


def test_random_bytes_named_nii(tmp_path):
    (tmp_path / "noise.nii").write_bytes(np.random.default_rng(1).bytes(4000))
    _fails(tmp_path / "noise.nii", "not a nifti")


def test_png_renamed_nii_gz(tmp_path):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = tmp_path / "picture.png"
    plt.imsave(png, np.random.default_rng(0).random((8, 8)))
    png.rename(tmp_path / "picture.nii.gz")
    _fails(tmp_path / "picture.nii.gz", "png")


def test_huge_nifti_header_refused_before_reading(tmp_path, monkeypatch):
    path = _raw_nifti(tmp_path / "huge.nii", np.zeros(4, np.float32), shape=(30000, 30000, 3000))
    monkeypatch.setattr(np, "asanyarray", lambda *a, **k: pytest.fail("voxels were read"))
    _fails(path, "GiB")


@pytest.mark.parametrize("name, header", [
    ("huge.nrrd", "NRRD0004\ntype: float\ndimension: 3\nsizes: 100000 100000 1000\nendian: little\nencoding: raw\n\n"),
    ("huge.mha", "ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 1000\nElementType = MET_FLOAT\n"
                 "ElementDataFile = LOCAL\n"),
])
def test_huge_itk_header_refused(tmp_path, name, header):
    (tmp_path / name).write_text(header)
    _fails(tmp_path / name, "GiB")


def test_limit_follows_memory_limit(tmp_path, monkeypatch):
    nib.save(nib.Nifti1Image(_image((20, 20, 20)), np.eye(4)), str(tmp_path / "ok.nii.gz"))
    monkeypatch.setattr(_common, "MAX_VOLUME_BYTES", 1000)
    _fails(tmp_path / "ok.nii.gz", "GiB")


def test_zero_sized_dimension_nifti(tmp_path):
    _fails(_raw_nifti(tmp_path / "flat.nii", np.zeros(0, np.float32), shape=(10, 0, 10)), "zero-sized")


def test_zero_sized_dimension_nrrd(tmp_path):
    (tmp_path / "flat.nrrd").write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 10 0 10\nendian: little\n"
                                        "encoding: raw\n\n")
    _fails(tmp_path / "flat.nrrd", "size is zero")


def test_singular_sform_falls_back_to_qform(tmp_path):
    data = _image()
    path = _raw_nifti(tmp_path / "sing.nii", data, sform=np.diag([2.0, 0.0, 3.0, 1.0]),
                      qform=np.array([[2, 0, 0, -5], [0, 2.5, 0, 6], [0, 0, 3, 7], [0, 0, 0, 1.0]]))
    vol = read_volume(path)
    assert vol.spacing == pytest.approx((2.0, 2.5, 3.0))
    assert vol.origin == pytest.approx((5.0, -6.0, 7.0))  # RAS (-5, 6, 7) in LPS
    assert any("singular" in n for n in vol.metadata["notes"])
    np.testing.assert_array_equal(vol.data, data.T)


def test_singular_affine_without_qform_uses_pixdim(tmp_path):
    path = _raw_nifti(tmp_path / "sing.nii", _image(), sform=np.zeros((4, 4)), pixdim=[1.5, 2.0, 4.0])
    vol = read_volume(path)
    assert vol.spacing == pytest.approx((1.5, 2.0, 4.0))
    np.testing.assert_array_equal(vol.direction, np.diag([-1.0, -1.0, 1.0]))  # identity RAS, in LPS
    assert any("pixdim" in n for n in vol.metadata["notes"])


def test_nan_inf_voxels_replaced_and_reported(tmp_path):
    data = _image()
    data[0, 0, 0], data[1, 2, 3], data[4, 4, 4] = np.nan, np.inf, -np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    vol = read_volume(tmp_path / "nan.nii.gz")
    assert np.isfinite(vol.data).all()
    assert vol.data[0, 0, 0] == 0 and vol.data[3, 2, 1] == 0
    assert "3 NaN/Inf voxels replaced by 0." in vol.metadata["notes"]
    finite = np.isfinite(data.T)
    np.testing.assert_array_equal(vol.data[finite], data.T[finite])


def test_5d_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2, 3), np.float32), np.eye(4)), str(tmp_path / "five.nii.gz"))
    _fails(tmp_path / "five.nii.gz", "5D")


def test_5d_with_singleton_opens_as_4d(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 1, 3), np.float32), np.eye(4)), str(tmp_path / "five.nii.gz"))
    assert read_volume(tmp_path / "five.nii.gz").data.shape == (3, 6, 5, 4)


def test_empty_folder(tmp_path):
    (tmp_path / "nothing_here").mkdir()
    _fails(tmp_path / "nothing_here", "empty")


def test_folder_of_non_dicom_files(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    (folder / "b.bin").write_bytes(np.random.default_rng(2).bytes(600))
    _fails(folder, "none of them is DICOM")


@pytest.mark.parametrize("header, words", [
    ("NRRD0004\ntype: short\ndimension: 3\nsizes: 10 10\nencoding: raw\n\n", ["NRRD", "dimension is 3"]),
    ("NRRD0004\ntype: shortish\ndimension: 3\nsizes: 10 10 10\nencoding: raw\n\n", ["NRRD", "shortish"]),
])
def test_broken_nrrd_header(tmp_path, header, words):
    (tmp_path / "broken.nrrd").write_text(header)
    _fails(tmp_path / "broken.nrrd", *words)


def test_nrrd_with_too_little_data(tmp_path):
    (tmp_path / "short.nrrd").write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 10 10 10\nendian: little\n"
                                          b"encoding: raw\n\n" + b"\0" * 100)
    _fails(tmp_path / "short.nrrd", "damaged or incomplete")


@pytest.mark.parametrize("suffix", [".mha", ".mhd"])
def test_metaimage_data_shorter_than_header(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((10, 10, 10), np.int16)), str(path))
    data_file = path if suffix == ".mha" else path.with_suffix(".raw")
    with open(data_file, "r+b") as f:
        f.truncate(data_file.stat().st_size - 500)
    _fails(path, "truncated")


def test_compressed_metaimage_cut(tmp_path):
    path = tmp_path / "cut.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((10, 10, 10))), str(path), True)
    path.write_bytes(path.read_bytes()[:-200])
    _fails(path, "damaged or incomplete")


@pytest.mark.parametrize("name", ["noise.dcm", "noise.mha", "noise.nrrd"])
def test_random_bytes_other_formats(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(3).bytes(3000))
    _fails(tmp_path / name)


def test_unsupported_extension(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    _fails(tmp_path / "photo.png", "unsupported")


def test_vector_image_refused(tmp_path):
    img = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True)
    sitk.WriteImage(img, str(tmp_path / "rgb.mha"))
    _fails(tmp_path / "rgb.mha", "3 values per voxel")


def test_truncated_dicom_file():
    from .helpers import pydicom_file

    _fails(pydicom_file("MR_truncated.dcm"), "DICOM")


def _corrupt_and_read(path, base: bytes, edits) -> None:
    """Overwrite bytes of ``base`` at (position, value) edits; reading must open or raise ReadError."""
    data = bytearray(base)
    for pos, value in edits:
        data[pos % len(data)] = value
    path.write_bytes(gzip.compress(bytes(data)) if path.name.endswith(".gz") else bytes(data))
    try:
        vol = read_volume(path)
    except ReadError as exc:
        assert path.name in str(exc) and not JARGON.search(str(exc)), str(exc)
    else:
        assert vol.data.ndim in (3, 4) and vol.data.size > 0


def test_nifti_with_a_huge_data_offset_is_refused_before_reading(tmp_path):
    base = tmp_path / "base.nii"
    nib.save(nib.Nifti1Image(_image((6, 5, 4)), np.eye(4)), str(base))
    data = bytearray(base.read_bytes())
    data[108:112] = np.float32(9e10).tobytes()  # vox_offset: the voxel data would start 90 GB in
    bad = tmp_path / "offset.nii.gz"
    bad.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(ReadError, match=r"offset\.nii\.gz.*vox_offset"):
        read_volume(bad)


_EDITS = st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=_EDITS, compressed=st.booleans())
@example(edits=[(111, 81)], compressed=True)  # vox_offset of ~94 GB: once allocated before any check
def test_fuzzed_nifti_header_opens_or_read_error(tmp_path, edits, compressed):
    base = tmp_path / "base.nii"
    if not base.exists():
        nib.save(nib.Nifti1Image(_image((6, 5, 4)), np.diag([2.0, 3.0, 4.0, 1.0])), str(base))
    _corrupt_and_read(tmp_path / ("fz.nii.gz" if compressed else "fz.nii"), base.read_bytes()[:352 + 480], edits)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 300), st.integers(32, 126)), min_size=1, max_size=4),
       suffix=st.sampled_from([".nrrd", ".mha"]))
def test_fuzzed_itk_header_opens_or_read_error(tmp_path, edits, suffix):
    base = tmp_path / f"base{suffix}"
    if not base.exists():
        sitk.WriteImage(sitk.GetImageFromArray(_image((4, 5, 6))), str(base))
    raw = base.read_bytes()
    header_len = raw.index(b"\n\n") + 2 if suffix == ".nrrd" else raw.index(b"LOCAL\n") + 6
    _corrupt_and_read(tmp_path / f"fz{suffix}", raw, [(p % header_len, v) for p, v in edits])
