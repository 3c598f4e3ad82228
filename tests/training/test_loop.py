"""The generic training loop on a tiny MLP: checkpoints, resume, cancel, NaN stop, damaged files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_medgen.errors import InputError, TrainingError
from napari_medgen.progress import CancelToken, run_to_completion
from napari_medgen.training import checkpoint as ckpt
from napari_medgen.training.loop import train

from .mlp_trainer import MLPTrainer


def fresh(seed: int = 0, **kw) -> MLPTrainer:
    """A trainer built as registry.make_trainer builds it: global RNGs seeded first."""
    ckpt.seed_everything(seed)
    return MLPTrainer(seed=seed, **kw)


def run(trainer, steps, workdir, **kw):
    return run_to_completion(train(trainer, steps, workdir, **kw))


def assert_same_weights(a: MLPTrainer, b: MLPTrainer) -> None:
    for pa, pb in zip(a.weights(), b.weights(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 30-step run."""
    trainer = fresh()
    result = run(trainer, 30, tmp_path_factory.mktemp("ref"), checkpoint_every=10)
    return trainer, result


def test_checkpoints_every_n_keep_last_k_and_latest_pointer(tmp_path, reference):
    _, ref = reference
    result = run(fresh(), 25, tmp_path, checkpoint_every=4, keep=2)
    assert result.status == "done" and result.step == 25
    # saved at 4, 8, ..., 24 and at the final step; only the newest two are kept
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [25, 24]
    assert json.loads((tmp_path / "latest.json").read_text()) == {"step": 25, "file": "ckpt-25.pt"}
    assert result.checkpoint == tmp_path / "ckpt-25.pt"
    payload = torch.load(tmp_path / "ckpt-24.pt", weights_only=True)  # plain values and tensors only
    assert payload["step"] == 24 and set(payload["rng"]) == {"torch", "numpy", "python"}
    assert [r["step"] for r in result.history] == list(range(1, 26))
    assert [r["loss"] for r in result.history] == [r["loss"] for r in ref.history[:25]]
    assert result.history[-1]["loss"] < result.history[0]["loss"]  # it learns


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, reference):
    ref_trainer, ref = reference
    first = run(fresh(), 12, tmp_path, checkpoint_every=5)
    assert first.status == "done"
    torch.manual_seed(999)  # disturb the global RNGs: resume must restore them from the checkpoint
    np.random.seed(999)
    resumed = fresh(seed=7)  # other initial weights: they must be replaced by the checkpoint's
    result = run(resumed, 30, tmp_path, checkpoint_every=5)
    assert result.step == 30 and resumed.steps_run == list(range(12, 30))
    assert any("Resumed" in n and "step 12" in n for n in result.notes)
    assert_same_weights(resumed, ref_trainer)
    assert [r["step"] for r in result.history] == list(range(1, 31))
    np.testing.assert_allclose([r["loss"] for r in result.history], [r["loss"] for r in ref.history], atol=1e-6)


def test_cancel_saves_a_checkpoint_and_resumes(tmp_path, reference):
    ref_trainer, _ = reference
    token = CancelToken()
    task = train(fresh(), 30, tmp_path, checkpoint_every=10, cancel=token)
    for p in task:
        if p.step == 7:
            token.cancel()
    # the generator's return value is lost by a for loop: read the outcome from the folder
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [7]
    token2 = CancelToken()
    token2.cancel()
    result = run(fresh(seed=3), 30, tmp_path, cancel=token2)
    assert result.status == "cancelled" and result.step == 7 and "Cancelled at step 7" in result.message
    resumed = fresh(seed=5)
    result = run(resumed, 30, tmp_path, checkpoint_every=10)
    assert result.status == "done" and resumed.steps_run == list(range(7, 30))
    assert_same_weights(resumed, ref_trainer)


