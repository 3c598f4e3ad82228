"""Label-map detection (header intent, NRRD/MHA key, name hints, dtype, few values) and the override."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.io._labels import guess_is_label, name_hints_label, smallest_label_dtype, with_label_kind
from napari_medgen.io.readers import read_volume
from napari_medgen.io.volume import Volume
from napari_medgen.io.writers import write_volume

from .helpers import write_nifti, write_nrrd


@pytest.mark.parametrize("name, hinted", [
    ("brain_seg.nii.gz", True), ("liver_label.nrrd", True), ("case1_labels.mha", True), ("lung_mask.nii", True),
    ("seg.nii.gz", True), ("aseg.mgz.nii", True), ("labels.nrrd", True),
    ("t1.nii.gz", False), ("segment_me_t2.nii", False), ("ct.nrrd", False),
])
def test_name_hints(name, hinted):
    assert name_hints_label(name) is hinted


def test_guess_rules(rng):
    few = rng.integers(0, 5, (4, 5, 6))
    many = rng.integers(0, 1000, (4, 5, 6))
    assert guess_is_label(few.astype(np.uint8), hinted=False)
    assert not guess_is_label(many.astype(np.int16), hinted=False)  # e.g. a CT
    assert guess_is_label(many.astype(np.int16), hinted=True)
    assert not guess_is_label(few.astype(np.float32), hinted=False)  # float image, no hint
    assert guess_is_label(few.astype(np.float32), hinted=True)
    assert not guess_is_label(few.astype(np.float32) + 0.5, hinted=True)  # not whole numbers
    assert not guess_is_label(few.astype(np.int16) - 2, hinted=True)  # negative values


def test_smallest_dtype():
    assert smallest_label_dtype(0, 255) == np.uint8
    assert smallest_label_dtype(0, 256) == np.uint16
    assert smallest_label_dtype(-1, 5) == np.int16
    assert smallest_label_dtype(0, 70000) == np.int32


def test_reader_label_decisions(tmp_path, rng):
    aff = np.eye(4)
    few = rng.integers(0, 4, (4, 5, 6))
    many = rng.integers(0, 3000, (4, 5, 6)).astype(np.int16)
    assert read_volume(write_nifti(tmp_path / "a.nii.gz", few.astype(np.uint8), aff)).is_label
    assert not read_volume(write_nifti(tmp_path / "ct.nii.gz", many, aff)).is_label
    assert read_volume(write_nifti(tmp_path / "ct_seg.nii.gz", many, aff)).is_label
    hinted_float = read_volume(write_nifti(tmp_path / "f_mask.nii.gz", few.astype(np.float32), aff))
    assert hinted_float.is_label and hinted_float.data.dtype == np.uint8
    np.testing.assert_array_equal(hinted_float.data, few)
    assert not read_volume(write_nifti(tmp_path / "f.nii.gz", few.astype(np.float32), aff)).is_label
    assert read_volume(write_nifti(tmp_path / "intent.nii.gz", many, aff, intent_code=1002)).is_label
    assert not read_volume(write_nrrd(tmp_path / "ct.nrrd", many, aff)).is_label


def test_override_both_ways(tmp_path, rng):
    few = rng.integers(0, 4, (4, 5, 6)).astype(np.uint8)
    path = write_nifti(tmp_path / "x_seg.nii.gz", few, np.eye(4))
    assert not read_volume(path, as_label=False).is_label
    forced = read_volume(write_nifti(tmp_path / "img.nii.gz", few.astype(np.float32) * 1.5, np.eye(4)), as_label=True)
    assert forced.is_label and np.issubdtype(forced.data.dtype, np.integer)
    assert any("rounded" in n for n in forced.metadata["notes"])


def test_nrrd_mha_record_the_decision(tmp_path, rng):
    many = rng.integers(0, 3000, (4, 5, 6)).astype(np.uint16)
    few = rng.integers(0, 3, (4, 5, 6)).astype(np.uint8)
    for suffix in (".nrrd", ".mha"):
        assert read_volume(write_volume(Volume(many, is_label=True), tmp_path / f"many{suffix}")).is_label
        assert not read_volume(write_volume(Volume(few, is_label=False), tmp_path / f"few{suffix}")).is_label


def test_with_label_kind_keeps_geometry():
    vol = Volume(np.array([[[0.0, 1.0], [2.0, 3.0]]]), (1, 2, 3), (4, 5, 6), np.diag([-1.0, 1, -1]), metadata={"k": 1})
    lab = with_label_kind(vol, True)
    assert lab.is_label and lab.data.dtype == np.uint8 and lab.metadata["k"] == 1
    assert not lab.metadata.get("notes")
    np.testing.assert_array_equal(lab.affine(), vol.affine())
    back = with_label_kind(lab, False)
    assert not back.is_label and back.data.dtype == np.uint8


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32])
def test_rare_values_outside_the_subsample_count(dtype):
    data = np.zeros((30, 100, 100), dtype)  # 300k voxels: the quick subsample takes every 3rd
    data.flat[2:3 * 40:3] = np.arange(1, 41)  # 40 distinct values the subsample never sees
    assert guess_is_label(data, hinted=False) is False
    data.flat[2:3 * 40:3] = np.arange(1, 41) % 20
    assert guess_is_label(data, hinted=False) is True
