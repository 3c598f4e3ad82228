"""Training pairs from folders (matching, errors) and 2D slices along the through-plane axis."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.data.datasets import axial_slices, case_key, load_pairs, slices2d, through_plane_axis
from napari_medgen.errors import InputError, ReadError
from napari_medgen.io.volume import Volume
from napari_medgen.io.writers import write_volume


def pair(rng, shape=(4, 10, 6), spacing=(1.0, 1.0, 2.0)):
    img = Volume(rng.uniform(10, 20, shape).astype(np.float32), spacing=spacing)
    lab = Volume((rng.uniform(size=shape) > 0.5).astype(np.uint8), spacing=spacing, is_label=True)
    return img, lab


@pytest.mark.parametrize("name, key", [
    ("case01.nii.gz", "case01"), ("Case01_seg.nii.gz", "case01"), ("case01_label.nrrd", "case01"),
    ("a_img.mha", "a"), ("x.y.nii", "x.y"), ("_seg.nii", "_seg"),
])
def test_case_key(name, key):
    assert case_key(name) == key


def test_pairs_match_by_case_name_across_formats(tmp_path, rng):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    written = {}
    for name in ("b", "a"):
        img, lab = pair(rng)
        write_volume(img, tmp_path / "img" / f"{name}.nii.gz")
        write_volume(lab, tmp_path / "lab" / f"{name}_seg.nrrd")
        written[name] = (img, lab)
    (tmp_path / "lab" / "notes.txt").write_text("ignored")
    pairs = load_pairs(tmp_path / "img", tmp_path / "lab")
    assert len(pairs) == 2
    for (img, lab), name in zip(pairs, ("a", "b"), strict=True):
        np.testing.assert_allclose(img.data, written[name][0].data)
        np.testing.assert_array_equal(lab.data, written[name][1].data)
        assert lab.is_label and not img.is_label


def test_unmatched_files_are_named(tmp_path, rng):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    img, lab = pair(rng)
    write_volume(img, tmp_path / "img" / "a.nii.gz")
    write_volume(img, tmp_path / "img" / "b.nii.gz")
    write_volume(lab, tmp_path / "lab" / "a_seg.nii.gz")
    write_volume(lab, tmp_path / "lab" / "c_seg.nii.gz")
    with pytest.raises(InputError) as err:
        load_pairs(tmp_path / "img", tmp_path / "lab")
    assert "b.nii.gz" in str(err.value) and "c_seg.nii.gz" in str(err.value) and "a.nii.gz" not in str(err.value)


def test_shape_mismatch_names_both_files(tmp_path, rng):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    write_volume(pair(rng)[0], tmp_path / "img" / "a.nii.gz")
    write_volume(pair(rng, shape=(4, 10, 7))[1], tmp_path / "lab" / "a_mask.nii.gz")
    with pytest.raises(InputError, match=r"a\.nii\.gz.*\(4, 10, 6\).*a_mask\.nii\.gz.*\(4, 10, 7\)"):
        load_pairs(tmp_path / "img", tmp_path / "lab")


def test_empty_missing_and_duplicate_folders(tmp_path, rng):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReadError, match="empty.*no volume files"):
        load_pairs(tmp_path / "empty", tmp_path / "empty")
    with pytest.raises(ReadError, match="does not exist"):
        load_pairs(tmp_path / "nope", tmp_path / "empty")
    (tmp_path / "dup").mkdir()
    write_volume(pair(rng)[0], tmp_path / "dup" / "a.nii.gz")
    write_volume(pair(rng)[0], tmp_path / "dup" / "a_img.nrrd")
    with pytest.raises(InputError, match="two volumes for case 'a'"):
        load_pairs(tmp_path / "dup", tmp_path / "dup")


def test_through_plane_axis_follows_spacing_then_direction():
    data = np.zeros((5, 6, 7))
    assert through_plane_axis(Volume(data, spacing=(1, 1, 5))) == 0
    assert through_plane_axis(Volume(data, spacing=(1, 4, 1))) == 1
    assert through_plane_axis(Volume(data, spacing=(3, 1, 1))) == 2
    # isotropic, index axis i points head-foot (a sagittally stored volume): slice along array axis 2
    sagittal = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    assert through_plane_axis(Volume(data, direction=sagittal)) == 2
    assert through_plane_axis(Volume(data)) == 0


def test_slices_are_centre_cropped_and_padded(rng):
    img, lab = pair(rng, shape=(4, 10, 6))
    out_img, out_lab = axial_slices(img, lab, size=(8, 8))
    assert out_img.shape == out_lab.shape == (4, 8, 8) and out_img.dtype == np.float32 and out_lab.dtype == np.uint8
    np.testing.assert_allclose(out_img[:, :, 1:7], img.data[:, 1:9, :], rtol=1e-6)
    np.testing.assert_array_equal(out_lab[:, :, 1:7], lab.data[:, 1:9, :])
    assert np.all(out_img[:, :, [0, 7]] == pytest.approx(img.data.min())) and np.all(out_lab[:, :, [0, 7]] == 0)
    side_img, _ = axial_slices(img, lab, size=(4, 6), axis=1)
    assert side_img.shape == (10, 4, 6)
    np.testing.assert_allclose(side_img[3], img.data[:, 3, :], rtol=1e-6)


def test_slices2d_keeps_slices_with_enough_foreground(rng):
    img, lab = pair(rng, shape=(4, 8, 8))
    lab.data[:2] = 0
    images, labels = slices2d([(img, lab), pair(rng, shape=(4, 8, 8))], size=(8, 8), min_foreground=0.1)
    assert images.shape == labels.shape == (6, 8, 8)
    with pytest.raises(InputError):
        slices2d([(img, lab.with_data(np.zeros_like(lab.data)))], size=(8, 8), min_foreground=0.1)
