"""MONAI model-zoo bundles: each opens from its exact published config files (tests/fixtures/bundles) with
random weights at reduced sizes and samples on the CPU; bundles that carry code are refused, naming the
construct, and nothing in them runs."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from napari_medgen.errors import InputError, ModelError
from napari_medgen.models.bundle import ALLOWED, PREFIXES, _wiring, load_bundle
from napari_medgen.models.bundle_config import BundleConfig
from napari_medgen.models.bundle_wiring import LoadWeights
from napari_medgen.models.diffusion import build_unet
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.sample import condition_fields, sample

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bundles"
MEDNIST, BRAIN, BRATS = "mednist_ddpm", "brain_image_synthesis_latent_diffusion_model", "brats_mri_generative_diffusion"
AXIAL, MAISI = "brats_mri_axial_slices_generative_diffusion", "maisi_ct_generative"
_SMALL = {"norm_num_groups": 4}
# reduced sizes, set over the published values as `monai.bundle run --id value` would (the files stay exact)
REDUCED = {
    MEDNIST: {"network_def::channels": [8, 8, 8], "network_def::num_head_channels": 8, "network_def::norm_num_groups": 4},
    BRAIN: {"autoencoder_def::channels": [8, 8, 8, 8], "autoencoder_def::norm_num_groups": 4,
            "diffusion_def::channels": [8, 8, 8], "diffusion_def::num_head_channels": [0, 8, 8],
            "diffusion_def::norm_num_groups": 4},
    BRATS: {"autoencoder_def::channels": [8, 8, 8], "autoencoder_def::norm_num_groups": 4,
            "network_def::channels": [8, 8, 8], "network_def::num_head_channels": [0, 8, 8],
            "network_def::norm_num_groups": 4},
    AXIAL: {"autoencoder_def::channels": [8, 8, 8], "autoencoder_def::norm_num_groups": 4,
            "network_def::channels": [8, 8, 8, 8], "network_def::num_head_channels": [0, 8, 8, 8],
            "network_def::norm_num_groups": 4},
    MAISI: {**{f"{k}::{a}": v for k in ("autoencoder_def", "mask_generation_autoencoder_def")
               for a, v in (("num_channels", [8, 8, 8]), ("norm_num_groups", 4), ("num_splits", 1))},
            **{f"{k}::{a}": v for k in ("diffusion_unet_def", "controlnet_def", "mask_generation_diffusion_def")
               for a, v in (("channels" if k.startswith("mask") else "num_channels", [8, 8, 8, 8]),
                            ("num_head_channels", [0, 0, 8, 8]), ("norm_num_groups", 4))},
            "mask_generation_latent_shape": [4, 8, 8, 8], "mask_generation_num_inference_steps": 2},
}
SMALL_SHAPE = {MEDNIST: (16, 16), BRAIN: (32, 32, 32), BRATS: (16, 16, 16), AXIAL: (32, 32), MAISI: (32, 32, 32)}


NET = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [8, 8], "attention_levels": [False, False],
       "num_res_blocks": 1, "norm_num_groups": 8, "num_head_channels": 8}


def make_bundle(root: Path, *, fmt: str = "json") -> Path:
    """A small bundle folder in the zoo's layout (configs/, models/model.pt, no loading lines) with a tiny network."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    config = {"imports": ["$import torch"], "device": "$torch.device('cpu')",
              "network_def": {"_target_": "monai.networks.nets.DiffusionModelUNet", **NET},
              "scheduler": {"_target_": "monai.networks.schedulers.DDPMScheduler", "num_train_timesteps": 1000,
                            "schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195}}
    text = json.dumps(config) if fmt == "json" else yaml.safe_dump(config)
    (root / "configs" / f"inference.{fmt}").write_text(text)
    meta = {"name": "tiny_ddpm", "network_data_format": {"inputs": {"image": {"spatial_shape": [16, 16]}}}}
    (root / "configs" / "metadata.json").write_text(json.dumps(meta))
    torch.manual_seed(0)
    torch.save(build_unet(NET)["unet"].state_dict(), root / "models" / "model.pt")
    return root


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_small_bundle_without_loading_lines(tmp_path, fmt):
    """Without loading lines, the weights are models/model.pt."""
    folder = make_bundle(tmp_path / "b", fmt=fmt)
    model = load_bundle(folder)
    saved = torch.load(folder / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(v, saved[k]) for k, v in model.unet.state_dict().items())
    vol = run_to_completion(sample(model, sampler="ddim", steps=2, n=2, device="cpu"))
    assert vol.data.shape == (2, 1, 16, 16)
    (folder / "models" / "model.pt").unlink()
    with pytest.raises(ModelError, match=r"no weights for 'network_def' \(looked for models/model\.pt\)"):
        load_bundle(folder)


def _old_names(state: dict) -> dict:
    """A state dict as MONAI Generative (before MONAI 1.4) named it: what the brain and brats LDMs ship."""
    return {k.replace("postconv", "conv").replace("attn1.out_proj", "attn1.to_out.0")
            .replace("attn2.out_proj", "attn2.to_out.0"): v for k, v in state.items()}


def publish(name: str, root: Path, old_names: bool = False, overrides: dict | None = None, masks: bool = True) -> Path:
    """A copy of the published bundle folder with random weights where its config loads them, at the sizes
    of ``overrides`` (default: REDUCED[name]; {} for the published sizes); masks: with MAISI's
    mask-generation weights."""
    folder = root / name
    shutil.copytree(FIXTURES / name, folder)
    (folder / "models").mkdir()
    cfg = BundleConfig(folder, ALLOWED, PREFIXES, REDUCED[name] if overrides is None else overrides)
    files: dict[str, dict] = {}
    torch.manual_seed(0)
    for line in _wiring(cfg):
        if isinstance(line, LoadWeights) and (masks or not line.target.id.startswith("mask_generation")):
            kwargs = cfg.arguments(line.target)
            kwargs.update({k: False for k in ("use_flash_attention", "norm_float16") if kwargs.get(k)})  # CPU
            net = line.target.cls(**kwargs)
            for p in net.parameters():  # MONAI zero-initialises output convolutions: random weights everywhere
                if p.ndim > 1 and not p.any():
                    torch.nn.init.normal_(p, std=0.05)
            state = net.state_dict()
            state = _old_names(state) if old_names else state
            entry = files.setdefault(line.source.path, {})
            entry.update({line.source.key: state} if line.source.key else state)
    for path, obj in files.items():
        if "unet_state_dict" in obj:
            obj["scale_factor"] = torch.tensor(0.8)
        torch.save(obj, folder / path)
    return folder


def open_small(name: str, root: Path, **kw) -> object:
    return load_bundle(publish(name, root, **kw), overrides=REDUCED[name])


def test_fixtures_are_the_published_files():
    """The fixtures hold the zoo's wiring as published: the reader must cope with these very lines."""
    brain = json.loads((FIXTURES / BRAIN / "configs" / "inference.json").read_text(encoding="utf-8"))
    assert brain["load_diffusion"] == "$@load_diffusion_func(torch.load(@load_diffusion_path))"
    mednist = (FIXTURES / MEDNIST / "configs" / "inference.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(mednist)["sample"].startswith(
        "$lambda x: @inferer.sample(")
    maisi = json.loads((FIXTURES / MAISI / "configs" / "inference.json").read_text(encoding="utf-8"))
    assert maisi["checkpoint_diffusion_unet"] == "$torch.load(@trained_diffusion_path, weights_only=False)"
    licences = [(FIXTURES / n / "LICENSE").read_text(encoding="utf-8") for n in REDUCED]
    assert all(text[:400].count("Apache License") == 1 for text in licences)


@pytest.mark.parametrize("name", [MEDNIST, BRAIN, BRATS, AXIAL])
def test_published_bundle_opens_and_samples(tmp_path, name):
    model = open_small(name, tmp_path)
    folder = tmp_path / name
    for net, key in ((model.unet, "model.pt"), (model.autoencoder, None)):
        if net is None:
            continue
        path = folder / "models" / (key or ("autoencoder.pt" if name == BRAIN else "model_autoencoder.pt"))
        saved = torch.load(path, weights_only=True)
        assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
    published = {MEDNIST: (64, 64), BRAIN: (160, 224, 160), BRATS: (144, 176, 112), AXIAL: (256, 256)}[name]
    assert model.image_shape == published  # (x, y[, z]) from the published latent_shape / metadata
    vol = run_to_completion(sample(model, steps=2, n=2, shape=SMALL_SHAPE[name], device="cpu"))
    shape = SMALL_SHAPE[name] if len(SMALL_SHAPE[name]) == 3 else (1, *SMALL_SHAPE[name])
    assert vol.data.shape == (2, *shape) and np.isfinite(vol.data).all() and vol.data.std() > 0
    assert vol.spacing == ((1.1,) * 3 if name == BRATS else (1.0,) * 3)  # metadata "1.1x1.1x1.1 mm voxel size"
    ras = len(SMALL_SHAPE[name]) == 3
    assert np.allclose(vol.direction, np.diag([-1, -1, 1]) if ras else np.eye(3))  # MONAI's RAS arrays, in LPS


def test_bundle_axes_follow_monai(tmp_path):
    """A bundle's network arrays are (x, y, z): a non-cubic output shape (z, y, x) lands the right way round."""
    model = open_small(BRATS, tmp_path)
    vol = run_to_completion(sample(model, steps=1, shape=(16, 32, 48), device="cpu"))
    assert vol.data.shape == (1, 16, 32, 48) and model.shape == (12, 8, 4)  # latents (x, y, z) / 4


def test_mednist_sampler_wiring_is_recognised(tmp_path):
    """mednist's network and scheduler come from its sampling lambda; its `$torch.rand` noise, `$dist...`
    and SaveImage entries are never read."""
    model = open_small(MEDNIST, tmp_path)
    assert model.objective == "ddpm" and model.scheduler["num_train_timesteps"] == 1000  # '@num_train_timesteps'
    assert model.shape == (64, 64) and model.autoencoder is None


def test_brain_ldm_condition_fields_and_old_names(tmp_path):
    model = open_small(BRAIN, tmp_path, old_names=True)  # MONAI Generative names, renamed on load
    fields = condition_fields(model)
    assert [(f.key, f.label, f.default, f.low, f.high) for f in fields] == [
        ("gender", "Gender", 0.0, 0.0, 1.0), ("age", "Age", 0.1, 0.0, 1.0),
        ("ventricular_vol", "Ventricular volume", 0.2, 0.0, 1.0), ("brain_vol", "Brain volume", 0.4, 0.0, 1.0)]
    old = torch.load(tmp_path / BRAIN / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(v, old[k]) for k, v in _old_names(model.unet.state_dict()).items())
    def run(condition: object) -> np.ndarray:
        return run_to_completion(sample(model, steps=2, shape=(32, 32, 32), condition=condition, device="cpu")).data

    default, older = run(None), run({"Age": 0.9})
    assert np.array_equal(default, run("age=0.1"))  # unnamed values take the bundle's defaults
    assert np.array_equal(older, run("0,0.9,0.2,0.4")) and not np.allclose(default, older)
    with pytest.raises(InputError, match=r"'age' \(Age\) .* must lie in \[0.0, 1.0\], got 2"):
        run_to_completion(sample(model, steps=1, shape=(32, 32, 32), condition="age=2", device="cpu"))
    with pytest.raises(InputError, match=r"no conditioning value named 'height'; it takes gender \(Gender\)"):
        run_to_completion(sample(model, steps=1, shape=(32, 32, 32), condition="height=2", device="cpu"))


# ---- refusals: nothing a bundle carries is run -------------------------------------------------------------


def _edit(folder: Path, **entries: object) -> Path:
    path = folder / "configs" / "inference.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(entries)
    path.write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("entry, value, construct", [
    ("load_diffusion", "$__import__('os').system('touch x')", r"'load_diffusion' is '\$__import__.*does not evaluate"),
    ("load_diffusion_path", "$@model_dir + '/model.pt' if os.system('x') else 'a'", r"'load_diffusion_path' is '\$@model_dir"),
    ("scale_factor", "$open('/etc/passwd').read()", r"'scale_factor' is '\$open\("),
])
def test_other_expressions_refused_naming_them(tmp_path, entry, value, construct):
    folder = _edit(publish(BRAIN, tmp_path), **{entry: value})
    with pytest.raises(ModelError, match=rf"inference\.json': .*{construct}"):
        load_bundle(folder, overrides=REDUCED[BRAIN])


@pytest.mark.parametrize("target", ["os.system", "monai.networks.nets.UNet", "torch.nn.Identity",
                                    "evil.monai.networks.nets.DiffusionModelUNet", "scripts.sampler.Sampler"])
def test_targets_outside_allow_list_refused(tmp_path, target):
    folder = publish(BRATS, tmp_path)
    config = json.loads((folder / "configs" / "inference.json").read_text(encoding="utf-8"))
    config["network_def"]["_target_"] = target
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=rf"'network_def._target_' is '{target}', which is not allowed"):
        load_bundle(folder, overrides=REDUCED[BRATS])


