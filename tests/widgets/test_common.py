"""add_volume / layer_to_volume_of keep geometry; in-place updates; notes; placeholders; ProgressPanel states."""

from __future__ import annotations

import numpy as np
import pytest

import napari_medgen.widgets.common as common
from napari_medgen.io.volume import Volume
from napari_medgen.progress import Progress
from napari_medgen.widgets.common import ProgressPanel, add_volume, layer_to_volume_of, show_placeholder

pytestmark = pytest.mark.gui


def flipped_volume(rng: np.random.Generator, is_label: bool = False) -> Volume:
    """(5, 6, 7) volume with a flipped, permuted direction and anisotropic spacing."""
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    data = rng.integers(0, 4, (5, 6, 7)).astype(np.uint8) if is_label else rng.normal(size=(5, 6, 7)).astype(np.float32)
    return Volume(data, spacing=(0.7, 1.3, 2.5), origin=(10.0, -20.0, 30.5), direction=direction, is_label=is_label)


@pytest.mark.parametrize("is_label", [False, True])
def test_round_trip_through_a_layer_keeps_array_and_geometry(make_napari_viewer, rng, is_label):
    viewer = make_napari_viewer()
    vol = flipped_volume(rng, is_label)
    layer = add_volume(viewer, vol, "scan")
    assert type(layer).__name__ == ("Labels" if is_label else "Image")
    back = layer_to_volume_of(layer)
    assert back.is_label == is_label
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-5)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-5)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-5)


def test_voxel_lands_at_its_physical_point(make_napari_viewer, rng):
    viewer = make_napari_viewer()
    vol = flipped_volume(rng)
    layer = add_volume(viewer, vol, "scan")
    ijk = np.array([3.0, 4.0, 2.0])
    world_zyx = vol.index_to_physical(ijk)[::-1]
    data_idx = np.round(layer.world_to_data(world_zyx)).astype(int)
    assert layer.data[tuple(data_idx)] == vol.data[2, 4, 3]


def test_existing_layer_is_updated_in_place(make_napari_viewer, rng):
    viewer = make_napari_viewer()
    first = add_volume(viewer, Volume(rng.uniform(0, 1, (3, 4, 5)).astype(np.float32)), "result")
    newer = rng.uniform(10, 20, (3, 4, 5)).astype(np.float32)
    second = add_volume(viewer, Volume(newer, spacing=(2.0, 2.0, 4.0)), "result")
    assert second is first and len(viewer.layers) == 1
    np.testing.assert_array_equal(first.data, newer)
    assert tuple(first.scale) == (4.0, 2.0, 2.0)
    np.testing.assert_allclose(first.contrast_limits, np.percentile(newer, (0.5, 99.5)), rtol=1e-5)  # io.layers.display_window


def test_update_with_same_geometry_does_not_reset_it(make_napari_viewer, rng):
    """A preview replaced by the next one re-slices once: unchanged scale/translate/affine are not set."""
    viewer = make_napari_viewer()
    layer = add_volume(viewer, Volume(rng.uniform(0, 1, (3, 4, 5)).astype(np.float32), spacing=(2.0, 2.0, 4.0)), "p")
    changes: list[str] = []
    for name in ("scale", "translate", "affine"):
        getattr(layer.events, name).connect(lambda e, name=name: changes.append(name))
    add_volume(viewer, Volume(rng.uniform(0, 1, (3, 4, 5)).astype(np.float32), spacing=(2.0, 2.0, 4.0)), "p")
    assert changes == []
    add_volume(viewer, Volume(rng.uniform(0, 1, (3, 4, 5)).astype(np.float32), spacing=(1.0, 2.0, 4.0)), "p")
    assert "scale" in changes and tuple(layer.scale) == (4.0, 2.0, 1.0)


def test_kind_change_replaces_layer_at_same_position(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 2)), name="first")
    add_volume(viewer, Volume(np.zeros((3, 4, 5), np.float32)), "seg")
    viewer.add_image(np.zeros((2, 2)), name="last")
    layer = add_volume(viewer, Volume(np.ones((3, 4, 5), np.uint8), is_label=True), "seg")
    assert type(layer).__name__ == "Labels"
    assert [lay.name for lay in viewer.layers] == ["first", "seg", "last"]


