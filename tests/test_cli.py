"""medgen CLI: the demo (headless files, viewer contents, the steps hook) and README/CI agreement."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_medgen.atomic import MARKER
from napari_medgen.cli import build_parser, main
from napari_medgen.cli import demo
from napari_medgen.io.readers import read_volume
from napari_medgen.io.volume import Volume

ROOT = Path(__file__).resolve().parents[1]


def readme_block(marker: str) -> str:
    """The command inside README's ```bash block between <!-- marker --> and <!-- /marker -->."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- {marker} -->\s*```bash\n(.*?)\n```\s*<!-- /{marker} -->", text, re.S)
    assert m, f"README.md has no {marker} block"
    return m.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command():
    printed = subprocess.run(["bash", str(ROOT / ".ci/run"), "--print"], capture_output=True, text=True, check=True)
    command = readme_block("tests-command")
    assert printed.stdout.strip() == command
    assert "pytest" in command and "xvfb-run" in command


def test_readme_first_command_runs_the_headless_demo():
    command = readme_block("demo-command")
    assert "pip install" in command and "medgen demo --out" in command


def test_parser_knows_every_command():
    parser = build_parser()
    args = parser.parse_args(["demo", "--out", "x"])
    assert args.func is demo.run and args.out == Path("x")


def test_steps_see_earlier_volumes_in_order():
    base = Volume(np.arange(24, dtype=np.float32).reshape(2, 3, 4))

    def first(volumes, *, device):
        return {"a": base}

    def second(volumes, *, device):
        assert list(volumes) == ["a"] and device == "cpu"
        return {"a doubled": volumes["a"].with_data(volumes["a"].data * 2)}

    out = demo.demo_volumes("cpu", [first, second])
    assert list(out) == ["a", "a doubled"]
    np.testing.assert_array_equal(out["a doubled"].data, base.data * 2)


def test_write_demo_writes_readable_nifti_and_montage(tmp_path, rng):
    image = Volume(rng.normal(size=(5, 6, 7)).astype(np.float32), spacing=(1.5, 2.0, 3.0), origin=(-4.0, 5.0, 6.0))
    labels = Volume(rng.integers(0, 3, (5, 6, 7)).astype(np.uint8), spacing=(1.5, 2.0, 3.0), is_label=True)
    paths = demo.write_demo({"scan": image, "scan labels": labels}, tmp_path / "out")
    assert [p.name for p in paths] == ["scan.nii.gz", "scan_labels.nii.gz", "montage.png"]
    back = read_volume(paths[1])
    assert back.is_label
    np.testing.assert_array_equal(back.data, labels.data)
    np.testing.assert_allclose(read_volume(paths[0]).origin, image.origin, atol=1e-5)
    png = paths[2].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > height > 100  # two panels side by side


def test_montage_captions_a_shipped_models_result_with_its_ledger_row(rng):
    from napari_medgen.models.store import load_card, shipped_models

    image = Volume(rng.normal(size=(4, 5, 6)).astype(np.float32))
    assert demo.ledger_caption(image) is None  # not made by a model
    for name, row in demo.MONTAGE_ROWS.items():  # each caption's row is in its shipped card's ledger
        path = shipped_models()[name]
        model_value, baseline_value = load_card(path)["metrics"]["ledger"][row]
        made = {"synthesis": {"model": str(path)}} if name.startswith("spade") else {"source": str(path)}
        caption = demo.ledger_caption(Volume(image.data, metadata=made))
        assert caption is not None and f": {model_value:.2f} | " in caption
        assert caption.endswith(f"{baseline_value:.2f}")
    assert demo.ledger_caption(Volume(image.data, metadata={"source": str(shipped_models()["gan_phantom"])})) is None