@pytest.mark.parametrize("directive, value, construct", [
    ("_requires_", "@create_output_dir", r"'scheduler::_requires_::0' would run '@create_output_dir': .*'\$Path\("),
    ("_requires_", ["@load_diffusion", "$print('x')"], r"'scheduler::_requires_::1' is '\$print\("),
    ("_disabled_", True, r"'scheduler' is marked '_disabled_'"),
    ("_mode_", "callable", r"'scheduler._mode_' is 'callable'"),
])
def test_directives_refused_unless_wiring(tmp_path, directive, value, construct):
    folder = publish(BRAIN, tmp_path)
    config = json.loads((folder / "configs" / "inference.json").read_text(encoding="utf-8"))
    config["scheduler"][directive] = value
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=construct):
        load_bundle(folder, overrides=REDUCED[BRAIN])


def test_references_and_macros(tmp_path):
    folder = publish(BRATS, tmp_path)
    (folder / "configs" / "common.json").write_text(json.dumps({"heads": [0, 8, 8]}))
    config = json.loads((folder / "configs" / "inference.json").read_text(encoding="utf-8"))
    config["network_def"]["num_head_channels"] = "%configs/common.json#heads"
    config["shared"] = {"groups": 4}
    config["network_def"]["norm_num_groups"] = "@shared::groups"
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    reduced = {k: v for k, v in REDUCED[BRATS].items() if not k.startswith("network_def::n")}
    model = load_bundle(folder, overrides=reduced)
    assert list(model.unet.block_out_channels) == [8, 8, 8]
    for value, construct in (("%../../outside.json#x", "not inside the bundle folder"),
                             ("@network_def::norm_num_groups", "refers to itself")):
        config["network_def"]["norm_num_groups"] = value
        (folder / "configs" / "inference.json").write_text(json.dumps(config))
        with pytest.raises(ModelError, match=construct):
            load_bundle(folder, overrides=reduced)