def test_notes_are_shown_once(make_napari_viewer, monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(common, "show_info", shown.append)
    viewer = make_napari_viewer()
    vol = Volume(np.zeros((3, 4, 5), np.float32), metadata={"notes": ["3 NaN voxels were replaced by 0"]})
    add_volume(viewer, vol, "scan")
    add_volume(viewer, vol, "scan")
    assert shown == ["scan: 3 NaN voxels were replaced by 0"]


def test_time_series_gets_a_time_axis(make_napari_viewer):
    viewer = make_napari_viewer()
    vol = Volume(np.zeros((4, 3, 5, 6), np.float32), spacing=(1.0, 1.0, 2.0), metadata={"time_spacing": 30.0})
    layer = add_volume(viewer, vol, "series")
    assert layer.ndim == 4 and tuple(layer.scale) == (30.0, 2.0, 1.0, 1.0)
    assert layer_to_volume_of(layer).data.shape == (4, 3, 5, 6)


def test_points_layer_is_refused(make_napari_viewer):
    viewer = make_napari_viewer()
    points = viewer.add_points(np.zeros((1, 3)))
    with pytest.raises(TypeError, match="not an image or labels"):
        layer_to_volume_of(points)


def stack(n: int, value: float = 0.0) -> Volume:
    """(n, 1, 8, 8) time series: a 2D model's n samples."""
    return Volume(np.full((n, 1, 8, 8), value, np.float32), spacing=(2.0, 2.0, 5.0))


def test_placeholder_grows_to_all_frames_in_the_next_turn(make_napari_viewer, qtbot):
    """The first frame as a 3D layer (the viewer keeps its dimensions), all frames one event-loop turn later."""
    viewer = make_napari_viewer()
    add_volume(viewer, Volume(np.zeros((4, 8, 8), np.float32)), "scan")
    show_placeholder(viewer, stack(3), "samples")
    layer = viewer.layers["samples"]
    assert layer.data.shape == (1, 8, 8) and viewer.dims.ndim == 3
    qtbot.waitUntil(lambda: layer.data.shape == (3, 1, 8, 8), timeout=2000)
    assert viewer.layers["samples"] is layer and tuple(layer.scale) == (1.0, 5.0, 2.0, 2.0)
    assert viewer.dims.ndim == 4


@pytest.mark.parametrize("is_label", [False, True])
def test_update_across_dimensions_keeps_the_layer_and_places_it_like_a_new_one(make_napari_viewer, rng, is_label):
    viewer = make_napari_viewer()
    vol = flipped_volume(rng, is_label)  # oblique: an affine, not only scale and translate
    series = Volume(np.stack([vol.data, vol.data]), spacing=vol.spacing, origin=vol.origin, direction=vol.direction,
                    is_label=is_label)
    layer = add_volume(viewer, vol, "scan")
    for now in (series, vol):  # 3D -> 4D, then back to 3D
        assert add_volume(viewer, now, "scan") is layer and len(viewer.layers) == 1
        fresh = add_volume(viewer, now, "fresh")
        assert layer.ndim == now.data.ndim and layer.data.shape == fresh.data.shape
        for key in ("scale", "translate"):
            np.testing.assert_allclose(getattr(layer, key), getattr(fresh, key))
        np.testing.assert_allclose(layer.affine.affine_matrix, fresh.affine.affine_matrix)
        back = layer_to_volume_of(layer)
        np.testing.assert_allclose(back.direction, vol.direction, atol=1e-5)
        np.testing.assert_allclose(back.origin, vol.origin, atol=1e-5)
        viewer.layers.remove("fresh")


def test_placeholder_never_overwrites_a_result_or_revives_a_removed_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    show_placeholder(viewer, stack(3), "samples")
    add_volume(viewer, stack(3, 7.0), "samples")  # a preview arrives before the placeholder's second turn
    show_placeholder(viewer, stack(2), "gone")
    viewer.layers.remove("gone")
    qtbot.wait(50)
    assert float(viewer.layers["samples"].data.min()) == 7.0
    assert "gone" not in viewer.layers


def test_progress_panel_states(qtbot):
    class FakeHandle:
        name, running, cancelled = "job", True, False

        def cancel(self):
            self.cancelled = True

    panel = ProgressPanel()
    qtbot.addWidget(panel)
    assert not panel.cancel_button.isEnabled() and not panel.busy
    handle = FakeHandle()
    panel.attach(handle)
    assert panel.cancel_button.isEnabled()
    panel.show_progress(Progress(3, 10, "denoising", metrics={"loss": 0.5}))
    assert (panel.bar.value(), panel.bar.maximum()) == (3, 10)
    assert "denoising" in panel.status.text() and "loss=0.5" in panel.status.text()
    panel.cancel_button.click()
    assert handle.cancelled and not panel.cancel_button.isEnabled()
    panel.finish("cancelled")
    assert "cancelled" in panel.status.text() and panel.bar.value() == 0


def test_warm_up_imports_each_module_once_in_a_background_thread(monkeypatch, make_napari_viewer):
    import sys

    from napari_medgen.widgets import warmup

    make_napari_viewer()  # napari's activity dock exists (the first warm-up makes and closes one bar)
    name = "napari_medgen.data.samples"
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(warmup, "_requested", set())
    thread = warmup.warm_up((name, "json"))  # json is imported already: only the other is new
    assert thread is not None and thread.name == "medgen-warm-up"
    thread.join(30)
    assert name in sys.modules and not warmup.warming()
    assert warmup.warm_up((name,)) is None  # requested before: nothing new
    assert warmup.warm_up(()) is None