def test_nan_loss_stops_without_saving_and_keeps_the_last_good_checkpoint(tmp_path, reference):
    _, ref = reference
    result = run(fresh(nan_at=15), 30, tmp_path, checkpoint_every=10)
    assert result.status == "diverged"
    assert "diverged at step 16" in result.message and "loss" in result.message and "ckpt-10.pt" in result.message
    assert result.checkpoint == tmp_path / "ckpt-10.pt"
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [10]
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 10
    # a later resume continues from step 10 and the history has no repeated steps
    result = run(fresh(), 30, tmp_path, checkpoint_every=10)
    assert result.status == "done"
    assert [r["step"] for r in result.history] == list(range(1, 31))
    np.testing.assert_allclose([r["loss"] for r in result.history], [r["loss"] for r in ref.history], atol=1e-6)


def test_nan_before_any_checkpoint(tmp_path):
    result = run(fresh(nan_at=0), 30, tmp_path, checkpoint_every=10)
    assert result.status == "diverged" and result.checkpoint is None and "no checkpoint" in result.message
    assert ckpt.list_checkpoints(tmp_path) == []


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path, reference):
    ref_trainer, _ = reference
    run(fresh(), 20, tmp_path, checkpoint_every=10)
    newest = tmp_path / "ckpt-20.pt"
    newest.write_bytes(newest.read_bytes()[:200])  # cut short, as by a damaged disk
    resumed = fresh(seed=4)
    result = run(resumed, 30, tmp_path, checkpoint_every=10)
    assert any("Skipped checkpoint" in n and "ckpt-20.pt" in n for n in result.notes)
    assert resumed.steps_run == list(range(10, 30))
    assert_same_weights(resumed, ref_trainer)


def test_a_leftover_part_file_is_ignored_and_removed(tmp_path):
    run(fresh(), 10, tmp_path, checkpoint_every=5)
    leftover = tmp_path / ".ckpt-15.pt.x1y2.part.pt"
    leftover.write_bytes(b"half a checkpoint")
    resumed = fresh()
    result = run(resumed, 12, tmp_path, checkpoint_every=5)
    assert resumed.steps_run == [10, 11] and not leftover.exists()
    assert any("Removed unfinished" in n for n in result.notes)


def test_a_write_that_fails_leaves_no_checkpoint_and_keeps_the_pointer(tmp_path, monkeypatch):
    run(fresh(), 5, tmp_path, checkpoint_every=5)

    def broken_save(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        run(fresh(), 10, tmp_path, checkpoint_every=5)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(("ckpt-", ".ckpt"))] == ["ckpt-5.pt"]
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 5


def test_no_resume_starts_over(tmp_path, reference):
    _, ref = reference
    run(fresh(), 10, tmp_path, checkpoint_every=5)
    trainer = fresh()
    result = run(trainer, 10, tmp_path, checkpoint_every=5, resume=False)
    assert trainer.steps_run == list(range(10))
    assert [r["loss"] for r in result.history] == [r["loss"] for r in ref.history[:10]]


def test_previews_and_metrics_are_reported(tmp_path):
    reports = list(train(fresh(), 6, tmp_path, checkpoint_every=10, preview_every=3))
    assert [p.step for p in reports] == [0, 1, 2, 3, 4, 5, 6]
    assert [p.preview is not None for p in reports] == [False, False, False, True, False, False, True]
    assert reports[3].preview.data.shape == (1, 4, 8) and set(reports[1].metrics) == {"loss", "mse"}
    assert all(p.total == 6 for p in reports)


def test_a_checkpoint_of_another_model_gives_a_clear_error(tmp_path):
    run(fresh(), 5, tmp_path, checkpoint_every=5)
    other = fresh()
    other.net = torch.nn.Linear(3, 3)
    with pytest.raises(TrainingError, match="does not fit this model"):
        run(other, 10, tmp_path)


@pytest.mark.parametrize("kw", [{"steps": 0}, {"checkpoint_every": 0}, {"keep": 0}])
def test_bad_arguments(tmp_path, kw):
    args = {"steps": 5, "checkpoint_every": 5, "keep": 3} | kw
    with pytest.raises(InputError):
        run(fresh(), args.pop("steps"), tmp_path, **args)
