"""The MONAI bundle reader: builds only allowed MONAI classes from plain values, never runs code."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
import yaml

from napari_medgen.errors import ModelError
from napari_medgen.models.bundle import load_bundle
from napari_medgen.models.diffusion import build_unet
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.sample import sample

NET = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [8, 8], "attention_levels": [False, False],
       "num_res_blocks": 1, "norm_num_groups": 8, "num_head_channels": 8}


def make_bundle(root: Path, *, fmt: str = "json", network: dict | None = None, scheduler: dict | None = None,
                weights: object | None = None) -> Path:
    """A bundle folder like the MONAI model zoo's (configs/, models/model.pt) with a tiny network."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    net = network or {"_target_": "monai.networks.nets.DiffusionModelUNet", **NET}
    sched = scheduler or {"_target_": "monai.networks.schedulers.DDPMScheduler", "num_train_timesteps": 1000,
                          "schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195}
    config = {"imports": ["$import torch"], "device": "$torch.device('cpu')", "network_def": net, "scheduler": sched,
              "inferer": {"_target_": "DiffusionInferer", "scheduler": "@scheduler"}}
    text = json.dumps(config) if fmt == "json" else yaml.safe_dump(config)
    (root / "configs" / f"inference.{fmt}").write_text(text)
    meta = {"name": "tiny_ddpm", "version": "0.1",
            "network_data_format": {"inputs": {"image": {"spatial_shape": [16, 16]}}}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    if weights is None:
        torch.manual_seed(0)
        weights = build_unet({k: v for k, v in net.items() if k != "_target_"} if network else NET)["unet"].state_dict()
    torch.save(weights, root / "models" / "model.pt")
    return root


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_bundle_loads_and_samples(tmp_path, fmt):
    folder = make_bundle(tmp_path / "b", fmt=fmt)
    model = load_bundle(folder)
    saved = torch.load(folder / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in model.unet.state_dict().items())
    assert model.shape == (16, 16) and model.objective == "ddpm"
    vol = run_to_completion(sample(folder, sampler="ddim", steps=2, n=2, device="cpu"))
    assert vol.data.shape == (2, 1, 16, 16)


def test_old_generative_names_and_module_prefix(tmp_path):
    net = {"_target_": "generative.networks.nets.DiffusionModelUNet", **NET}
    net["num_channels"] = net.pop("channels")
    weights = {f"module.{k}": v for k, v in build_unet(NET)["unet"].state_dict().items()}
    model = load_bundle(make_bundle(tmp_path / "b", network=net, weights={"model": weights}))
    assert list(model.unet.state_dict())[0] == list(weights)[0].removeprefix("module.")


def test_latent_bundle_refused(tmp_path):
    folder = make_bundle(tmp_path / "b")
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["autoencoder_def"] = {"_target_": "monai.networks.nets.AutoencoderKL", "spatial_dims": 2}
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="latent-diffusion bundles"):
        load_bundle(folder)


def test_missing_file(tmp_path):
    folder = make_bundle(tmp_path / "b")
    (folder / "models" / "model.pt").unlink()
    with pytest.raises(ModelError, match=r"missing models/model\.pt"):
        load_bundle(folder)
    (folder / "configs" / "inference.json").unlink()
    with pytest.raises(ModelError, match="inference.json"):
        load_bundle(folder)


def test_malformed_config(tmp_path):
    folder = make_bundle(tmp_path / "b")
    (folder / "configs" / "inference.json").write_text('{"network_def": {"_target_": ')
    with pytest.raises(ModelError, match=r"inference\.json' cannot be read"):
        load_bundle(folder)
    (folder / "configs" / "inference.json").write_text('{"scheduler": {}}')
    with pytest.raises(ModelError, match="no network definition"):
        load_bundle(folder)


@pytest.mark.parametrize("key, value", [("channels", "$[8, 8]"), ("num_head_channels", "@heads"),
                                        ("norm_num_groups", "%configs/common.yaml#groups")])
def test_expressions_refused_with_key(tmp_path, key, value):
    net = {"_target_": "DiffusionModelUNet", **NET, key: value}
    with pytest.raises(ModelError, match=rf"'network_def\.{key}' is '{re.escape(value[:3])}.*does not evaluate"):
        load_bundle(make_bundle(tmp_path / "b", network=net, weights={}))


@pytest.mark.parametrize("target", ["os.system", "monai.networks.nets.UNet", "torch.nn.Identity"])
def test_targets_outside_allow_list_refused(tmp_path, target):
    with pytest.raises(ModelError, match="not allowed"):
        load_bundle(make_bundle(tmp_path / "b", network={"_target_": target, **NET}, weights={}))


class _Payload:
    """Pickled, this makes the unpickler call os.mkdir(marker): code execution on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_code_is_not_run(tmp_path):
    marker = tmp_path / "code_ran"
    folder = make_bundle(tmp_path / "b", weights={"w": torch.zeros(1), "evil": _Payload(marker)})
    with pytest.raises(ModelError, match="nothing in them was run"):
        load_bundle(folder)
    assert not marker.exists()
    # the payload is real: a plain unpickling would have run it
    with open(folder / "models" / "model.pt", "rb") as f:
        torch.load(f, weights_only=False)
    assert marker.exists()


def test_truncated_weights(tmp_path):
    folder = make_bundle(tmp_path / "b")
    data = (folder / "models" / "model.pt").read_bytes()
    (folder / "models" / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="model.pt"):
        load_bundle(folder)


def test_weights_not_fitting_network(tmp_path):
    other = build_unet({**NET, "channels": [8, 16], "norm_num_groups": 8})["unet"].state_dict()
    with pytest.raises(ModelError, match="do not fit"):
        load_bundle(make_bundle(tmp_path / "b", weights=other))


def test_pickle_module_is_the_one_used(tmp_path):
    """Guard: the payload class really pickles to a call of os.mkdir (the test above relies on it)."""
    assert b"mkdir" in pickle.dumps(_Payload(tmp_path / "x"))
