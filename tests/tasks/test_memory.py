"""Memory guard: measured estimates, smaller batches when memory is short, a clear refusal when nothing fits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medgen.errors import InputError
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks import memory

from .test_synthesize import label_volume, toy_model  # noqa: F401  (a tiny untrained spade model)


def test_output_bytes_counts_every_module_output():
    net = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(20, 5))
    measured = memory.output_bytes(net, lambda: net(torch.zeros(3, 10)))
    assert measured == 4 * 3 * (20 + 20 + 5 + 5)  # Linear, ReLU, Linear, and the Sequential's own output


def test_fit_batch_scales_with_free_memory_and_refuses_with_numbers(monkeypatch):
    monkeypatch.setattr(memory, "free_bytes", lambda device: 10 * memory.GIB)
    assert memory.fit_batch(memory.GIB, 0, 16, "cpu", "x") == 5  # 10 GiB / margin 2 / 1 GiB each
    assert memory.fit_batch(memory.GIB, 0, 3, "cpu", "x") == 3
    with pytest.raises(InputError, match=r"Big job needs about 12 GiB, but only 10 GiB are free"):
        memory.fit_batch(2 * memory.GIB, 4 * memory.GIB, 1, "cpu", "Big job")


def test_free_bytes_is_the_available_memory():
    import psutil

    assert abs(memory.free_bytes("cpu") - psutil.virtual_memory().available) < 512 * 2**20


def test_synthesis_runs_in_smaller_batches_or_refuses(monkeypatch, toy_model):  # noqa: F811
    from napari_medgen.tasks.synthesize import synthesize

    synth = toy_model
    labels = label_volume()
    full = run_to_completion(synthesize(labels, synth, style="mean", batch=6))
    per_slice = memory.output_bytes(synth.generator, lambda: synth._forward(
        torch.zeros((1, *synth.slice_shape), dtype=torch.int64), synth.random_style(0)))
    monkeypatch.setattr(memory, "free_bytes", lambda device: int(memory.MARGIN * 2.5 * per_slice))
    assert memory.synthesis_batch(synth, labels.data.shape, 6) == 2
    tiled = run_to_completion(synthesize(labels, synth, style="mean", batch=6))
    np.testing.assert_allclose(tiled.data, full.data, atol=1e-5)
    monkeypatch.setattr(memory, "free_bytes", lambda device: int(per_slice))
    with pytest.raises(InputError, match="needs about .* GiB, but only .* GiB are free"):
        run_to_completion(synthesize(labels, synth, style="mean"))


def test_sampling_refuses_too_many_samples(monkeypatch):
    from napari_medgen.models.families import open_model
    from napari_medgen.models.store import shipped_models
    from napari_medgen.tasks.sample import sample

    models = {k: v for k, v in shipped_models("diffusion").items() if "mask" not in k}
    if not models:
        pytest.skip("no shipped unconditioned diffusion model")
    m = open_model(next(iter(models.values())), "cpu")
    memory.check_sampling(m, 2, "cpu")  # fits on this machine
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1)
    with pytest.raises(InputError, match="GiB"):
        run_to_completion(sample(m, n=2, steps=2, device="cpu"))
