"""Untrusted files: fuzz the volume readers, the model-card loader and the bundle loader with hypothesis.

Inputs are valid files with bytes flipped, truncated or replaced, and cards/configs with values
swapped for other (bounded) JSON values. The only exceptions allowed are the project's own
(errors.MedgenError subclasses). Sizes stay small (ints <= 64) so that no case can ask for
gigabytes. Also checks in the source that every ``torch.load`` call passes ``weights_only=True``.
"""

from __future__ import annotations

import ast
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_medgen.errors import MedgenError
from napari_medgen.io.readers import read_volume
from napari_medgen.io.volume import Volume
from napari_medgen.io.writers import write_volume
from napari_medgen.models.bundle import load_bundle
from napari_medgen.models.families import load_model
from napari_medgen.models.store import load_card, save_model

from .models.test_bundle import make_bundle

ROOT = Path(__file__).parents[1]
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SUFFIXES = [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"]

plain = st.recursive(st.none() | st.booleans() | st.integers(-3, 64) | st.floats(-10, 10) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                     max_leaves=8)


def mutate(data: bytes, draw) -> bytes:
    """Flip bytes, cut the file short, or splice random bytes in (header and data alike)."""
    data = bytearray(data)
    kind = draw(st.sampled_from(["flip", "truncate", "splice"]))
    if kind == "truncate":
        return bytes(data[:draw(st.integers(1, max(1, len(data) - 1)))])
    head = min(len(data), 400)  # most mutations in the header, where parsers decide sizes
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, head - 1) | st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] = draw(st.integers(0, 255))
        else:
            data[i:i + 4] = draw(st.binary(min_size=0, max_size=8))
    return bytes(data)


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """A small valid volume in every format: {suffix: {file name: bytes}} (.mhd has its .raw)."""
    folder = tmp_path_factory.mktemp("valid")
    vol = Volume(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), spacing=(1.0, 2.0, 3.0))
    out = {}
    for suffix in SUFFIXES:
        if suffix == ".mhd":  # the project writes no .mhd: SimpleITK writes the header and its .raw
            import SimpleITK as sitk

            sitk.WriteImage(sitk.GetImageFromArray(vol.data), str(folder / "v.mhd"))
        path = folder / f"v{suffix}" if suffix == ".mhd" else write_volume(vol, folder / f"v{suffix}")
        out[suffix] = {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith("v.") and
                       (p == path or (suffix == ".mhd" and p.suffix == ".raw"))}
    return out


@FUZZ
@given(data=st.data())
def test_readers_fail_only_with_project_errors(tmp_path, valid_files, data):
    suffix = data.draw(st.sampled_from(SUFFIXES))
    case = Path(tempfile.mkdtemp(dir=tmp_path))
    files = valid_files[suffix]
    target = data.draw(st.sampled_from(sorted(files)))
    for name, content in files.items():
        (case / name).write_bytes(mutate(content, data.draw) if name == target else content)
    try:
        read_volume(case / f"v{suffix}")
    except MedgenError:
        pass


@FUZZ
@given(data=st.data())
def test_random_bytes_under_any_suffix(tmp_path, data):
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / f"r{data.draw(st.sampled_from(SUFFIXES + ['.dcm']))}"
    path.write_bytes(data.draw(st.binary(min_size=1, max_size=600)))
    try:
        read_volume(path)
    except MedgenError:
        pass


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A small label_vae model saved through the store (the same path as the shipped models)."""
    from napari_medgen.models.label_vae import DEFAULT_NETWORK, build_label_vae

    network = {**DEFAULT_NETWORK, "n_classes": 3, "slice_shape": [16, 16], "latent_size": 4, "channels": [4, 4],
               "strides": [2, 2]}
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(path, {"model": build_label_vae(network)}, {"family": "label_vae", "network": network})
    return path


@FUZZ
@given(data=st.data())
def test_model_cards_and_weights_fail_only_with_project_errors(tmp_path, tiny_model, data):
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    weights = tiny_model.with_suffix(".safetensors").read_bytes()
    what = data.draw(st.sampled_from(["card value", "card bytes", "weights"]))
    case = Path(tempfile.mkdtemp(dir=tmp_path)) / "m"
    if what == "card value":
        section = card["network"] if data.draw(st.booleans()) else card
        section[data.draw(st.sampled_from(sorted(section)))] = data.draw(plain)
        text = json.dumps(card).encode()
    else:
        text = json.dumps(card).encode()
        text = mutate(text, data.draw) if what == "card bytes" else text
        weights = mutate(weights, data.draw) if what == "weights" else weights
    case.with_suffix(".json").write_bytes(text)
    case.with_suffix(".safetensors").write_bytes(weights)
    try:
        load_card(case)
        load_model(case)
    except MedgenError:
        pass


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "b")


@FUZZ
@given(data=st.data())
def test_bundles_fail_only_with_project_errors(tmp_path, tiny_bundle, data):
    case = Path(tempfile.mkdtemp(dir=tmp_path)) / "b"
    shutil.copytree(tiny_bundle, case)
    what = data.draw(st.sampled_from(["network value", "scheduler value", "config bytes", "metadata", "weights"]))
    config_path = case / "configs" / "inference.json"
    if what.endswith("value"):
        config = json.loads(config_path.read_text())
        section = config["network_def" if what.startswith("network") else "scheduler"]
        section[data.draw(st.sampled_from(sorted(section)))] = data.draw(plain)
        config_path.write_text(json.dumps(config))
    else:
        path = {"config bytes": config_path, "metadata": case / "configs" / "metadata.json",
                "weights": case / "models" / "model.pt"}[what]
        path.write_bytes(mutate(path.read_bytes(), data.draw))
    try:
        load_bundle(case)
    except MedgenError:
        pass


def torch_load_calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == "load" and isinstance(n.func.value, ast.Name) and n.func.value.id == "torch"]


def test_every_torch_load_uses_weights_only():
    unsafe, calls = [], 0
    for path in sorted([*ROOT.glob("src/**/*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("benchmarks/*.py")]):
        for call in torch_load_calls(ast.parse(path.read_text(encoding="utf-8"))):
            calls += 1
            kw = {k.arg: k.value for k in call.keywords}
            if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                unsafe.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert calls >= 2  # the checkpoint and bundle loaders at least
    assert unsafe == [], f"torch.load without weights_only=True: {unsafe}"
    bad = ast.parse("torch.load(f)\ntorch.load(f, weights_only=False)")
    assert len(torch_load_calls(bad)) == 2  # the check sees plain calls


def test_pickled_checkpoint_is_refused(tmp_path):
    """The loader used for checkpoints refuses pickled objects (weights_only) instead of running them."""
    from napari_medgen.training.checkpoint import load_checkpoint

    path = tmp_path / "ckpt-1.pt"
    torch.save({"format": 1, "step": 1, "trainer": {"x": np.float64}, "rng": {}}, path)
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint(path)
