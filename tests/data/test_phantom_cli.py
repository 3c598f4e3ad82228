"""``medgen phantom`` writes image, labels and factors that read back with the right geometry."""

import json

import numpy as np
import pytest

from napari_medgen.cli import main
from napari_medgen.data.phantom import make_labels
from napari_medgen.io.readers import read_volume


def test_phantom_subject(tmp_path):
    assert main(["--quiet", "phantom", "--seed", "4", "--out", str(tmp_path), "--shape", "16", "32", "32",
                 "--tumour-radius", "15", "--style", "ct"]) == 0
    labels = read_volume(tmp_path / "phantom_s4_seg.nii.gz")
    expected = make_labels(4, shape=(16, 32, 32), tumour_radius_mm=15.0)
    assert labels.is_label
    np.testing.assert_array_equal(labels.data, expected.data)
    np.testing.assert_allclose(labels.origin, expected.origin, atol=1e-4)
    image = read_volume(tmp_path / "phantom_s4.nii.gz")
    assert image.data.min() < -900  # CT air in HU
    record = json.loads((tmp_path / "phantom_s4_factors.json").read_text())
    assert record["anatomy"]["tumour_radius_mm"] == 15.0


def test_phantom_series_and_bad_factor(tmp_path, capsys):
    assert main(["--quiet", "phantom", "--out", str(tmp_path), "--series", "regression", "--n", "3",
                 "--shape", "8", "24", "24"]) == 0
    assert read_volume(tmp_path / "phantom_s0_regression_seg.nii.gz").data.shape == (3, 8, 24, 24)
    assert main(["--quiet", "phantom", "--out", str(tmp_path), "--series", "cardiac", "--n", "2", "--shape", "1", "32", "32"]) == 0
    record = json.loads((tmp_path / "phantom_s0_cardiac_factors.json").read_text())
    assert record["series"] == {"factor": "cardiac_phase", "values": [0.0, 1.0]}
    assert record["measured"]["lv_volume_ml"][1] < record["measured"]["lv_volume_ml"][0]
    with pytest.raises(SystemExit) as refused:  # refused when the command line is read, before any work
        main(["phantom", "--out", str(tmp_path / "new"), "--breathing-phase", "2"])
    assert refused.value.code == 2 and "--breathing-phase: must be between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
