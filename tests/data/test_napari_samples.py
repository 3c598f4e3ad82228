"""npe2 sample functions return LayerData with geometry, and open in napari."""

import numpy as np
import pytest

from napari_medgen import napari_samples
from napari_medgen.io.layers import layer_to_volume


def test_brain_layerdata_round_trips_geometry():
    (img, img_kw, img_kind), (lab, lab_kw, lab_kind) = napari_samples.brain_mri()
    assert (img_kind, lab_kind) == ("image", "labels")
    assert lab.dtype == np.uint8 and img_kw["scale"] == pytest.approx((2.0, 2.0, 2.0))
    vol = layer_to_volume(lab, lab_kw["scale"], lab_kw["translate"], metadata=lab_kw["metadata"], is_label=True)
    assert vol.data.shape == lab.shape and vol.spacing == pytest.approx((2.0, 2.0, 2.0))
    # napari world (z, y, x) = LPS mm: deep white matter at LPS (-10, 20, 30) = MNI RAS (10, -20, 30)
    k, j, i = np.round((np.array([30.0, 20.0, -10.0]) - lab_kw["translate"]) / lab_kw["scale"]).astype(int)
    assert lab[k, j, i] == 3
    assert img[k, j, i] > np.percentile(img[lab > 0], 75)


def test_phantom_layerdata():
    layers = napari_samples.thorax_phantom()
    assert [kind for *_, kind in layers] == ["image", "labels"]
    (img, kw, _), (lab, lkw, _) = layers
    assert img.shape == lab.shape == (64, 128, 128)
    assert kw["scale"] == lkw["scale"] == (5.0, 3.0, 3.0)  # (z, y, x) mm
    assert kw["translate"] == pytest.approx((-157.5, -190.5, -190.5))


def test_series_layerdata_is_4d():
    layers = napari_samples.phantom_series()
    assert len(layers) == 4
    for data, kw, _ in layers:
        assert data.ndim == 4 and len(kw["scale"]) == 4


@pytest.mark.gui
def test_samples_open_in_napari(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-medgen", "brain")
    viewer.open_sample("napari-medgen", "phantom")
    names = [layer.name for layer in viewer.layers]
    assert {"MNI152 T1", "MNI152 tissue", "phantom", "phantom labels"} <= set(names)
    assert type(viewer.layers["MNI152 tissue"]).__name__ == "Labels"
