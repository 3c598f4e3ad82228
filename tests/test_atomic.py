"""atomic.py: a result replaced as a whole or not at all, plain words for a full or read-only disk,
and no temporaries left behind by a killed process."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys

import pytest

from napari_medgen.atomic import (MARKER, atomic_write_bytes, atomic_write_with, remove_stale_temporaries,
                                  replaced_files, replaced_folder, write_failure)
from napari_medgen.errors import WriteError


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_a_result_folder_is_replaced_as_a_whole(tmp_path):
    out = tmp_path / "samples"
    with replaced_folder(out, overwrite=False, note="first") as tmp:
        for i in range(4):
            (tmp / f"sample_{i}.txt").write_text("old")
    with pytest.raises(WriteError, match="--overwrite"):
        with replaced_folder(out, overwrite=False) as tmp:
            pass
    with replaced_folder(out, overwrite=True, note="second") as tmp:
        (tmp / "sample_0.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "sample_0.txt"]  # no sample_1..3 of the older run
    assert (out / "sample_0.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["samples"]


def test_a_failed_write_leaves_the_earlier_result_untouched(tmp_path):
    out = tmp_path / "r"
    with replaced_folder(out, overwrite=False) as tmp:
        (tmp / "a.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        with replaced_folder(out, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("killed")
    assert (out / "a.txt").read_text() == "kept" and [p.name for p in tmp_path.iterdir()] == ["r"]


def test_overwrite_never_deletes_a_folder_medgen_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(WriteError, match="not a result medgen wrote"):
        with replaced_folder(tmp_path, overwrite=True):
            pass
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_replaced_files_swap_the_whole_set(tmp_path):
    targets = [tmp_path / "m.safetensors", tmp_path / "m.directions.json", tmp_path / "m.json"]
    for t in targets:
        t.write_text("old")
    with replaced_files(targets, overwrite=True) as tmp:
        (tmp / "m.safetensors").write_text("new")
        (tmp / "m.json").write_text("new")
    assert not targets[1].exists()  # a sidecar of the older result does not survive
    assert targets[0].read_text() == targets[2].read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_temporaries_of_a_killed_process_are_removed_and_a_moved_result_restored(tmp_path):
    pid = dead_pid()
    (tmp_path / f".x.nii.gz.part-{pid}-abc.nii.gz").write_bytes(b"half")
    staged = tmp_path / f".out.part-{pid}-def"
    staged.mkdir()
    old = tmp_path / f".out.old-{pid}-ghi"
    (old / "result").mkdir(parents=True)
    (old / "result" / "a.txt").write_text("earlier")  # killed between moving the result aside and the swap
    alive = tmp_path / ".y.part-1-zzz"  # pid 1 runs: not a leftover
    alive.write_bytes(b"busy")
    atomic_write_bytes(tmp_path / "other.txt", b"ok")  # any write into the folder cleans it
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "other.txt", "out"]
    assert (tmp_path / "out" / "a.txt").read_text() == "earlier"
    assert remove_stale_temporaries(tmp_path) == []


@pytest.mark.parametrize("error, words", [
    (OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only"),
    (OSError(errno.EACCES, "Permission denied"), "no permission"),
])
def test_disk_failures_in_plain_words(tmp_path, error, words):
    def write(path):
        path.write_bytes(b"part")
        raise error

    with pytest.raises(WriteError, match=words) as info:
        atomic_write_with(tmp_path / "v.nii.gz", write)
    assert str(tmp_path) in str(info.value) and list(tmp_path.iterdir()) == []


def test_torchs_unexpected_pos_on_a_full_disk_says_disk_full(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    assert "disk is full" in write_failure(RuntimeError("unexpected pos 401984 vs 401872"), tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 0, 10**9))
    assert write_failure(RuntimeError("unexpected pos 401984 vs 401872"), tmp_path) is None  # another cause
