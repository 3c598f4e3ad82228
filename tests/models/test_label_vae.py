"""Label VAE: builder, trainer (learns, resumes, exports), loading, and the shipped phantom model's quality."""

import io

import numpy as np
import pytest
import torch

from napari_medgen.errors import InputError
from napari_medgen.models.label_vae import LabelVAE, build_label_vae, one_hot
from napari_medgen.models.store import shipped_models
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.deform import vae_interpolate, vae_sample
from napari_medgen.training import label_vae_trainer as lvt
from napari_medgen.training.registry import TrainConfig

TOY = {"slice_shape": [32, 32], "channels": [8, 16], "strides": [2, 2], "latent_size": 4}


def _discs(n, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    out = np.zeros((n, 32, 32), np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(12, 20), rng.uniform(12, 20), rng.uniform(6, 11)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        out[i][d2 < r * r] = 1
        out[i][d2 < (r / 2) ** 2] = 2
    return out


@pytest.fixture
def toy_trainer(monkeypatch):
    data = {"train": _discs(64, 0), "heldout": _discs(8, 1), "names": {0: "bg", 1: "disc", 2: "core"},
            "spacing": (2.0, 2.0, 4.0), "heldout_desc": "toy seed 1"}
    monkeypatch.setattr(lvt, "load_label_slices", lambda cfg, shape: data)

    def make(seed=0):
        torch.manual_seed(seed)
        return lvt.LabelVAETrainer(TrainConfig(sample="toy", seed=seed, batch_size=8, lr=3e-3, extra=dict(TOY)))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a toy network: a second thread only adds synchronisation (18x slower under load)
    yield make
    torch.set_num_threads(threads)


def test_builder_maps_one_hot_to_logits_and_latent():
    net = build_label_vae({"n_classes": 5, **TOY})
    x = one_hot(torch.randint(0, 5, (3, 32, 32)), 5)
    logits, mu, logvar, z = net(x)
    assert logits.shape == (3, 5, 32, 32) and mu.shape == logvar.shape == z.shape == (3, 4)


def test_trainer_learns_resumes_exports_and_loads(toy_trainer, tmp_path):
    tr = toy_trainer()
    losses = [tr.train_step(i)["dice_ce"] for i in range(40)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5]), losses
    buf = io.BytesIO()
    torch.save(tr.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    expected = tr.train_step(40)
    other = toy_trainer(seed=7)
    other.load_state_dict(state)
    assert other.train_step(40) == pytest.approx(expected, rel=1e-5)
    tr.export(tmp_path / "lvae", {"training": {"seed": 0}})
    vae = LabelVAE(tmp_path / "lvae", device="cpu")
    assert vae.n_classes == 3 and vae.slice_shape == (32, 32) and vae.label_names[1] == "disc"
    assert 0 <= vae.card["metrics"]["dice_mean_foreground"] <= 1
    assert len(vae.card["latent_prior"]["mean"]) == 4 and np.array(vae.card["latent_prior"]["chol"]).shape == (4, 4)
    z = vae.encode(_discs(2, 3))
    assert z.shape == (2, 4)
    assert vae.decode(z).shape == (2, 32, 32) and vae.decode(z, (20, 40)).shape == (2, 20, 40)
    with pytest.raises(InputError, match="outside this label VAE's classes"):
        vae.encode(np.full((1, 32, 32), 7))


def _phantom_model() -> LabelVAE:
    models = shipped_models("label_vae")
    if "label_vae_phantom" not in models:
        pytest.fail("the shipped model sample_data/models/label_vae_phantom is missing")
    return LabelVAE(models["label_vae_phantom"], device="cpu")


def _dice(a, b, label):
    inter = np.sum((a == label) & (b == label))
    total = np.sum(a == label) + np.sum(b == label)
    return 2 * inter / total if total else np.nan


def test_shipped_phantom_vae_reconstructs_held_out_subjects_and_samples_plausible_anatomy():
    from napari_medgen.data.phantom import make_labels

    vae = _phantom_model()
    held = make_labels(1003, shape=(64, 128, 128), breathing_phase=0.3, cardiac_phase=0.6)  # a held-out seed
    rec = run_to_completion(vae_interpolate(vae, held, held, t=0.0, device="cpu"))
    body_dice = _dice(rec.data, held.data, 1)
    lung_dice = _dice(rec.data, held.data, 2)
    assert body_dice > 0.9 and lung_dice > 0.75, (body_dice, lung_dice)
    samples = run_to_completion(vae_sample(vae, n=16, seed=0, device="cpu")).data
    # plausible: every sample has a body that is one big blob centred in the field of view
    from scipy import ndimage

    for s in samples:
        body = s > 0
        lab, n = ndimage.label(body)
        sizes = np.bincount(lab.ravel())[1:]
        assert n >= 1 and sizes.max() > 0.2 * body.size and sizes.max() > 0.95 * sizes.sum()
        cy, cx = ndimage.center_of_mass(body)
        assert abs(cy - 64) < 20 and abs(cx - 64) < 20
