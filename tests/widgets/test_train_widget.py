"""The "Train" dock under Xvfb with a tiny MLP family (trained in a child process): train + export, live plot and
preview, cancel/resume, errors."""

from __future__ import annotations

import json

import pytest

from napari_medgen.errors import ReadError
from napari_medgen.training import checkpoint as ckpt
from napari_medgen.training import registry
from napari_medgen.widgets.train import PREVIEW_LAYER, TrainWidget

from ..training.mlp_trainer import make_mlp_trainer

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    monkeypatch.setitem(registry._TRAINERS, "mlp-test", registry.TrainerSpec("mlp-test", make_mlp_trainer, "tiny MLP"))
    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    qtbot.addWidget(w)
    w.family.setCurrentText("mlp-test")
    w.source.setCurrentText("Sample: thorax phantom")
    w.workdir.setText(str(tmp_path / "run"))
    w.out.setText(str(tmp_path / "m"))
    w.lr.setValue(0.01)
    return w


def wait_done(qtbot, w):
    qtbot.waitUntil(lambda: w.handle.status is not None, timeout=180_000)


def test_training_exports_and_shows_loss_and_preview(widget, qtbot, tmp_path):
    widget.steps.setValue(30)
    widget.checkpoint_every.setValue(10)
    widget.preview_every.setValue(10)
    assert not widget.images.isEnabled()
    widget.start_button.click()
    assert not widget.start_button.isEnabled()
    wait_done(qtbot, widget)
    assert widget.handle.status == "done" and widget.start_button.isEnabled()
    assert widget.outcome.result.status == "done" and widget.outcome.model == tmp_path / "m"
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["training"]["steps"] == 30 and card["training"]["command"].startswith("napari Train dock: mlp-test")
    assert (tmp_path / "m.loss.png").is_file()
    layer = widget.viewer.layers[PREVIEW_LAYER]
    assert layer.data.shape == (1, 4, 8)
    assert [len(line.get_xdata()) for line in widget.axes.get_lines()] == [30, 30]
    assert "m" in widget.result_line.text() and "done" in widget.panel.status.text()


def test_cancel_saves_and_resume_continues_the_history(widget, qtbot, tmp_path, monkeypatch):
    job = widget.job

    def slow_job(resume):  # the MLP sleeps 0.01 s per step (training runs in a child process: no closures)
        train_job = job(resume)
        train_job.config.extra["step_delay_s"] = 0.01
        return train_job

    monkeypatch.setattr(widget, "job", slow_job)
    widget.steps.setValue(1_000_000)
    widget.checkpoint_every.setValue(1_000_000)
    handle = widget.start(resume=False)
    qtbot.waitUntil(lambda: handle.last is not None and handle.last.step >= 5, timeout=180_000)
    widget.cancel()
    wait_done(qtbot, widget)
    result = widget.outcome.result
    assert handle.status == "cancelled" and result.status == "cancelled"
    assert ckpt.list_checkpoints(tmp_path / "run")[0][0] == result.step >= 5
    assert not (tmp_path / "m.json").exists()
    widget.steps.setValue(result.step + 10)
    widget.resume_button.click()
    wait_done(qtbot, widget)
    assert widget.outcome.result.status == "done"
    assert [r["step"] for r in widget.records] == list(range(1, result.step + 11))
    assert json.loads((tmp_path / "m.json").read_text())["training"]["steps"] == result.step + 10


def test_missing_folders_end_in_an_error_not_a_crash(widget, qtbot, tmp_path):
    widget.source.setCurrentText("Image + label folders")
    assert widget.images.isEnabled()
    widget.images.setText(str(tmp_path / "nope"))
    widget.labels.setText(str(tmp_path / "nope2"))
    widget.start_button.click()
    wait_done(qtbot, widget)
    assert widget.handle.status == "error" and isinstance(widget.handle.error, ReadError)
    assert "nope" in str(widget.handle.error) and widget.start_button.isEnabled()


def test_an_existing_model_is_replaced_only_when_the_box_is_ticked(widget, qtbot, tmp_path):
    card = tmp_path / "m.json"
    card.write_text("{}")
    widget.steps.setValue(5)
    widget.start_button.click()
    wait_done(qtbot, widget)
    assert widget.handle.status == "error" and "exists" in str(widget.handle.error)
    assert card.read_text() == "{}"
    widget.overwrite.setChecked(True)
    widget.workdir.setText(str(tmp_path / "run2"))
    widget.start_button.click()
    wait_done(qtbot, widget)
    assert widget.handle.status == "done"
    assert json.loads(card.read_text())["training"]["steps"] == 5
