"""The Longitudinal result's layers: prepared in the worker, shown in small Qt turns, geometry as add_volume's."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.io.volume import Volume
from napari_medgen.tasks.followup import FollowUps, FrameDifference

SHAPE = (4, 6, 10, 12)  # t, z, y, x


def _result(direction: np.ndarray) -> FollowUps:
    rng = np.random.default_rng(0)
    image = rng.normal(-300.0, 200.0, SHAPE).astype(np.float32)
    image[1:, 2:4, 3:6, 4:8] += np.arange(1, SHAPE[0])[:, None, None, None] * 50.0  # a change growing with t
    labels = (image > -300).astype(np.uint8)
    geometry = dict(spacing=(0.8, 0.9, 2.5), origin=(10.0, -20.0, 30.0), direction=direction)
    meta = {"time_spacing": 3.0, "time_unit": "months", "times": [0.0, 3.0, 6.0, 9.0], "notes": ["a note"]}
    return FollowUps(Volume(image, is_label=False, metadata=dict(meta), **geometry),
                     Volume(labels, is_label=True, metadata=dict(meta), **geometry), [1.0] * 4, meta["times"], [])


FLIPPED = np.diag([-1.0, 1.0, -1.0])
c, s = np.cos(0.3), np.sin(0.3)
OBLIQUE = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _geometry(layer) -> list[np.ndarray]:
    return [np.asarray(layer.scale), np.asarray(layer.translate), np.asarray(layer.affine.affine_matrix)]


@pytest.mark.parametrize("direction", [np.eye(3), FLIPPED, OBLIQUE], ids=["identity", "flipped", "oblique"])
def test_layers_keep_add_volume_geometry_and_read_no_data_on_the_qt_thread(make_napari_viewer, qtbot, monkeypatch,
                                                                          direction):
    """Every layer has the geometry add_volume gives the result's volumes; the Qt turns never call
    volume_to_layer (reorientation, resampling, display window) and the difference map is lazy."""
    from napari_medgen.widgets import common
    from napari_medgen.widgets import followup_layers as fl

    result = _result(direction)
    reference = make_napari_viewer()
    for vol, name in ((result.image, fl.OUTPUT), (result.labels, fl.LABELS), (result.image.frame(3), fl.AT_T)):
        common.add_volume(reference, vol, name)
    prepared = fl.prepare(result)  # the worker's part

    def refuse(*args, **kwargs):
        raise AssertionError("volume_to_layer called on the Qt thread")

    monkeypatch.setattr(common, "volume_to_layer", refuse)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((6, 10, 12), np.float32), name="user's layer")
    steps = fl.result_steps(viewer, prepared, (-500.0, 100.0))
    assert len(steps) == 6  # new series: its first frame (3D) first, grown to 4D in the next turn; activation
    done = []
    fl.show_in_turns(viewer, [*steps, lambda: done.append(True)])
    qtbot.waitUntil(lambda: bool(done), timeout=20000)

    assert [lay.name for lay in viewer.layers] == ["user's layer", fl.OUTPUT, fl.LABELS, fl.DIFFERENCE, fl.AT_T]
    assert viewer.layers[fl.OUTPUT].ndim == 4 and viewer.layers[fl.LABELS].ndim == 4
    for name in (fl.OUTPUT, fl.LABELS, fl.AT_T):
        for got, want in zip(_geometry(viewer.layers[name]), _geometry(reference.layers[name]), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-9, err_msg=name)
    for got, want in zip(_geometry(viewer.layers[fl.DIFFERENCE]), _geometry(reference.layers[fl.AT_T]), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9)
    series = np.asarray(reference.layers[fl.OUTPUT].data)
    np.testing.assert_array_equal(np.asarray(viewer.layers[fl.OUTPUT].data), series)
    # the follow-up at t is the series layer's frame (an oblique frame resampled alone would pad with its own minimum)
    np.testing.assert_array_equal(np.asarray(viewer.layers[fl.AT_T].data), series[3])

    diff = viewer.layers[fl.DIFFERENCE]
    assert isinstance(diff.data, FrameDifference)  # lazy: napari computes the slices it draws
    data = np.asarray(viewer.layers[fl.OUTPUT].data)
    np.testing.assert_allclose(np.asarray(diff.data), data[3] - data[0], atol=1e-5)
    limit = np.abs(data[3] - data[0]).max()
    assert limit > 0 and tuple(diff.contrast_limits) == pytest.approx((-limit, limit), rel=1e-6)  # given, not scanned
    assert tuple(viewer.layers[fl.OUTPUT].contrast_limits) == (-500.0, 100.0)
    assert tuple(viewer.layers[fl.AT_T].contrast_limits) == (-500.0, 100.0)

    fl.show_difference(viewer, prepared, 1)  # another time point: same layer, updated in place, no data read
    assert viewer.layers[fl.DIFFERENCE] is diff and np.asarray(diff.data).max() == pytest.approx(
        float((data[1] - data[0]).max()), rel=1e-6)
    assert len(fl.result_steps(viewer, prepared, None)) == 5  # the series exists: updated in place, one turn


def test_new_layers_are_built_in_the_worker_and_appended_without_taking_the_selection(make_napari_viewer, qtbot,
                                                                                     monkeypatch):
    """The Qt turns append the napari layers prepare() built (no layer is constructed there) and leave the
    user's active layer alone until the last turn, which activates the last one appended; a window changed
    since Predict still reaches the follow-ups."""
    from napari.layers import Layer

    from napari_medgen.widgets import followup_layers as fl

    prepared = fl.prepare(_result(np.eye(3)), (-500.0, 100.0))  # the worker's part
    built = dict(prepared.new)
    assert set(built) == {fl.OUTPUT, fl.LABELS, fl.DIFFERENCE, fl.AT_T}
    assert all(isinstance(layer, Layer) for layer in built.values())
    viewer = make_napari_viewer()
    user = viewer.add_image(np.zeros((6, 10, 12), np.float32), name="user's layer")

    def refuse(*args, **kwargs):
        raise AssertionError("a layer constructed on the Qt thread")

    for cls in (fl.Image, fl.Labels):
        monkeypatch.setattr(cls, "__init__", refuse)
    active = []
    steps = fl.result_steps(viewer, prepared, (-400.0, 50.0))
    fl.show_in_turns(viewer, [step for pair in zip(steps, [lambda: active.append(viewer.layers.selection.active)]
                                                   * len(steps), strict=True) for step in pair])
    qtbot.waitUntil(lambda: len(active) == len(steps), timeout=20000)

    for name in (fl.OUTPUT, fl.LABELS, fl.DIFFERENCE, fl.AT_T):
        assert viewer.layers[name] is built[name]
    assert viewer.layers[fl.OUTPUT].ndim == 4  # the first frame grown to the series in place
    assert active[:-1] == [user] * (len(steps) - 1) and active[-1] is built[fl.AT_T]
    assert prepared.new == {}  # each appended once: a second showing updates them in place
    for name in (fl.OUTPUT, fl.AT_T):
        assert tuple(viewer.layers[name].contrast_limits) == (-400.0, 50.0)
