"""train_in_child: training in a spawned child process, with the same results, progress, cancel and errors
as train_model in-process; a killed child gives a clear error and resume works; no child outlives a test."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from napari_medgen.errors import Cancelled, InputError, ReadError, TrainingError
from napari_medgen.models.store import load_state
from napari_medgen.progress import CancelToken, collect, run_to_completion
from napari_medgen.tasks.train import TrainJob, train_model
from napari_medgen.tasks.train_process import train_in_child
from napari_medgen.training import checkpoint as ckpt
from napari_medgen.training import registry
from napari_medgen.training.registry import TrainConfig

from ..training.mlp_trainer import make_mlp_trainer


@pytest.fixture(autouse=True)
def mlp_family(monkeypatch):
    """The tiny MLP family, registered in this process only (train_in_child sends its spec to the child)."""
    monkeypatch.setitem(registry._TRAINERS, "mlp-test", registry.TrainerSpec("mlp-test", make_mlp_trainer, "tiny MLP"))


@pytest.fixture(autouse=True)
def no_child_left():
    """After each test no training child may remain, running or as a zombie."""
    yield
    left = [c for c in psutil.Process().children(recursive=True)
            if c.status() == psutil.STATUS_ZOMBIE or "spawn_main" in " ".join(c.cmdline())]
    assert not left, left


def mlp_job(workdir: Path, steps: int, *, out: Path | None = None, resume: bool = False, **extra) -> TrainJob:
    config = TrainConfig(sample="phantom", seed=3, steps=steps, batch_size=16, lr=0.01, device="cpu", extra=extra)
    return TrainJob("mlp-test", config, workdir, out=out, checkpoint_every=10, preview_every=5, resume=resume)


def test_results_previews_and_metrics_equal_in_process_training(tmp_path):
    here, here_outcome = collect(train_model(mlp_job(tmp_path / "a", 25, out=tmp_path / "a_model")))
    child, child_outcome = collect(train_in_child(mlp_job(tmp_path / "b", 25, out=tmp_path / "b_model")))
    assert child[0].message.startswith("starting the training process")
    assert [p.metrics for p in child[1:]] == [p.metrics for p in here]  # same losses, bit for bit
    assert [r["loss"] for r in child_outcome.result.history] == [r["loss"] for r in here_outcome.result.history]
    assert len(child_outcome.result.history) == 25 and child_outcome.result.status == "done"
    previews = [(p.step, p.preview) for p in child if p.preview is not None]
    assert [step for step, _ in previews] == [5, 10, 15, 20, 25]
    expected = [p.preview for p in here if p.preview is not None]
    for (_, got), want in zip(previews, expected):
        assert got.data.shape == (1, 4, 8) and np.array_equal(got.data, want.data)
    assert child_outcome.model == tmp_path / "b_model" and child_outcome.loss_plot.is_file()
    weights_a, weights_b = load_state(tmp_path / "a_model")["net"], load_state(tmp_path / "b_model")["net"]
    assert set(weights_a) == set(weights_b) and len(weights_a) == 4
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_cancel_stops_within_a_step_and_saves_a_checkpoint(tmp_path):
    cancel = CancelToken()
    task = train_in_child(mlp_job(tmp_path / "run", 100_000, step_delay_s=0.05), cancel)
    asked_at = None
    while True:
        try:
            p = next(task)
        except StopIteration as stop:
            result = stop.value.result
            break
        if asked_at is None and p.step >= 5:
            asked_at = p.step
            cancel.cancel()
    assert result.status == "cancelled" and asked_at <= result.step <= asked_at + 3
    assert ckpt.list_checkpoints(tmp_path / "run")[0][0] == result.step
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == result.step


@pytest.mark.parametrize("kind", ["input", "read"])
def test_project_errors_reach_the_parent_as_such(tmp_path, kind):
    images = None if kind == "input" else tmp_path / "no_images"
    config = TrainConfig(images=images, labels=tmp_path / "no_labels", steps=5, device="cpu")
    with pytest.raises(InputError if kind == "input" else ReadError) as info:
        run_to_completion(train_in_child(TrainJob("mlp-test", config, tmp_path / "run")))
    if kind == "input":
        assert "Training needs data" in str(info.value)
    else:
        assert "no_images" in info.value.path and "no_images" in str(info.value) and info.value.reason
    assert any("Raised in the training process" in note for note in info.value.__notes__)


def test_other_errors_become_a_training_error_naming_them(tmp_path):
    with pytest.raises(TrainingError, match="failed in its process with TypeError"):
        run_to_completion(train_in_child(mlp_job(tmp_path / "run", 5, step_delay_s="slow")))


def test_killed_child_gives_a_clear_error_and_resume_continues(tmp_path):
    workdir = tmp_path / "run"
    task = train_in_child(mlp_job(workdir, 100_000, step_delay_s=0.02))
    for p in task:
        if p.step >= 12:
            break
    child = next(c for c in psutil.Process().children() if "spawn_main" in " ".join(c.cmdline()))
    assert child.nice() == min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + 10)  # CHILD_NICE below us
    os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(TrainingError) as info:
        for _ in task:
            pass
    message = str(info.value)
    assert "killed by SIGKILL" in message and str(workdir) in message and "Resume" in message
    saved = ckpt.list_checkpoints(workdir)[0][0]
    assert saved >= 10 and saved % 10 == 0
    _, outcome = collect(train_in_child(mlp_job(workdir, saved + 5, resume=True, step_delay_s=0.02)))
    assert outcome.result.status == "done" and outcome.result.step == saved + 5
    assert [r["step"] for r in outcome.result.history] == list(range(1, saved + 6))


def test_closing_the_generator_stops_the_child_after_a_checkpoint(tmp_path):
    task = train_in_child(mlp_job(tmp_path / "run", 100_000, step_delay_s=0.02))
    for p in task:
        if p.step >= 3:
            break
    task.close()
    assert ckpt.list_checkpoints(tmp_path / "run")[0][0] >= 3


def test_a_factory_that_cannot_be_sent_is_an_input_error(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._TRAINERS, "mlp-test",
                        registry.TrainerSpec("mlp-test", lambda config: make_mlp_trainer(config), "closure"))
    with pytest.raises(InputError, match="cannot be sent to a training process"):
        next(train_in_child(mlp_job(tmp_path / "run", 5)))


def cancelled_while_building(config: TrainConfig):
    """A family whose data loading was cancelled (module level, so the child can import it)."""
    raise Cancelled("cancelled while loading data")


def test_cancelled_raised_in_the_child_stays_cancelled(tmp_path, monkeypatch):
    spec = registry.TrainerSpec("mlp-test", cancelled_while_building, "cancelled")
    monkeypatch.setitem(registry._TRAINERS, "mlp-test", spec)
    with pytest.raises(Cancelled, match="while loading data"):
        run_to_completion(train_in_child(mlp_job(tmp_path / "run", 5)))
