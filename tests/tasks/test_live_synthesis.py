"""Live synthesis bookkeeping: dirty slices coalesce, the worker loop converges to the final labels."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from napari_medgen.data.normalize import fixed_spec
from napari_medgen.errors import InputError
from napari_medgen.models import spade
from napari_medgen.models.store import save_model
from napari_medgen.tasks.live_synthesis import (DirtySlices, LiveSynthesis, LiveUpdate, SliceRenderer, StyleSource,
                                                paint_event_slices, style_vector)
from napari_medgen.models.synthesizer import Synthesizer


def tiny_spade(path, n_classes=8, shape=(32, 32)):
    """Save an untrained tiny spade model (3 mm in-plane, style_dim 4, two named styles) at ``path``."""
    import torch

    torch.manual_seed(0)
    net = spade.network_config(n_classes=n_classes, input_shape=list(shape), channels=[8, 16], z_dim=4,
                               spade_hidden=8, head_channels=4)
    card = {"family": "spade", "network": net, "normalization": fixed_spec((0.0, 100.0)),
            "label_names": {str(i): f"class{i}" for i in range(n_classes)}, "shape": list(shape),
            "plane_spacing": [3.0, 3.0], "slice_orientation": "axial",
            "styles": {"vendor_a": [1.0, 0, 0, 0], "vendor_b": [0, -1.0, 0, 0]},
            "style_mean": [0.0] * 4, "style_std": [1.0] * 4}
    save_model(path, spade.build_spade(net), card)
    return path


def test_dirty_slices_merge_and_clear():
    d = DirtySlices()
    assert d.take(timeout=0.01) is None
    d.add([3, 1])
    d.add([3])
    d.add([])
    assert d.requests == 2
    assert not d.empty
    assert d.take(0) == [1, 3]
    assert d.empty
    assert d.take(0.01) is None
    d.close()
    assert d.take(None) is None  # a closed set never blocks


def test_paint_event_slices_reads_both_atom_kinds():
    masked = SimpleNamespace(slice_key=(slice(4, 5), slice(0, 10), slice(2, 8)))
    legacy = ((np.array([7, 7, 9]), np.array([1, 2, 3]), np.array([1, 2, 3])), np.zeros(3), 1)
    assert paint_event_slices([masked, legacy]) == {4, 7, 9}
    assert paint_event_slices([masked], axis=2) == set(range(2, 8))


def test_burst_of_edits_coalesces_and_final_image_matches_final_labels():
    labels = np.zeros((6, 16, 16), np.uint8)
    image = np.full(labels.shape, -1.0, np.float32)
    gate = threading.Event()

    def render(lab):  # busy until the stroke ends: every later edit has to merge into one request
        gate.wait(10)
        return lab.astype(np.float32) * 10.0

    live = LiveSynthesis(labels, render)

    def worker():
        for upd in live.loop(poll_s=0.01):
            if isinstance(upd, LiveUpdate):
                image[upd.indices] = upd.images

    th = threading.Thread(target=worker)
    th.start()
    for k in range(20):  # a brush stroke across slices 2 and 3
        z = 2 + k % 2
        labels[z, k % 16, :] = 1 + k % 3
        live.request([z])
        time.sleep(0.001)
    gate.set()
    deadline = time.time() + 5
    while time.time() < deadline and not np.array_equal(image[2:4], labels[2:4] * 10.0):
        time.sleep(0.01)
    live.stop()
    th.join(2)
    assert not th.is_alive()
    np.testing.assert_array_equal(image[2:4], labels[2:4] * 10.0)
    assert np.all(image[[0, 1, 4, 5]] == -1.0)  # untouched slices never computed
    assert 1 <= live.computations <= 2, live.computations  # the first request, then all the others at once
    assert live.dirty.requests == 20


def test_errors_are_yielded_and_the_loop_goes_on():
    labels = np.zeros((2, 4, 4), np.uint8)

    def render(lab):
        if lab.max() > 3:
            raise InputError("label 9 is beyond the model's classes")
        return lab.astype(np.float32)

    live = LiveSynthesis(labels, render)
    labels[0] = 9
    live.request([0, 5])  # 5 is out of range: ignored
    out = next(x for x in live.loop(0.01) if x is not None)
    assert isinstance(out, InputError)
    labels[0] = 1
    live.request([0])
    out = next(x for x in live.loop(0.01) if x is not None)
    assert isinstance(out, LiveUpdate) and out.indices == [0] and out.images.shape == (1, 4, 4)


def test_2d_label_array_is_one_slice_and_4d_is_refused():
    live = LiveSynthesis(np.ones((4, 4), np.uint8), lambda lab: lab * 2.0)
    upd = live.compute([0])
    assert upd.images.shape == (1, 4, 4) and upd.images.max() == 2.0
    with pytest.raises(InputError, match="2D or 3D"):
        LiveSynthesis(np.zeros((2, 2, 4, 4)), lambda lab: lab)


def test_style_vector_blends_sources_and_slice_renderer_matches_synthesize_slices(tmp_path):
    synth = Synthesizer(tiny_spade(tmp_path / "m"), device="cpu")
    a, b = StyleSource("vendor", name="vendor_a"), StyleSource("random", seed=3)
    np.testing.assert_allclose(style_vector(synth, a), [1, 0, 0, 0])
    np.testing.assert_allclose(style_vector(synth, a, b, 1.0), synth.random_style(3))
    np.testing.assert_allclose(style_vector(synth, a, b, 0.25), 0.75 * np.array([1, 0, 0, 0]) + 0.25 * synth.random_style(3),
                               rtol=1e-6)
    with pytest.raises(InputError, match="between 0 and 1"):
        style_vector(synth, a, b, 1.5)
    labels = np.zeros((3, 40, 24), np.uint8)  # not the model's 32 x 32: padded/cropped by the plan
    labels[:, 5:30, 4:20] = 2
    plan = synth.check_labels(labels)
    render = SliceRenderer(synth, plan, style_vector(synth, a))
    out = render(labels)
    assert out.shape == (3, 40, 24) and out.dtype == np.float32
    np.testing.assert_allclose(out, synth.synthesize_slices(labels, style_vector(synth, a)), atol=1e-4)
    with pytest.raises(InputError, match="9"):
        render(np.full((1, 40, 24), 9, np.uint8))


def _cpu_render(seconds):
    """A render that burns ``seconds`` of its thread's CPU time."""
    def render(lab):
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass
        return lab.astype(np.float32)
    return render


