"""Training never loses or mixes data: one writer per work folder, one run per work folder, pruning that
keeps the newest good checkpoint, and a model OUT replaced only with --overwrite and then as a whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from napari_medgen import cli
from napari_medgen.errors import TrainingError
from napari_medgen.progress import run_to_completion
from napari_medgen.training import checkpoint as ckpt
from napari_medgen.training import registry, workdir
from napari_medgen.training.loop import train

from .mlp_trainer import MLPTrainer, make_mlp_trainer


@pytest.fixture(autouse=True)
def mlp_family(monkeypatch):
    monkeypatch.setitem(registry._TRAINERS, "mlp-test", registry.TrainerSpec("mlp-test", make_mlp_trainer, "tiny MLP"))
    monkeypatch.setattr(cli, "_COMMAND_MODULES", ["train"])


def medgen(*argv: str) -> int:
    return cli.main(["--quiet", *argv])


def fresh() -> MLPTrainer:
    ckpt.seed_everything(0)
    return MLPTrainer(seed=0)


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_second_training_in_a_locked_work_folder_is_refused(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / workdir.LOCK).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename,
                                                         "started": "now"}))
        with pytest.raises(TrainingError, match=f"in use by another training \\(process {holder.pid}"):
            run_to_completion(train(fresh(), 5, tmp_path, checkpoint_every=5))
        assert not (tmp_path / "history.jsonl").exists() and ckpt.list_checkpoints(tmp_path) == []
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_with_a_note_and_released_after(tmp_path):
    (tmp_path / workdir.LOCK).write_text(json.dumps({"pid": dead_pid(), "host": os.uname().nodename}))
    result = run_to_completion(train(fresh(), 5, tmp_path, checkpoint_every=5))
    assert result.status == "done" and any("Took over the lock" in n for n in result.notes)
    assert not (tmp_path / workdir.LOCK).exists()


def test_the_lock_is_held_while_training_runs(tmp_path):
    task = train(fresh(), 5, tmp_path, checkpoint_every=5)
    next(task)
    assert json.loads((tmp_path / workdir.LOCK).read_text())["pid"] == os.getpid()
    with pytest.raises(TrainingError, match="in use"):
        run_to_completion(train(fresh(), 5, tmp_path))
    task.close()
    assert not (tmp_path / workdir.LOCK).exists()


def test_pruning_beside_a_damaged_newer_checkpoint_keeps_the_new_good_one(tmp_path):
    run_to_completion(train(fresh(), 20, tmp_path, checkpoint_every=10, keep=1))
    (tmp_path / "ckpt-30.pt").write_bytes(b"not a checkpoint")  # damaged, newer than anything good
    result = run_to_completion(train(fresh(), 25, tmp_path, checkpoint_every=10, keep=1))
    assert result.status == "done" and any("Skipped checkpoint" in n for n in result.notes)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [25]
    assert ckpt.load_checkpoint(tmp_path / "ckpt-25.pt")["step"] == 25
    assert (tmp_path / "ckpt-30.pt.damaged").read_bytes() == b"not a checkpoint"  # set aside, not deleted


def test_pruning_never_counts_files_of_later_steps(tmp_path):
    for step in (10, 20):
        ckpt.save_checkpoint(tmp_path, step, {"w": torch.zeros(1)}, 0.0, keep=1)
    (tmp_path / "ckpt-99.pt").write_bytes(b"x")
    ckpt.save_checkpoint(tmp_path, 30, {"w": torch.zeros(1)}, 0.0, keep=1)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [99, 30]


def cli_train(tmp_path, *extra: str, out: str = "m", steps: str = "10") -> int:
    return medgen("train", "mlp-test", "--steps", steps, "--checkpoint-every", "5", "--out", str(tmp_path / out),
                  "--workdir", str(tmp_path / "run"), *extra)


@pytest.mark.parametrize("first, second, named", [
    (["--sample", "phantom", "--lr", "0.01"], ["--sample", "phantom", "--lr", "0.02"], "lr 0.01 there, 0.02 now"),
    (["--sample", "phantom"], ["--sample", "brain"], '"sample": "phantom"'),
    (["--sample", "phantom", "--set", "hidden=16"], ["--sample", "phantom", "--set", "hidden=32"], "settings"),
    (["--sample", "phantom", "--seed", "1"], ["--sample", "phantom", "--seed", "2"], "seed 1 there, 2 now"),
])
def test_a_work_folder_refuses_to_resume_another_run_and_names_the_difference(tmp_path, capsys, first, second, named):
    assert cli_train(tmp_path, *first) == 0
    before = (tmp_path / "run" / "history.jsonl").read_text()
    capsys.readouterr()
    assert cli_train(tmp_path, *second, out="m2", steps="20") == 2
    err = capsys.readouterr().err
    assert "holds checkpoints of another run" in err and named in err and "Traceback" not in err
    assert (tmp_path / "run" / "history.jsonl").read_text() == before  # nothing of the other run was written
    assert not (tmp_path / "m2.json").exists()
    assert cli_train(tmp_path, *second, "--no-resume", out="m2", steps="20") == 0  # starting over is allowed


def test_a_resume_with_the_same_run_key_continues_and_records_its_lr(tmp_path):
    assert cli_train(tmp_path, "--sample", "phantom", "--lr", "0.02") == 0
    assert cli_train(tmp_path, "--sample", "phantom", "--lr", "0.02", "--overwrite", steps="20") == 0
    rec = json.loads((tmp_path / "m.json").read_text())["training"]
    state = ckpt.load_checkpoint(tmp_path / "run" / "ckpt-20.pt")["trainer"]
    assert rec["lr"] == 0.02 and state["opt"]["param_groups"][0]["lr"] == 0.02  # the recorded lr is the one used


def test_checkpoints_without_a_run_record_are_not_resumed(tmp_path, capsys):
    run_to_completion(train(fresh(), 5, tmp_path / "run", checkpoint_every=5))  # an older version's folder
    assert cli_train(tmp_path, "--sample", "phantom") == 2
    assert "no record of what they were trained on" in capsys.readouterr().err


def test_out_over_an_existing_model_needs_overwrite_and_is_then_replaced_whole(tmp_path, capsys):
    assert cli_train(tmp_path, "--sample", "phantom") == 0
    stale = tmp_path / "m.directions.json"
    stale.write_text("{}")  # a sidecar of the older model
    card = (tmp_path / "m.json").read_bytes()
    capsys.readouterr()
    assert cli_train(tmp_path, "--sample", "phantom", "--workdir", str(tmp_path / "run2")) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "m." in err and "Traceback" not in err
    assert (tmp_path / "m.json").read_bytes() == card and stale.exists()
    assert not (tmp_path / "run2").exists()  # refused before any training
    assert cli_train(tmp_path, "--sample", "phantom", "--workdir", str(tmp_path / "run2"), "--overwrite",
                     "--seed", "5") == 0
    assert json.loads((tmp_path / "m.json").read_text())["training"]["seed"] == 5
    assert not stale.exists()  # the older model's files do not mix with the new ones
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["m.json", "m.loss.png", "m.safetensors"]


def test_an_interrupted_export_leaves_no_hidden_files_after_the_next_run(tmp_path, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a Ctrl-C in the middle of writing the loss curve

    import napari_medgen.tasks.train as task_train

    monkeypatch.setattr(task_train, "save_loss_plot", killed)
    assert cli_train(tmp_path, "--sample", "phantom") == 130
    assert not (tmp_path / "m.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_leftovers_of_a_killed_export_are_removed_by_the_next_one(tmp_path):
    leftover = tmp_path / f".m.part-{dead_pid()}-abcd"
    leftover.mkdir()
    (leftover / "m.safetensors").write_bytes(b"half")
    assert cli_train(tmp_path, "--sample", "phantom") == 0
    assert not leftover.exists()
