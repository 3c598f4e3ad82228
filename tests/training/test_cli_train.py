"""``medgen train`` with a tiny registered test family: export, card record, loss PNG, resume, errors."""

from __future__ import annotations

import json
import shlex

import matplotlib.image
import numpy as np
import pytest

from napari_medgen import cli
from napari_medgen.io.volume import Volume
from napari_medgen.io.writers import write_volume
from napari_medgen.models.store import load_state
from napari_medgen.training import registry
from napari_medgen.tasks.train import device_name, hardware

from .mlp_trainer import make_mlp_trainer


@pytest.fixture(autouse=True)
def mlp_family(monkeypatch):
    """Register the test family, and keep other command modules out of these tests."""
    monkeypatch.setitem(registry._TRAINERS, "mlp-test", registry.TrainerSpec("mlp-test", make_mlp_trainer, "tiny MLP"))
    monkeypatch.setattr(cli, "_COMMAND_MODULES", ["train"])


def medgen(*argv: str) -> int:
    return cli.main(["--quiet", *argv])


def test_card_records_the_commit_the_run_started_with(tmp_path, monkeypatch):
    """The checkout may move on while a long run trains: the card names the code it started with."""
    import napari_medgen.tasks.train as train_task

    history = tmp_path / "run" / "history.jsonl"  # written once training has begun: "the checkout moved"
    monkeypatch.setattr(train_task, "git_commit", lambda: "b" * 40 if history.exists() else "a" * 40)
    assert medgen("train", "mlp-test", "--sample", "phantom", "--steps", "3", "--out", str(tmp_path / "m"),
                  "--workdir", str(tmp_path / "run"), "--set", "hidden=8") == 0
    assert json.loads((tmp_path / "m.json").read_text())["training"]["commit"] == "a" * 40


def test_list_shows_registered_families(capsys):
    assert medgen("train", "--list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[0] == "mlp-test" and "tiny MLP" in line for line in lines)


def test_train_exports_model_card_and_loss_curve(tmp_path, capsys):
    argv = ["train", "mlp-test", "--sample", "phantom", "--steps", "40", "--out", str(tmp_path / "m"),
            "--workdir", str(tmp_path / "run"), "--seed", "3", "--lr", "0.01", "--checkpoint-every", "15",
            "--set", "hidden=16"]
    assert medgen(*argv) == 0
    card = json.loads((tmp_path / "m.json").read_text())
    rec = card["training"]
    assert rec["command"] == "medgen " + shlex.join(["--quiet", *argv])
    assert rec["seed"] == 3 and rec["steps"] == 40 and rec["settings"] == {"hidden": 16}
    assert rec["data"] == "shipped sample 'phantom'" and rec["wall_time_s"] > 0
    assert rec["device"] == device_name("auto") and rec["device"].split()[0] in {"cpu", "cuda", "mps"}
    assert rec["hardware"] == hardware() and rec["hardware"].endswith(" torch threads")
    assert len(rec["commit"]) == 40 or rec["commit"] == "unknown"
    assert rec["torch"] and rec["monai"] and rec["date"].startswith("20")
    assert card["family"] == "mlp-test" and card["loss_curve"] == "m.loss.png"
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert rec["final_losses"]["loss"] == history[-1]["loss"] and len(history) == 40
    assert set(load_state(tmp_path / "m")) == {"net"}
    png = matplotlib.image.imread(tmp_path / "m.loss.png")
    assert png.shape[:2] == (400, 600) and png[..., :3].std() > 0.01
    assert "m.safetensors" in capsys.readouterr().out


def test_train_on_image_and_label_folders(tmp_path, rng):
    for folder, name, arr in (("img", "a.nii.gz", rng.normal(size=(3, 8, 8)).astype(np.float32)),
                              ("lab", "a_seg.nii.gz", (rng.uniform(size=(3, 8, 8)) > 0.5).astype(np.uint8))):
        write_volume(Volume(arr, is_label=arr.dtype == np.uint8), tmp_path / folder / name)
    assert medgen("train", "mlp-test", "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                  "--steps", "3", "--out", str(tmp_path / "m"), "--workdir", str(tmp_path / "run")) == 0
    data = json.loads((tmp_path / "m.json").read_text())["training"]["data"]
    assert str(tmp_path / "img") in data and str(tmp_path / "lab") in data
    (tmp_path / "lab" / "a_seg.nii.gz").rename(tmp_path / "lab" / "b_seg.nii.gz")
    assert medgen("train", "mlp-test", "--images", str(tmp_path / "img"), "--labels", str(tmp_path / "lab"),
                  "--steps", "3", "--out", str(tmp_path / "m2"), "--workdir", str(tmp_path / "run2")) == 2


def test_running_again_with_more_steps_resumes(tmp_path, capsys):
    common = ["--sample", "phantom", "--out", str(tmp_path / "m"), "--workdir", str(tmp_path / "run")]
    assert medgen("train", "mlp-test", "--steps", "20", "--checkpoint-every", "10", *common) == 0
    assert medgen("train", "mlp-test", "--steps", "30", "--checkpoint-every", "10", *common) == 2  # m exists
    assert "--overwrite" in capsys.readouterr().err
    assert medgen("train", "mlp-test", "--steps", "30", "--checkpoint-every", "10", "--overwrite", *common) == 0
    assert "Resumed from" in capsys.readouterr().err
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 31))
    assert json.loads((tmp_path / "m.json").read_text())["training"]["steps"] == 30


def test_divergence_is_a_clear_error_and_nothing_is_exported(tmp_path, capsys):
    rc = medgen("train", "mlp-test", "--sample", "phantom", "--steps", "30", "--out", str(tmp_path / "m"),
                "--workdir", str(tmp_path / "run"), "--checkpoint-every", "10", "--set", "nan_at=12")
    err = capsys.readouterr().err
    assert rc == 2 and "diverged at step 13" in err and "ckpt-10.pt" in err
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "nosuch", "--sample", "phantom", "--out", "x"], "Unknown model family 'nosuch'"),
    (["train", "mlp-test", "--out", "x"], "Training needs data"),
    (["train", "mlp-test", "--sample", "brain", "--images", "a", "--out", "x"], "not both"),
    (["train", "mlp-test", "--sample", "brain"], "--out"),
    (["train", "mlp-test", "--sample", "brain", "--out", "x", "--set", "novalue"], "key=value"),
])
def test_bad_commands_give_one_plain_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert medgen(*argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_parse_settings_reads_json_values():
    assert registry.parse_settings(["a=1", "b=0.5", "c=[1, 2]", "d=true", "e=text", "f="]) == {
        "a": 1, "b": 0.5, "c": [1, 2], "d": True, "e": "text", "f": ""}