def test_inline_rendering_needs_fast_renders_an_idle_worker_and_spacing():
    labels = np.zeros((3, 8, 8), np.uint8)
    live = LiveSynthesis(labels, _cpu_render(0.002))
    assert not live.may_render_inline()  # nothing measured yet
    for _ in range(3):
        live.compute([0])
    assert live.may_render_inline()
    live.request([1])
    assert not live.may_render_inline()  # a pending worker request keeps the order: the worker renders
    assert live.dirty.take(0) == [1]
    live.in_flight = 1  # the worker yielded an update the GUI has not applied yet
    assert not live.may_render_inline()
    live.delivered()
    assert live.in_flight == 0 and live.may_render_inline()
    update = live.compute_inline([2])
    assert update.indices == [2] and not live.may_render_inline()  # spaced by its own duration
    time.sleep(update.seconds + 0.01)
    assert live.may_render_inline()


def test_slow_renders_stay_on_the_worker():
    from napari_medgen.tasks.live_synthesis import INLINE_BUDGET_S

    live = LiveSynthesis(np.zeros((2, 8, 8), np.uint8), _cpu_render(INLINE_BUDGET_S * 1.5))
    for _ in range(3):
        live.compute([0])
    assert min(live.recent) >= INLINE_BUDGET_S
    assert not live.may_render_inline()


def test_worker_loop_counts_updates_in_flight_until_delivered():
    live = LiveSynthesis(np.zeros((2, 8, 8), np.uint8), lambda lab: lab.astype(np.float32))
    loop = live.loop(poll_s=0.01)
    live.request([0])
    assert isinstance(next(loop), LiveUpdate) and live.in_flight == 1
    live.delivered()
    assert next(loop) is None and live.in_flight == 0
    live.stop()
