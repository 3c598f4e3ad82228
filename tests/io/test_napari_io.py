"""npe2 reader and writers: which paths are claimed, LayerData built by io.layers, saving, errors, manifest."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from napari_medgen.errors import ReadError
from napari_medgen.io.readers import read_volume
from napari_medgen.io.volume import Volume
from napari_medgen.io.writers import write_volume
from napari_medgen.napari_io import get_reader, read_layers, write_image, write_labels

from .helpers import CASES, lps_affine, pydicom_file, write_dicom_series


def _labels_volume() -> Volume:
    direction, spacing = CASES["permuted"]
    data = np.zeros((5, 6, 7), np.uint16)
    data[1:3, 2:5, 3:6] = 300
    return Volume(data, spacing, (10.0, -20.0, 30.0), direction, is_label=True)


def test_reader_claims_supported_files(tmp_path):
    for name in ["a.nii", "a.nii.gz", "a.nrrd", "a.nhdr", "a.mha", "a.mhd", "a.dcm"]:
        assert get_reader(str(tmp_path / name)) is read_layers, name
    assert get_reader(pydicom_file("CT_small.dcm")) is read_layers
    assert get_reader([str(tmp_path / "a.nii"), str(tmp_path / "b.nrrd")]) is read_layers


def test_reader_declines_other_paths(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt").write_text("x")
    assert get_reader(str(tmp_path / "photo.png")) is None
    assert get_reader(str(tmp_path / "plain")) is None
    assert get_reader([str(tmp_path / "a.nii"), str(tmp_path / "photo.png")]) is None


def test_reader_claims_dicom_folder(tmp_path):
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5) % 7  # few integer values: still an image (DICOM)
    folder = write_dicom_series(tmp_path / "s", data, lps_affine(np.eye(3), (1, 1, 2)))
    assert get_reader(str(folder)) is read_layers
    (data, kwargs, kind), = read_layers(str(folder))
    assert kind == "image" and data.shape == (3, 4, 5) and kwargs["name"] == "s"


def test_read_layers_uses_volume_geometry(tmp_path):
    path = write_volume(_labels_volume(), tmp_path / "heart_seg.nii.gz")
    (data, kwargs, kind), = read_layers(str(path))
    assert kind == "labels" and data.dtype == np.uint16
    assert kwargs["name"] == "heart_seg"
    canonical = read_volume(path)
    # permuted direction: napari gets an identity-direction array, the reorientation is remembered
    assert "medgen_reorient" in kwargs["metadata"]
    assert sorted(kwargs["scale"]) == sorted(canonical.spacing)
    assert kwargs["metadata"]["source"] == str(path)


def test_reader_error_is_read_error(tmp_path):
    (tmp_path / "empty.nii").write_bytes(b"")
    reader = get_reader(str(tmp_path / "empty.nii"))
    with pytest.raises(ReadError, match="empty.nii"):
        reader(str(tmp_path / "empty.nii"))


def test_reader_shows_notes(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_info", shown.append)
    direction, spacing = CASES["oblique"]
    path = write_volume(Volume(np.random.default_rng(0).random((4, 5, 6)), spacing, (0, 0, 0), direction),
                        tmp_path / "tilted.nrrd")
    read_layers(str(path))
    assert any("resampled" in s for s in shown)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".nii"])
def test_writers_round_trip_through_layer_state(tmp_path, suffix):
    from napari.layers import Image, Labels

    vol = _labels_volume()
    (data, kwargs, kind), = read_layers(str(write_volume(vol, tmp_path / f"in_seg{suffix}")))
    layer = Labels(data, **kwargs)
    ldata, state, _ = layer.as_layer_data_tuple()
    out = write_labels(str(tmp_path / f"out{suffix}"), ldata, state)
    back = read_volume(out[0])
    assert back.is_label and back.data.dtype == np.uint16
    np.testing.assert_array_equal(back.data, vol.data)  # original orientation restored on save
    np.testing.assert_allclose(back.affine(), vol.affine(), atol=1e-5)

    image = Image(data.astype(np.float32), **kwargs)
    idata, istate, _ = image.as_layer_data_tuple()
    back = read_volume(write_image(str(tmp_path / f"img{suffix}"), idata, istate)[0])
    assert not back.is_label and back.data.dtype == np.float32
    np.testing.assert_allclose(back.affine(), vol.affine(), atol=1e-5)


def test_writer_oblique_affine_layer(tmp_path):
    from napari.layers import Image

    from napari_medgen.io.layers import volume_to_layer

    direction, spacing = CASES["oblique"]
    vol = Volume(np.random.default_rng(1).random((4, 5, 6)).astype(np.float32), spacing, (5, 6, 7), direction)
    data, kwargs, _ = volume_to_layer(vol, oblique="affine")
    idata, state, _ = Image(data, **kwargs).as_layer_data_tuple()
    back = read_volume(write_image(str(tmp_path / "o.nii.gz"), idata, state)[0])
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.affine(), vol.affine(), atol=1e-5)


def test_npe2_validate():
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-medgen"], capture_output=True,
                            encoding="utf-8", errors="replace", timeout=120, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifest_points_at_these_functions():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-medgen")
    names = {c.id: c.python_name for c in manifest.contributions.commands}
    assert names["napari-medgen.get_reader"] == "napari_medgen.napari_io:get_reader"
    assert names["napari-medgen.write_labels"] == "napari_medgen.napari_io:write_labels"
    assert names["napari-medgen.write_image"] == "napari_medgen.napari_io:write_image"


@pytest.mark.gui
def test_viewer_open_and_save(make_napari_viewer, tmp_path):
    import napari

    viewer = make_napari_viewer()
    vol = _labels_volume()
    path = write_volume(vol, tmp_path / "liver_mask.nrrd")
    layer, = viewer.open(str(path), plugin="napari-medgen")
    assert layer.__class__.__name__ == "Labels"
    idx = np.argwhere(layer.data == 300)[0]
    ijk = np.argwhere(vol.data == 300)  # (z, y, x) rows of the original array
    world_lps = np.asarray(layer.data_to_world(idx))[::-1]
    phys = vol.index_to_physical(ijk[:, ::-1].astype(float))
    assert np.min(np.linalg.norm(phys - world_lps, axis=1)) < 1e-6

    out = tmp_path / "saved.nii.gz"
    napari.save_layers(str(out), [layer], plugin="napari-medgen")
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, vol.data)
    assert back.data.dtype == np.uint16 and back.is_label

    (tmp_path / "zero.nii.gz").write_bytes(b"")
    with pytest.raises(ReadError, match="zero.nii.gz': the file is empty"):
        viewer.open(str(tmp_path / "zero.nii.gz"), plugin="napari-medgen")
    assert len(viewer.layers) == 1


def test_writer_folds_napari_rotate_into_geometry(tmp_path):
    from napari.layers import Image

    layer = Image(np.random.default_rng(2).random((4, 5, 6)).astype(np.float32), scale=(3.0, 2.0, 1.0),
                  translate=(10.0, 20.0, 30.0), rotate=30)
    data, state, _ = layer.as_layer_data_tuple()
    back = read_volume(write_image(str(tmp_path / "rot.nrrd"), data, state)[0])
    idx = np.array([3.0, 2.0, 1.0])  # data index (z, y, x)
    expected_world = np.asarray(layer.data_to_world(idx))
    np.testing.assert_allclose(back.index_to_physical(idx[::-1])[::-1], expected_world, atol=1e-6)
    assert back.spacing == pytest.approx((1.0, 2.0, 3.0))


def test_writer_refuses_rgb(tmp_path):
    from napari.layers import Image

    from napari_medgen.errors import WriteError

    data, state, _ = Image(np.zeros((5, 6, 3), np.uint8), rgb=True).as_layer_data_tuple()
    with pytest.raises(WriteError, match="RGB"):
        write_image(str(tmp_path / "rgb.nii.gz"), data, state)
    assert not (tmp_path / "rgb.nii.gz").exists()


# --- display contrast: a clinical window, never min-max ------------------------------------------

def _ct(lung_fraction: float, seed: int = 0):
    """A CT-like volume in HU: air outside, soft tissue (40 HU) with a lung share, bone (1500) and a
    -1024..3071 range (the scanner's full range, which min-max would show)."""
    from napari_medgen.io.volume import Volume

    rng = np.random.default_rng(seed)
    data = np.full((8, 64, 64), -1024.0, np.float32)
    body = np.zeros(data.shape, bool)
    body[:, 8:56, 8:56] = True
    tissue = rng.normal(40, 20, data.shape).astype(np.float32)
    lung = rng.random(data.shape) < lung_fraction
    data[body] = np.where(lung[body], -800.0, tissue[body])
    data[:, 30:34, 30:34] = 1500.0
    data[0, 0, 0] = 3071.0
    return Volume(data, (0.8, 0.8, 2.0))


def test_ct_opens_with_a_ct_window_and_mr_with_a_percentile_window(tmp_path):
    from napari_medgen.io.layers import LUNG_WINDOW, SOFT_TISSUE_WINDOW, volume_to_layer
    from napari_medgen.io.volume import Volume
    from napari_medgen.io.writers import write_volume
    from napari_medgen.napari_io import read_layers

    _, kw, _ = volume_to_layer(_ct(0.0))
    assert kw["contrast_limits"] == SOFT_TISSUE_WINDOW and kw["metadata"]["display_window"] == "CT soft tissue"
    write_volume(_ct(0.4), tmp_path / "chest.nii.gz")
    (_, kw, kind), = read_layers(str(tmp_path / "chest.nii.gz"))
    assert kind == "image" and kw["contrast_limits"] == LUNG_WINDOW  # the reader's layer, not min-max
    rng = np.random.default_rng(1)
    mr = rng.gamma(2.0, 100.0, (8, 64, 64)).astype(np.float32)
    mr[0, 0, :5] = 50_000.0  # a few hot voxels: min-max would grey out the whole image
    _, kw, _ = volume_to_layer(Volume(mr))
    lo, hi = kw["contrast_limits"]
    np.testing.assert_allclose((lo, hi), np.percentile(mr, (0.5, 99.5)), rtol=0.05)
    assert hi < 0.1 * mr.max() and kw["metadata"]["display_window"] == "percentile 0.5-99.5"
    _, kw, _ = volume_to_layer(Volume(np.zeros((2, 4, 4), np.float32)))  # a blank placeholder: napari decides
    assert "contrast_limits" not in kw
    _, kw, _ = volume_to_layer(Volume(np.ones((2, 4, 4), np.uint8), is_label=True))
    assert "contrast_limits" not in kw
