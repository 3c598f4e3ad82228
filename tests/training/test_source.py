"""TrainingSource: which data a family trains on, refused clearly otherwise; volumes, label names; the
card records the device the trainer ran on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_medgen.data.phantom import make_phantom
from napari_medgen.errors import InputError
from napari_medgen.io.writers import write_volume
from napari_medgen.tasks import train as train_task
from napari_medgen.tasks.train import TrainJob, train_model
from napari_medgen.training import registry
from napari_medgen.training.config import TrainConfig
from napari_medgen.training.source import Sources, TrainingSource

from .mlp_trainer import make_mlp_trainer


@pytest.fixture
def folders(tmp_path):
    """Two small phantom cases: images/caseK.nii.gz and labels/caseK_seg.nii.gz (labels 0..6 present)."""
    for d in ("images", "labels"):
        (tmp_path / d).mkdir()
    for seed in range(2):
        img, lab = make_phantom(seed=seed, shape=(4, 32, 32))
        write_volume(img, tmp_path / "images" / f"case{seed}.nii.gz")
        write_volume(lab, tmp_path / "labels" / f"case{seed}_seg.nii.gz")
    return tmp_path


def config(tmp=None, sample=None, images=True, labels=True, **kw) -> TrainConfig:
    return TrainConfig(sample=sample, images=tmp / "images" if tmp and images else None,
                       labels=tmp / "labels" if tmp and labels else None, device="cpu", **kw)


@pytest.mark.parametrize("sources, given, words", [
    (Sources(samples=("phantom",), folders="images"), {"sample": "brain"},
     ["does not train on the brain sample", "--sample phantom or --images DIR"]),
    (Sources(folders=None), {"images": True, "labels": True}, ["does not train on folders", "--sample brain|phantom."]),
    (Sources(), {"images": True, "labels": False}, ["Training needs data", "--images DIR --labels DIR"]),
    (Sources(folders="labels"), {"images": True, "labels": False}, ["Training needs data", "--labels DIR"]),
    (Sources(), {"images": False, "labels": False}, ["Training needs data"]),
    (Sources(), {"sample": "knee"}, ["Unknown sample 'knee'", "brain or phantom"]),
])
def test_a_source_the_family_does_not_take_is_refused_naming_what_it_takes(tmp_path, sources, given, words):
    given = {"images": False, "labels": False, **given}
    with pytest.raises(InputError) as info:
        TrainingSource.of(config(tmp_path, **given), "toy", sources)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_a_source_keeps_only_the_folders_its_family_reads(tmp_path):
    both = config(tmp_path)
    assert TrainingSource.of(both, "x", Sources(folders="images")) == TrainingSource("folders", tmp_path / "images")
    only_labels = TrainingSource("folders", None, tmp_path / "labels")
    assert TrainingSource.of(both, "x", Sources(folders="labels")) == only_labels
    assert TrainingSource.of(config(tmp_path, labels=False), "x", Sources(folders="images[+labels]")).labels is None
    assert TrainingSource.of(config(sample="phantom"), "x", Sources()) == TrainingSource("phantom")
    assert TrainingSource.of(both).describe() == f"images {tmp_path / 'images'}, labels {tmp_path / 'labels'}"
    assert TrainingSource("brain").describe() == "shipped sample 'brain'"


def test_folder_volumes_are_matched_pairs_or_one_side(folders):
    pairs = TrainingSource("folders", folders / "images", folders / "labels").volumes()
    assert len(pairs) == 2 and all(i.data.shape == lab.data.shape == (4, 32, 32) for i, lab in pairs)
    images = TrainingSource("folders", folders / "images").volumes()
    assert [lab for _, lab in images] == [None, None]
    assert all(np.array_equal(a.data, b.data) for (a, _), (b, _) in zip(images, pairs))
    labels = TrainingSource("folders", None, folders / "labels").volumes()
    assert [img for img, _ in labels] == [None, None] and labels[0][1].data.dtype == pairs[0][1].data.dtype
    with pytest.raises(ValueError):
        TrainingSource("folders", folders / "images").pairs()


def test_label_names_are_the_data_own(folders):
    from napari_medgen.data.brain import TISSUE_LABELS
    from napari_medgen.data.phantom import LABELS

    assert TrainingSource("phantom").label_names() == dict(LABELS)
    [(_, brain_labels)] = TrainingSource("brain").volumes()
    assert TrainingSource("brain").label_names() == dict(TISSUE_LABELS) == brain_labels.metadata["label_names"]
    [(_, lab)] = TrainingSource("folders", None, folders / "labels").volumes()[:1]
    lab.metadata.pop("label_names", None)
    lab.data[0, 0, 0] = 9
    assert TrainingSource("folders").label_names([lab]) == {k: f"label {k}" for k in range(10)}
    lab.metadata["label_names"] = {"1": "body"}
    assert TrainingSource("folders").label_names([lab])[1] == "body"


@pytest.mark.parametrize("family, given", [("temporal", {"sample": "brain"}), ("feature_encoder", {}),
                                           ("anomaly_ae", {"images": False}), ("label_vae", {"labels": False}),
                                           ("vae", {"labels": False})])
def test_make_trainer_refuses_data_the_family_does_not_train_on(tmp_path, family, given):
    with pytest.raises(InputError, match=f"the {family} family|The {family} family"):
        registry.make_trainer(family, config(tmp_path, **given))


def test_the_card_records_the_device_the_trainer_ran_on(tmp_path, monkeypatch):
    """The job says "auto"; the trainer reports the device it was built on, and the card names that one."""
    def make(cfg):
        trainer = make_mlp_trainer(cfg)
        trainer.device = torch.device(cfg.device)  # what make_trainer resolved "auto" to
        return trainer

    monkeypatch.setitem(registry._TRAINERS, "mlp-test", registry.TrainerSpec("mlp-test", make, "tiny MLP"))
    monkeypatch.setattr(train_task, "device_name", lambda device: f"named {device}")
    job = TrainJob("mlp-test", TrainConfig(sample="phantom", steps=3, device="auto"), tmp_path / "run",
                   out=tmp_path / "m")
    gen = train_model(job)
    try:
        while True:
            next(gen)
    except StopIteration:
        pass
    from napari_medgen.device import resolve_device

    card = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert card["training"]["device"] == f"named {resolve_device('auto')}"
