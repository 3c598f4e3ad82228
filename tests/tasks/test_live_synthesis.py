"""Live synthesis bookkeeping: dirty slices coalesce, the worker loop converges to the final labels."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from napari_medgen.errors import InputError
from napari_medgen.tasks.live_synthesis import DirtySlices, LiveSynthesis, LiveUpdate, paint_event_slices


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


def _render(calls):
    def render(lab):
        calls.append(len(lab))
        time.sleep(0.02)
        return lab.astype(np.float32) * 10.0

    return render


def test_burst_of_edits_coalesces_and_final_image_matches_final_labels():
    labels = np.zeros((6, 16, 16), np.uint8)
    image = np.full(labels.shape, -1.0, np.float32)
    calls = []
    live = LiveSynthesis(labels, _render(calls))

    def worker():
        for upd in live.loop(poll_s=0.01):
            if isinstance(upd, LiveUpdate):
                image[upd.indices] = upd.images

    th = threading.Thread(target=worker)
    th.start()
    for k in range(20):  # a brush stroke across slices 2 and 3, 20 events in ~20 ms
        z = 2 + k % 2
        labels[z, k % 16, :] = 1 + k % 3
        live.request([z])
        time.sleep(0.001)
    deadline = time.time() + 5
    while time.time() < deadline and not np.array_equal(image[2:4], labels[2:4] * 10.0):
        time.sleep(0.01)
    live.stop()
    th.join(2)
    assert not th.is_alive()
    np.testing.assert_array_equal(image[2:4], labels[2:4] * 10.0)
    assert np.all(image[[0, 1, 4, 5]] == -1.0)  # untouched slices never computed
    assert live.computations <= 8, live.computations  # far fewer than the 20 edits
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
