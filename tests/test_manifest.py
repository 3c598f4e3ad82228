"""The npe2 manifest validates, every python_name in it imports, and every widget docks."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import napari_medgen

MANIFEST = Path(napari_medgen.__file__).with_name("napari.yaml")
COMMANDS = yaml.safe_load(MANIFEST.read_text())["contributions"]["commands"]
WIDGETS = yaml.safe_load(MANIFEST.read_text())["contributions"]["widgets"]


def test_npe2_validate_passes():
    done = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST)], capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


def test_installed_plugin_uses_this_manifest():
    import npe2

    manifest = npe2.PluginManifest.from_distribution("napari-medgen")
    assert {c.id for c in manifest.contributions.commands} == {c["id"] for c in COMMANDS}


@pytest.mark.parametrize("python_name", [c["python_name"] for c in COMMANDS], ids=[c["id"] for c in COMMANDS])
def test_python_name_imports(python_name):
    module, attr = python_name.split(":")
    assert callable(getattr(importlib.import_module(module), attr))


@pytest.mark.gui
@pytest.mark.parametrize("display_name", [w["display_name"] for w in WIDGETS])
def test_widget_docks_into_a_viewer(make_napari_viewer, display_name):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-medgen", display_name)
    assert widget is not None and display_name in dock.name
