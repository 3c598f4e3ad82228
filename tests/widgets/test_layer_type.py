"""Image <-> Labels override dock: same name, position, geometry and metadata; label dtype rules."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.io.layers import volume_to_layer
from napari_medgen.io.readers import read_volume
from napari_medgen.io.volume import Volume
from napari_medgen.napari_io import write_labels

pytestmark = pytest.mark.gui


def _add(viewer, vol: Volume, name: str, oblique="resample"):
    data, kwargs, kind = volume_to_layer(vol, name, oblique=oblique)
    return (viewer.add_labels if kind == "labels" else viewer.add_image)(data, **kwargs)


def _permuted_volume(data: np.ndarray) -> Volume:
    direction = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    return Volume(data, (0.7, 1.3, 3.0), (10.0, -20.0, 30.0), direction, metadata={"study": "x"})


def test_image_to_labels_and_back(make_napari_viewer, tmp_path):
    from napari.layers import Image, Labels

    from napari_medgen.widgets.layer_type import LayerTypeWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 2, 2)), name="first")
    values = np.random.default_rng(0).integers(0, 5, (4, 5, 6)).astype(np.float32)
    image = _add(viewer, _permuted_volume(values), "scan")
    viewer.add_image(np.zeros((2, 2, 2)), name="last")
    viewer.layers.selection.active = image
    widget = LayerTypeWidget(viewer)
    assert widget.button.text() == "Convert to Labels"
    scale, translate = tuple(image.scale), tuple(image.translate)

    labels = widget.convert()
    assert isinstance(labels, Labels) and labels.name == "scan"
    assert [layer.name for layer in viewer.layers] == ["first", "scan", "last"]
    assert np.issubdtype(labels.data.dtype, np.integer) and labels.data.dtype == np.uint8
    np.testing.assert_array_equal(labels.data, image.data)
    assert tuple(labels.scale) == pytest.approx(scale) and tuple(labels.translate) == pytest.approx(translate)
    assert labels.metadata["study"] == "x"
    assert widget.button.text() == "Convert to Image"

    # saving the converted layer restores the file's original orientation and keeps the label dtype
    data, state, _ = labels.as_layer_data_tuple()
    back = read_volume(write_labels(str(tmp_path / "scan_seg.nrrd"), data, state)[0])
    np.testing.assert_array_equal(back.data, values.astype(np.uint8))
    np.testing.assert_allclose(back.affine(), _permuted_volume(values).affine(), atol=1e-9)
    assert back.is_label

    image2 = widget.convert()
    assert isinstance(image2, Image) and image2.name == "scan"
    np.testing.assert_array_equal(image2.data, labels.data)
    assert len(viewer.layers) == 3


def test_non_integer_image_is_rounded_with_a_note(make_napari_viewer, monkeypatch):
    from napari_medgen.widgets import common
    from napari_medgen.widgets.layer_type import LayerTypeWidget

    shown = []
    monkeypatch.setattr(common, "show_info", shown.append)
    viewer = make_napari_viewer()
    points = viewer.add_points(np.zeros((1, 3)))
    widget = LayerTypeWidget(viewer)
    assert not widget.button.isEnabled() and widget.convert() is None  # a Points layer is selected
    layer = viewer.add_image(np.array([[[0.2, 1.7], [2.5, 300.4]]]), name="blurry")
    viewer.layers.selection.active = layer
    labels = widget.convert()
    assert points in viewer.layers
    assert labels.data.dtype == np.uint16
    np.testing.assert_array_equal(labels.data, [[[0, 2], [2, 300]]])
    assert any("rounded" in s for s in shown)


def test_oblique_affine_layer_keeps_affine(make_napari_viewer):
    from scipy.spatial.transform import Rotation

    from napari_medgen.widgets.layer_type import LayerTypeWidget

    viewer = make_napari_viewer()
    rot = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    vol = Volume(np.ones((3, 4, 5), np.uint8), (1.0, 2.0, 3.0), (1.0, 2.0, 3.0), rot, is_label=True)
    layer = _add(viewer, vol, "tilted", oblique="affine")
    viewer.layers.selection.active = layer
    before = layer.data_to_world((1, 2, 3))
    image = LayerTypeWidget(viewer).convert()
    np.testing.assert_allclose(image.data_to_world((1, 2, 3)), before, atol=1e-9)



def test_docks_from_the_plugin_menu(make_napari_viewer):
    from napari_medgen.widgets.layer_type import LayerTypeWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-medgen", "Image or labels")
    assert isinstance(widget, LayerTypeWidget)
