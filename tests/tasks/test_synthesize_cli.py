"""``medgen synthesize`` has the Synthesize dock's options: --slice (the dock's scope "current slice"),
and range-checked --seed and --batch (refused in one line while the command line is read)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.cli import main
from napari_medgen.io.readers import read_volume
from napari_medgen.io.writers import write_volume
from napari_medgen.models import spade
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.synthesize import synthesize

from .test_synthesize import label_volume, toy_model  # noqa: F401  (toy_model is a fixture)


@pytest.fixture
def labels_file(tmp_path):
    labels = label_volume(shape=(28, 30, 5), spacing=(6.0, 2.0, 2.0))  # x is the thick axis: slices cut along x
    write_volume(labels, tmp_path / "lab.nii.gz")
    return tmp_path / "lab.nii.gz"


def _command(toy_model, labels_file, out, *extra: str) -> list[str]:  # noqa: F811
    return ["--quiet", "synthesize", "--labels", str(labels_file), "--model", toy_model.path, "--style", "mean",
            *extra, "--out", str(out)]


def test_slice_synthesises_only_those_slices_as_the_dock_s_current_slice(toy_model, labels_file, tmp_path):  # noqa: F811
    assert main(_command(toy_model, labels_file, tmp_path / "part.nii.gz", "--slice", "1", "--slice", "3")) == 0
    part = read_volume(tmp_path / "part.nii.gz", as_label=False)
    labels = read_volume(labels_file)
    axis = run_to_completion(synthesize(labels, toy_model, style="mean", slices=[1])).metadata["synthesis"]["slice_axis"]
    slices = spade.cut(np.asarray(part.data), axis)
    assert axis != 0 and slices.shape[0] == 5  # counted along the cut axis, not the array's first axis
    assert np.ptp(slices[1]) > 0 and np.ptp(slices[3]) > 0 and not slices[[0, 2, 4]].any()
    whole = run_to_completion(synthesize(labels, toy_model, style="mean"))
    np.testing.assert_allclose(slices[[1, 3]], spade.cut(whole.data, axis)[[1, 3]], atol=1e-4)


def test_slice_outside_the_volume_is_refused_naming_the_range(toy_model, labels_file, tmp_path, capsys):  # noqa: F811
    assert main(_command(toy_model, labels_file, tmp_path / "x.nii.gz", "--slice", "5")) == 2
    assert "0..4" in capsys.readouterr().err and not (tmp_path / "x.nii.gz").exists()


@pytest.mark.parametrize("option, value", [("--slice", "-1"), ("--seed", "-1"), ("--seed", str(2**32)),
                                           ("--batch", "0"), ("--batch", "many")])
def test_out_of_range_values_are_refused_when_the_command_line_is_read(toy_model, labels_file, tmp_path, capsys,  # noqa: F811
                                                                       option, value):
    with pytest.raises(SystemExit) as refused:
        main(_command(toy_model, labels_file, tmp_path / "x.nii.gz", option, value))
    assert refused.value.code == 2 and option in capsys.readouterr().err
