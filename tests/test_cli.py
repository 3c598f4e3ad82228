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
    text = (ROOT / "README.md").read_text()
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


@pytest.mark.parametrize("page", ["README.md", "docs/index.md", "docs/getting_started.md"])
def test_relative_links_point_to_files(page):
    path = ROOT / page
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text())
    local = [t for t in targets if "://" not in t]
    assert local, f"{page} links to nothing"
    missing = [t for t in local if not (path.parent / t).exists()]
    assert not missing, f"{page} links to missing files: {missing}"