def test_headless_demo_writes_the_samples_without_napari(tmp_path):
    code = ("import sys; from napari_medgen.cli import main; rc = main(['demo', '--out', sys.argv[1]]); "
            "assert not {'napari', 'qtpy', 'PyQt6'} & set(sys.modules), 'the headless demo imported Qt/napari'; "
            "sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    names = {p.name for p in tmp_path.iterdir()} - {MARKER}  # the marker: a folder medgen may replace
    samples = {"brain.nii.gz", "brain_labels.nii.gz", "phantom.nii.gz", "phantom_labels.nii.gz", "montage.png"}
    assert samples <= names  # later demo steps add their results next to the samples
    assert all(n.endswith(".nii.gz") for n in names - {"montage.png"})
    assert len(done.stdout.split()) == len(names)  # it prints each file it wrote
    brain_labels = read_volume(tmp_path / "brain_labels.nii.gz")
    assert brain_labels.is_label and set(np.unique(brain_labels.data)) == {0, 1, 2, 3}
    phantom_labels = read_volume(tmp_path / "phantom_labels.nii.gz")
    assert set(np.unique(phantom_labels.data)) <= set(range(8)) and phantom_labels.data.max() >= 6
    drawn = read_volume(tmp_path / "phantom_3D_diffusion_sample.nii.gz")  # the shipped 3D diffusion model's sample
    assert not drawn.is_label and drawn.data.shape == (48, 48, 48) and np.isfinite(drawn.data).all()
    assert drawn.spacing == pytest.approx((8.0, 8.0, 20 / 3))  # the card's voxel size, mm


def test_gui_demo_without_display_says_what_to_do(monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["demo"]) == 2
    assert "--out DIR" in capsys.readouterr().err


@pytest.mark.gui
def test_viewer_gets_the_demo_layers_and_importable_widgets(make_napari_viewer):
    viewer = make_napari_viewer()
    volumes = {"image": Volume(np.zeros((3, 4, 5), np.float32)),
               "image labels": Volume(np.ones((3, 4, 5), np.uint8), is_label=True)}
    problems = demo.populate_viewer(viewer, volumes)
    kinds = {layer.name: type(layer).__name__ for layer in viewer.layers}  # docked widgets may add their own layers
    assert (kinds["image"], kinds["image labels"]) == ("Image", "Labels")
    names, _ = demo.importable_widgets()
    assert names, "no widget of the manifest imports"
    assert problems == []
    docked = [key for key in viewer.window._wrapped_dock_widgets if "napari-medgen" in key]
    assert len(docked) == len(names)


HEAVY = ("torch", "monai", "napari", "qtpy", "numpy", "scipy", "SimpleITK", "nibabel", "matplotlib")


def test_building_the_parser_and_every_help_imports_no_heavy_module():
    code = ("import sys, argparse; from napari_medgen.cli import build_parser; p = build_parser(); p.format_help()\n"
            "def walk(parser):\n"
            "    for a in parser._actions:\n"
            "        if isinstance(a, argparse._SubParsersAction):\n"
            "            for sub in a.choices.values(): sub.format_help(); walk(sub)\n"
            f"walk(p); print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == []


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """main(argv) -> (exit status, stderr), argparse's own exits included."""
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err


TRAIN = ["train", "spade", "--sample", "phantom", "--out", "m"]
BAD_INPUT = [
    ([*TRAIN, "--seed", str(2**70)], "--seed"),
    ([*TRAIN, "--seed", "-1"], "--seed"),
    ([*TRAIN, "--batch-size", "0"], "--batch-size"),
    ([*TRAIN, "--lr", "nan"], "--lr"),
    ([*TRAIN, "--lr", "inf"], "--lr"),
    ([*TRAIN, "--lr", "0"], "--lr"),
    ([*TRAIN, "--steps", "-5"], "--steps"),
    ([*TRAIN, "--keep", "0"], "--keep"),
    ([*TRAIN[:-1], "afile"], "--overwrite"),  # --out m over an existing file afile.json
    (["demo", "--out", "afile.json"], "is a file"),
    (["phantom", "--out", "afile.json"], "is a file"),
    (["phantom", "--out", "d", "--shape", "0", "8", "8"], "--shape"),
    (["phantom", "--out", "d", "--noise", "nan"], "--noise"),
    (["phantom", "--out", "d", "--seed", "99999999999999999999"], "--seed"),
    (["deform", "--labels", "l.nii.gz", "--method", "elastic", "--out", "afile.json"], "--overwrite"),
    (["deform", "--labels", "l.nii.gz", "--method", "elastic", "--out", "."], "is a folder"),
    (["deform", "--labels", "l.nii.gz", "--method", "affine", "--scale", "1e308", "--out", "o.nii.gz"], "--scale"),
    (["directions", "apply", "--model", "vae_brain", "--move", "0=nan", "--out", "o.nii.gz"], "ALPHA"),
    (["directions", "apply", "--model", "vae_brain", "--move", "0=1e308", "--out", "o.nii.gz"], "ALPHA"),
    (["directions", "apply", "--model", "vae_brain", "--move", "zero", "--out", "o.nii.gz"], "K=ALPHA"),
    (["--threads", "0", "info", "x"], "--threads"),
    (["evaluate", "--real", "a", "--synthetic", "b", "--threshold", "-inf"], "--threshold"),
]


@pytest.mark.parametrize("argv, named", BAD_INPUT, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_is_one_plain_line_and_a_failure_status(argv, named, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile.json").write_text("{}")
    status, err = run_cli(argv, capsys)
    assert status == 2 and named in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.json"]  # nothing written


def test_the_documented_set_form_parses():
    from napari_medgen.training.config import parse_settings

    assert parse_settings(["channels=[8,16]", "lr_d=2e-4"]) == {"channels": [8, 16], "lr_d": 2e-4}


def test_a_full_or_read_only_disk_is_one_plain_line_naming_the_path(tmp_path, monkeypatch, capsys):
    import errno
    import tempfile

    def refused(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    monkeypatch.setattr(tempfile, "mkdtemp", refused)
    status, err = run_cli(["phantom", "--out", str(tmp_path / "d"), "--shape", "1", "24", "24"], capsys)
    assert status == 2 and "read-only" in err and str(tmp_path / "d") in err and len(err.strip().splitlines()) == 1
    monkeypatch.undo()

    def full(vol, path):
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 401984 vs 401872")

    monkeypatch.setattr("napari_medgen.io.writers.write_nifti", full)
    monkeypatch.setattr("shutil.disk_usage", lambda path: shutil_usage(free=0))
    status, err = run_cli(["phantom", "--out", str(tmp_path / "d"), "--shape", "1", "24", "24"], capsys)
    assert status == 2 and "disk is full" in err and str(tmp_path / "d") in err and "unexpected pos" not in err
    assert not (tmp_path / "d").exists() or [p.name for p in (tmp_path / "d").iterdir()] == []


def shutil_usage(free: int):
    import shutil

    return shutil._ntuple_diskusage(10**9, 10**9 - free, free)


def test_demo_says_what_it_does_and_replaces_an_earlier_demo_only_with_overwrite(tmp_path, monkeypatch, capsys):
    def samples(volumes, *, device):
        """The shipped samples: here one tiny volume."""
        return {"scan": Volume(np.zeros((2, 3, 4), np.float32))}

    def doubled(volumes, *, device):
        """``medgen demo`` step: the scan doubled. More words."""
        return {"scan doubled": volumes["scan"].with_data(volumes["scan"].data * 2)}

    monkeypatch.setattr(demo, "DEMO_STEPS", [samples, doubled])
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("medgen demo: making the demo volumes") and str(out) in err[0]
    assert err[1:] == ["medgen demo: The shipped samples: here one tiny volume ...", err[2],
                       "medgen demo: the scan doubled ...", err[4]]
    assert err[2].startswith("medgen demo:   scan (") and err[4].startswith("medgen demo:   scan doubled (")
    (out / "stale.nii.gz").write_bytes(b"from an older demo")
    assert main(["--quiet", "demo", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "stale.nii.gz").exists()
    assert main(["--quiet", "demo", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "montage.png", "scan.nii.gz", "scan_doubled.nii.gz"]
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def names_calls() -> list[tuple[str, str]]:
    """(module, constant) of every ``options.names(...)`` call in the CLI's modules (literal or module-level str)."""
    import ast

    found = set()
    for path in sorted((ROOT / "src/napari_medgen/cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
                  for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "names" and len(node.args) == 2:
                args = [a.value if isinstance(a, ast.Constant) else consts.get(getattr(a, "id", None)) for a in node.args]
                found.add(tuple(args))
    return sorted(found)


@pytest.mark.parametrize("module, constant", names_calls())
def test_choice_lists_read_without_import_equal_the_modules_values(module, constant):
    import importlib

    from napari_medgen.cli.options import names

    assert names(module, constant) == tuple(getattr(importlib.import_module(module), constant))