def test_weights_outside_the_bundle_refused(tmp_path):
    folder = _edit(publish(BRATS, tmp_path), load_diffusion_path="$'/etc/' + 'model.pt'")
    with pytest.raises(ModelError, match="loads weights from '/etc/model.pt', outside the bundle folder"):
        load_bundle(folder, overrides=REDUCED[BRATS])


@pytest.mark.parametrize("text, construct", [
    ("a: !!python/object/apply:os.system ['touch x']\n", "YAML tag"),
    ("a: &a [1, 2]\nb: [*a, *a, *a]\n", "anchors and aliases"),
])
def test_yaml_tags_and_anchors_refused(tmp_path, text, construct):
    folder = publish(MEDNIST, tmp_path)
    path = folder / "configs" / "inference.yaml"
    path.write_text(text + path.read_text(encoding="utf-8"))
    with pytest.raises(ModelError, match=rf"inference\.yaml'.*{construct}"):
        load_bundle(folder)


class _Payload:
    """Pickled, this makes the unpickler call os.mkdir(marker): code execution on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_code_is_not_run(tmp_path):
    marker = tmp_path / "code_ran"
    folder = publish(MAISI, tmp_path)
    path = next((folder / "models").glob("input_unet3d*.pt"))  # the file MAISI's config loads weights_only=False
    ckpt = torch.load(path, weights_only=True)
    torch.save({**ckpt, "evil": _Payload(marker)}, path)
    with pytest.raises(ModelError, match="hold more than plain tensors .*nothing in them was run"):
        load_bundle(folder, overrides=REDUCED[MAISI])
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: a plain unpickling runs it
    assert marker.exists()
    assert b"mkdir" in pickle.dumps(_Payload(tmp_path / "y"))


def test_damaged_missing_and_unfitting_weights(tmp_path):
    folder = publish(BRATS, tmp_path)
    path = folder / "models" / "model.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"model\.pt' hold more than plain tensors .*or are damaged"):
        load_bundle(folder, overrides=REDUCED[BRATS])
    path.unlink()
    with pytest.raises(ModelError, match=r"missing the weights file './models/model\.pt' for 'network_def'"):
        load_bundle(folder, overrides=REDUCED[BRATS])
    torch.save(build_unet({"spatial_dims": 3, "in_channels": 8, "out_channels": 8, "channels": [8, 16],
                           "attention_levels": [False, False], "norm_num_groups": 4,
                           "num_res_blocks": [1, 1]})["unet"].state_dict(), path)
    with pytest.raises(ModelError, match="do not fit 'network_def'"):
        load_bundle(folder, overrides=REDUCED[BRATS])


def test_huge_network_refused_before_allocating(tmp_path):
    folder = publish(BRATS, tmp_path)
    huge = {**REDUCED[BRATS], "network_def::channels": [4096, 8192, 8192], "network_def::num_head_channels": [0, 64, 64]}
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"weights alone need about \d+(\.\d+)? GiB \([\d,]+ parameters\).*not built"):
        load_bundle(folder, overrides=huge)
    assert time.perf_counter() - start < 30  # counted on the meta device, not built


def test_not_a_bundle(tmp_path):
    (tmp_path / "configs").mkdir()
    with pytest.raises(ModelError, match="configs/metadata.json is missing"):
        load_bundle(tmp_path)
    (tmp_path / "configs" / "metadata.json").write_text("{}")
    with pytest.raises(ModelError, match=r"configs/inference\.json \(or \.yaml\) is missing"):
        load_bundle(tmp_path)
    (tmp_path / "configs" / "inference.json").write_text('{"scheduler": {}}')
    with pytest.raises(ModelError, match="no diffusion network napari-medgen can build"):
        load_bundle(tmp_path)
    (tmp_path / "configs" / "inference.json").write_text('{"network_def": {"_target_": ')
    with pytest.raises(ModelError, match=r"inference\.json' cannot be read"):
        load_bundle(tmp_path)
