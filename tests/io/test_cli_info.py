"""``medgen info`` and ``medgen convert``: what they print, what they write, plain errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.cli import main
from napari_medgen.io.readers import read_volume
from napari_medgen.io.volume import Volume
from napari_medgen.io.writers import write_volume

from .helpers import CASES


@pytest.fixture
def labels_file(tmp_path):
    direction, spacing = CASES["flipped"]
    data = np.zeros((4, 5, 6), np.int16)
    data[1:3, 1:4, 2:5] = 7
    return write_volume(Volume(data, spacing, (1.5, -2.0, 3.25), direction, is_label=True), tmp_path / "organ_seg.nii.gz")


def test_info_prints_geometry_and_kind(labels_file, capsys):
    assert main(["info", str(labels_file)]) == 0
    out = capsys.readouterr().out
    assert "shape:     (4, 5, 6) (z, y, x)" in out
    assert "dtype:     int16" in out
    assert "spacing:   (0.8, 1.1, 2.5) mm" in out
    assert "origin:    (1.5, -2, 3.25) mm LPS" in out
    assert "direction: (-1, 0, 0); (0, 1, 0); (0, 0, -1) (axis-aligned)" in out
    assert "kind:      label map" in out
    assert "0: 102, 7: 18" in out
    assert "range:     0 .. 7" in out


def test_info_as_image_override(labels_file, capsys):
    assert main(["info", "--as-image", str(labels_file)]) == 0
    assert "kind:      image (as asked)" in capsys.readouterr().out


def test_convert_keeps_geometry_and_dtype(labels_file, tmp_path, capsys):
    out = tmp_path / "organ.mha"
    assert main(["convert", str(labels_file), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    a, b = read_volume(labels_file), read_volume(out)
    np.testing.assert_array_equal(a.data, b.data)
    assert b.data.dtype == np.int16 and b.is_label
    np.testing.assert_allclose(a.affine(), b.affine(), atol=1e-6)


def test_convert_as_label_rounds_with_note(tmp_path, capsys):
    src = write_volume(Volume(np.full((2, 3, 4), 2.6, np.float32)), tmp_path / "smooth.nrrd")
    assert main(["convert", "--as-label", str(src), str(tmp_path / "lab.nii.gz")]) == 0
    assert "rounded" in capsys.readouterr().out
    back = read_volume(tmp_path / "lab.nii.gz")
    assert back.is_label and back.data.dtype == np.uint8 and (back.data == 3).all()


def test_errors_are_one_plain_line(tmp_path, capsys):
    (tmp_path / "empty.nii").write_bytes(b"")
    assert main(["info", str(tmp_path / "empty.nii")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medgen: error: Cannot read") and "empty.nii" in err and len(err.splitlines()) == 1
    src = write_volume(Volume(np.zeros((2, 2, 2), np.float32)), tmp_path / "ok.nii")
    assert main(["convert", str(src), str(tmp_path / "out.png")]) == 2
    assert "unsupported" in capsys.readouterr().err


def test_info_on_a_dicom_series(tmp_path, capsys):
    from .helpers import lps_affine, write_dicom_series

    folder = write_dicom_series(tmp_path / "series", np.arange(60, dtype=np.int16).reshape(3, 4, 5),
                                lps_affine(np.eye(3), (0.5, 0.5, 2.0)), series_uid="1.2.3.9")
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "(DICOM series)" in out and "spacing:   (0.5, 0.5, 2) mm" in out
    assert "dicom:     modality MR, n files 3, series uid 1.2.3.9" in out
