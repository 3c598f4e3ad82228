"""The MONAI bundle reader: builds only allowed MONAI classes from plain values, never runs code.

Latent bundles are built here in the layout of MONAI's brain_image_synthesis_latent_diffusion_model
(same config keys, weight file names and metadata), with tiny networks."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from monai.networks.nets import AutoencoderKL

from napari_medgen.errors import InputError, ModelError
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
    assert next(iter(model.unet.state_dict())) == next(iter(weights)).removeprefix("module.")


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


AE = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "latent_channels": 3, "channels": [8, 8],
      "num_res_blocks": 1, "norm_num_groups": 8, "norm_eps": 1e-06, "attention_levels": [False, False],
      "with_encoder_nonlocal_attn": False, "with_decoder_nonlocal_attn": False}
LDM = {"spatial_dims": 2, "in_channels": 7, "out_channels": 3, "channels": [8, 8], "num_res_blocks": 1,
       "attention_levels": [False, False], "norm_num_groups": 8, "norm_eps": 1e-06, "resblock_updown": True,
       "num_head_channels": [0, 8], "with_conditioning": True, "transformer_num_layers": 1, "cross_attention_dim": 4,
       "upcast_attention": True, "use_flash_attention": False}
NAMES = {"0": "Gender", "1": "Age", "2": "Ventricular volume", "3": "Brain volume"}


def _to_old_names(state: dict) -> dict:
    """A state dict as MONAI Generative (before MONAI 1.4) named it: what the brain LDM bundle ships."""
    return {k.replace("postconv", "conv").replace("attn1.out_proj", "attn1.to_out.0")
            .replace("attn2.out_proj", "attn2.to_out.0"): v for k, v in state.items()}


def make_latent_bundle(root: Path, *, dims: int = 2, size: int = 16, ae: dict | None = None, net: dict | None = None,
                       config: dict | None = None, ae_weights: object | None = None, old_names: bool = True,
                       ae_file: str = "autoencoder.pt") -> Path:
    """A latent bundle laid out like MONAI's brain_image_synthesis_latent_diffusion_model: autoencoder_def,
    network_def = "@autoencoder_def", diffusion_def (cross-attention + 4 concatenated conditioning channels),
    scheduler with _requires_, $ expressions for noise/conditioning/loading, models/autoencoder.pt and
    models/model.pt in MONAI Generative's key names, metadata with the image shape and the condition names."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    ae_def = {"_target_": "monai.networks.nets.AutoencoderKL", **AE, "spatial_dims": dims, **(ae or {})}
    net_def = {"_target_": "monai.networks.nets.DiffusionModelUNet", **LDM, "spatial_dims": dims, **(net or {})}
    latent = [size // 2] * dims
    cfg = {"imports": ["$import torch", "$from datetime import datetime"], "bundle_root": ".", "load_old": 1,
           "model_dir": "$@bundle_root + '/models'", "gender": 0.0, "age": 0.1, "ventricular_vol": 0.2,
           "brain_vol": 0.4, "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
           "conditioning": "$torch.tensor([[@gender, @age, @ventricular_vol, @brain_vol]]).to(@device).unsqueeze(1)",
           "autoencoder_def": ae_def, "network_def": "@autoencoder_def",
           "load_autoencoder_path": "$@model_dir + '/autoencoder.pt'",
           "load_autoencoder": "$@autoencoder_def.load_old_state_dict(torch.load(@load_autoencoder_path))",
           "autoencoder": "$@autoencoder_def.to(@device)", "diffusion_def": net_def,
           "load_diffusion": "$@diffusion_def.load_old_state_dict(torch.load(@model_dir + '/model.pt'))",
           "diffusion": "$@diffusion_def.to(@device)",
           "scheduler": {"_target_": "monai.networks.schedulers.DDIMScheduler",
                         "_requires_": ["@load_diffusion", "@load_autoencoder"], "beta_start": 0.0015,
                         "beta_end": 0.0205, "num_train_timesteps": 1000, "schedule": "scaled_linear_beta",
                         "clip_sample": False},
           "noise": f"$torch.randn((1, 3, {', '.join(map(str, latent))})).to(@device)",
           "set_timesteps": "$@scheduler.set_timesteps(num_inference_steps=50)",
           "sampler": {"_target_": "scripts.sampler.Sampler", "_requires_": "@set_timesteps"},
           "sample": "$@sampler.sampling_fn(@noise, @autoencoder, @diffusion, @scheduler, @conditioning)",
           **(config or {})}
    (root / "configs" / "inference.json").write_text(json.dumps(cfg))
    meta = {"name": "tiny_ldm", "version": "1.0.0", "network_data_format": {
        "inputs": {"image": {"type": "tabular", "num_channels": 1, "spatial_shape": [size] * dims, "channel_def": NAMES}},
        "outputs": {"pred": {"type": "image", "num_channels": 1, "spatial_shape": [size] * dims}}}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    torch.manual_seed(0)
    unet = build_unet({k: v for k, v in net_def.items() if k != "_target_"})["unet"].state_dict()
    if ae_weights is None:
        ae_weights = AutoencoderKL(**{k: v for k, v in ae_def.items() if k != "_target_"}).state_dict()
    torch.save(_to_old_names(unet) if old_names else unet, root / "models" / "model.pt")
    torch.save(ae_weights, root / "models" / ae_file)
    return root


def set_config(folder: Path, where: str, key: str, value: object) -> Path:
    """Set ``inference.json``'s ``where.key`` to ``value`` (after the weights were made for the original)."""
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config[where][key] = value
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("dims", [2, 3])
def test_latent_bundle_loads_and_samples(tmp_path, dims):
    size = 16 if dims == 2 else 8
    folder = make_latent_bundle(tmp_path / "b", dims=dims, size=size)
    model = load_bundle(folder)
    saved = torch.load(folder / "models" / "autoencoder.pt", weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in model.autoencoder.state_dict().items())
    old = torch.load(folder / "models" / "model.pt", weights_only=True)  # MONAI Generative names, renamed on load
    new = model.unet.state_dict()
    assert len(old) == len(new) and all(torch.equal(v, old[k]) for k, v in _to_old_names(new).items())
    assert model.shape == (size // 2,) * dims and model.image_shape == (size,) * dims  # metadata / downsampling 2
    assert model.in_channels == 3 and model.scale_factor == 1.0 and model.objective == "ddpm"
    assert model.condition_size == 4 and model.concat_channels == 4 and model.cross_attention_dim == 4
    assert model.condition_names == ("Gender", "Age", "Ventricular volume", "Brain volume")
    vol = run_to_completion(sample(folder, steps=2, n=2, condition=[0.0, 0.1, 0.2, 0.4], device="cpu"))
    assert vol.data.shape == (2, *((1, 16, 16) if dims == 2 else (8, 8, 8))) and np.isfinite(vol.data).all()
    assert vol.spacing == (1.0, 1.0, 1.0) and vol.data.std() > 0


def test_latent_bundle_needs_its_condition(tmp_path):
    folder = make_latent_bundle(tmp_path / "b")
    with pytest.raises(InputError, match=r"conditioned on 4 values \(Gender, Age, Ventricular volume, Brain volume\).*"
                                         r"--condition 0\.5,0\.5,0\.5,0\.5"):
        run_to_completion(sample(folder, steps=2, device="cpu"))
    with pytest.raises(InputError, match=r"conditioned on 4 values .*got 3 \(1, 2, 3\)"):
        run_to_completion(sample(folder, steps=2, condition="1,2,3", device="cpu"))


def test_latent_bundle_other_weight_name_and_plain_scale(tmp_path):
    """The brats LDM bundle's name for the autoencoder weights; a plain scale_factor and latent_shape are read."""
    folder = make_latent_bundle(tmp_path / "b", ae_file="model_autoencoder.pt", old_names=False,
                                net={"in_channels": 3, "with_conditioning": False, "cross_attention_dim": None},
                                config={"scale_factor": 0.25, "latent_shape": [3, 4, 6]})
    model = load_bundle(folder)
    assert model.scale_factor == 0.25 and model.shape == (4, 6) and model.image_shape == (8, 12)
    assert model.condition_size == 0
    vol = run_to_completion(sample(folder, steps=2, device="cpu"))
    assert vol.data.shape == (1, 1, 8, 12)


def test_latent_expressions_need_the_callers_values(tmp_path):
    """scale_factor and latent_shape given as expressions are not evaluated: the caller gives them."""
    folder = make_latent_bundle(tmp_path / "b", config={
        "scale_factor": "$scripts.utils.compute_scale_factor(@autoencoder, @train#dataloader, @device)",
        "latent_shape": ["@latent_channels", 8, 8]})
    meta = json.loads((folder / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    model = load_bundle(folder)
    assert model.scale_factor is None and model.shape == ()
    cond = [0.0, 0.1, 0.2, 0.4]
    with pytest.raises(InputError, match=r"'latent_shape' as \['@latent_channels'.*does not evaluate.*--shape"):
        run_to_completion(sample(folder, steps=2, condition=cond, device="cpu"))
    with pytest.raises(InputError, match=r"'scale_factor' as '\$scripts.*does not evaluate.*--scale-factor"):
        run_to_completion(sample(folder, steps=2, condition=cond, shape=(16, 16), device="cpu"))
    vol = run_to_completion(sample(folder, steps=2, condition=cond, shape=(16, 20), scale_factor=0.5, device="cpu"))
    assert vol.data.shape == (1, 1, 16, 20)


@pytest.mark.parametrize("where, key, value", [("autoencoder_def", "channels", "$[8, 8]"),
                                               ("autoencoder_def", "latent_channels", "@latent_channels"),
                                               ("diffusion_def", "cross_attention_dim", "$len(@conditioning)")])
def test_latent_expressions_refused_with_key(tmp_path, where, key, value):
    folder = set_config(make_latent_bundle(tmp_path / "b"), where, key, value)
    with pytest.raises(ModelError, match=rf"'{where}\.{key}' is '{re.escape(value[:3])}.*does not evaluate"):
        load_bundle(folder)


@pytest.mark.parametrize("target", ["os.system", "monai.networks.nets.VQVAE", "scripts.autoencoder.Evil"])
def test_latent_autoencoder_outside_allow_list_refused(tmp_path, target):
    folder = set_config(make_latent_bundle(tmp_path / "b"), "autoencoder_def", "_target_", target)
    with pytest.raises(ModelError, match=r"'autoencoder_def\._target_' .* not allowed; .* AutoencoderKL"):
        load_bundle(folder)


def test_directives_other_than_requires_refused(tmp_path):
    folder = make_latent_bundle(tmp_path / "b", config={"scheduler": {
        "_target_": "DDIMScheduler", "_requires_": "@load_diffusion", "_disabled_": "$True"}})
    with pytest.raises(ModelError, match=r"'scheduler\._disabled_' is a config-parser directive"):
        load_bundle(folder)


def test_latent_pickled_autoencoder_weights_not_run(tmp_path):
    marker = tmp_path / "code_ran"
    folder = make_latent_bundle(tmp_path / "b", ae_weights={"w": torch.zeros(1), "evil": _Payload(marker)})
    with pytest.raises(ModelError, match=r"autoencoder\.pt' hold more than plain tensors.*nothing in them was run"):
        load_bundle(folder)
    assert not marker.exists()


def test_latent_weights_must_fit_exactly(tmp_path):
    folder = make_latent_bundle(tmp_path / "b")
    (folder / "models" / "autoencoder.pt").unlink()
    with pytest.raises(ModelError, match=r"no autoencoder weights \(looked for models/autoencoder\.pt"):
        load_bundle(folder)
    # old-named weights with one tensor too many: MONAI's converter would load them; refused instead
    folder = make_latent_bundle(tmp_path / "c")
    state = torch.load(folder / "models" / "model.pt", weights_only=True)
    torch.save({**state, "extra.weight": torch.zeros(1)}, folder / "models" / "model.pt")
    with pytest.raises(ModelError, match=r"model\.pt' do not fit the network"):
        load_bundle(folder)
    other = AutoencoderKL(**{**AE, "latent_channels": 4}).state_dict()
    with pytest.raises(ModelError, match=r"autoencoder\.pt' do not fit"):
        load_bundle(make_latent_bundle(tmp_path / "d", ae_weights=other))


def test_latent_network_must_fit_autoencoder(tmp_path):
    folder = make_latent_bundle(tmp_path / "b", ae={"latent_channels": 4}, ae_weights={})
    with pytest.raises(ModelError, match=r"3 output channels\) does not fit the autoencoder \(2D, 4 latent"):
        load_bundle(folder)


def test_vqvae_bundle_refused(tmp_path):
    folder = make_bundle(tmp_path / "b")
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["vqvae_def"] = {"_target_": "monai.networks.nets.VQVAE", "spatial_dims": 2}
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="VQ-VAE latent bundles are not supported"):
        load_bundle(folder)


@pytest.mark.parametrize("where", ["autoencoder_def", "diffusion_def"])
def test_latent_config_values_of_wrong_type(tmp_path, where):
    """Plain values MONAI's constructors choke on, or accept and only fail on the first call: project errors."""
    folder = set_config(make_latent_bundle(tmp_path / "b"), where, "attention_levels", {"0": False})
    with pytest.raises(ModelError, match="not valid for MONAI"):
        load_bundle(folder)
    folder = set_config(make_latent_bundle(tmp_path / "c"), where, "norm_eps", [1e-6])
    with pytest.raises(ModelError, match=r"builds but does not run \(TypeError: .*eps"):
        run_to_completion(sample(load_bundle(folder), steps=1, condition="0,0,0,0", device="cpu"))
