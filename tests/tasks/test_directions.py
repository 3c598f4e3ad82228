"""Latent-direction discovery, walks, inversion and the editor (tiny untrained models + the shipped one)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_medgen.cli import main
from napari_medgen.errors import InputError, ModelError
from napari_medgen.models.latent import ImageLabelGAN, ImageLabelVAE
from napari_medgen.models.store import SHIPPED_DIR, save_model
from napari_medgen.models import latent_handle as L
from napari_medgen.progress import CancelToken, run_to_completion
from napari_medgen.tasks import direction_measures as M
from napari_medgen.tasks import directions as D
from napari_medgen.tasks import latent_editor as E

NORM = {"kind": "percentile", "low": 0.5, "high": 99.5, "lo_value": 0.0, "hi_value": 2.0, "range": [0.0, 1.0]}


def _save(tmp_path, family: str, model: torch.nn.Module, data: str = "100 random 2D phantoms") -> str:
    path = tmp_path / family
    modules = {"model": model} if family == "vae" else {"generator": model}
    card = {"family": family, "network": model.config,
            "normalization": NORM, "data": data}
    save_model(path, modules, card)
    return str(path)


@pytest.fixture
def tiny_vae(tmp_path) -> str:
    torch.manual_seed(0)
    return _save(tmp_path, "vae", ImageLabelVAE(8, size=16, latent_dim=6, channels=(8, 8)))


def test_sefa_recovers_the_most_amplified_direction():
    torch.manual_seed(0)
    gan = ImageLabelGAN(8, size=16, latent_dim=8, channels=(8, 8))
    w = gan.first_layer_weight()
    q_out, _ = torch.linalg.qr(torch.randn(w.shape[0], 8))
    q_in, _ = torch.linalg.qr(torch.randn(8, 8))
    gains = torch.tensor([10.0, 5.0, 1, 1, 1, 1, 1, 1])
    with torch.no_grad():
        w.copy_(q_out @ torch.diag(gains) @ q_in.T)
    # SeFa normalises the weight's columns first; a latent axis amplified most must come first
    dirs = run_to_completion(D.discover(gan, "sefa", k=2))
    w_n = w / w.norm(dim=0, keepdim=True)
    amplification = [float((w_n.detach() @ torch.as_tensor(v)).norm()) for v in dirs.vectors]
    random_dirs = torch.nn.functional.normalize(torch.randn(200, 8), dim=1)
    assert amplification[0] >= float((w_n.detach() @ random_dirs.T).norm(dim=0).max()) - 1e-4
    assert np.allclose(np.linalg.norm(dirs.vectors, axis=1), 1, atol=1e-5)
    assert abs(float(dirs.vectors[0] @ dirs.vectors[1])) < 1e-4


@pytest.mark.parametrize("method", ["ganspace", "voynov"])
def test_other_methods_give_unit_directions(method):
    torch.manual_seed(0)
    gan = ImageLabelGAN(8, size=16, latent_dim=8, channels=(8, 8))
    dirs = run_to_completion(D.discover(gan, method, k=3, steps=5, n_samples=200))
    assert dirs.vectors.shape == (3, 8) and dirs.method == method
    assert np.allclose(np.linalg.norm(dirs.vectors, axis=1), 1, atol=1e-5)


def test_pca_of_vae_latents_scales_are_data_spread(tiny_vae):
    editor = E.LatentEditor(tiny_vae)
    images = np.random.default_rng(0).random((40, 16, 16)).astype(np.float32)
    dirs = run_to_completion(D.discover(editor.model, "pca", k=2, images=images))
    mu = run_to_completion(D._encode_all(editor.model, images, CancelToken()))
    assert np.allclose(dirs.scales, (mu @ dirs.vectors.T).std(0), rtol=1e-3)
    assert dirs.scales[0] >= dirs.scales[1]  # first principal axis has the largest spread


def test_ica_recovers_independent_mixing_directions():
    rng = np.random.default_rng(0)
    sources = rng.uniform(-1, 1, (3000, 3))
    mixing = rng.normal(size=(5, 3))
    latents = sources @ mixing.T + 0.01 * rng.normal(size=(3000, 5))
    found = D._independent_axes(latents, 3, seed=0)
    true = mixing.T / np.linalg.norm(mixing.T, axis=1, keepdims=True)
    found = found / np.linalg.norm(found, axis=1, keepdims=True)
    cos = np.abs(found @ true.T)
    assert np.all(cos.max(axis=1) > 0.98) and len(set(cos.argmax(axis=1))) == 3


def test_axes_are_the_latent_axes_ranked_by_the_spread_of_real_images(tiny_vae):
    editor = E.LatentEditor(tiny_vae)
    images = np.random.default_rng(0).random((40, 16, 16)).astype(np.float32)
    mu = run_to_completion(D._encode_all(editor.model, images, CancelToken()))
    dirs = run_to_completion(D.discover(editor.model, "axes", k=3, images=images))
    assert np.array_equal(dirs.vectors, np.eye(6, dtype=np.float32)[np.argsort(-mu.std(0))[:3]])
    assert np.allclose(dirs.scales, np.sort(mu.std(0))[::-1][:3], rtol=1e-3)
    unranked = run_to_completion(D.discover(editor.model, "axes", k=2))  # no images (or a GAN): in order, prior scale
    assert np.array_equal(unranked.vectors, np.eye(6, dtype=np.float32)[:2]) and np.all(unranked.scales == 1)
    assert editor.images_for("axes", n=3).shape == (3, 16, 16)  # a phantom VAE regenerates its data
    assert editor.images_for("sefa") is None


def test_bad_requests_are_clear(tiny_vae, tmp_path):
    model = E.LatentEditor(tiny_vae).model
    with pytest.raises(InputError, match="between 1 and the latent dimension"):
        run_to_completion(D.discover(model, "sefa", k=99))
    with pytest.raises(InputError, match="Unknown discovery method"):
        run_to_completion(D.discover(model, "magic", k=2))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelError, match="bad.json"):
        D.Directions.load(bad)
    spade_like = _save(tmp_path, "vae", ImageLabelVAE(8, size=16, latent_dim=6, channels=(8, 8)))
    card = tmp_path / "vae.json"
    card.write_text(card.read_text().replace('"family": "vae"', '"family": "spade"'))
    with pytest.raises(ModelError):
        E.LatentEditor(spade_like)


def test_directions_round_trip(tmp_path):
    dirs = D.Directions(np.eye(3, 5), np.array([1.0, 2.0, 0.5]), "sefa", ["a", "b", "c"])
    dirs.save(tmp_path / "d.json")
    back = D.Directions.load(tmp_path / "d.json")
    assert np.array_equal(back.vectors, dirs.vectors) and back.names == ["a", "b", "c"]
    assert np.allclose(back.offset(np.array([1.0, 0, 2])), [1, 0, 1, 0, 0])


def test_walk_moves_the_image_and_zero_is_the_base(tiny_vae):
    editor = E.LatentEditor(tiny_vae)
    editor.directions = run_to_completion(D.discover(editor.model, "sefa", k=2))
    editor.random_base(3)
    base, _ = editor.render(np.zeros(2))
    same, _ = editor.render(None)
    moved, labels = editor.render(np.array([3.0, 0.0]))
    assert np.array_equal(base, same)
    assert np.abs(moved - base).mean() > 1e-4
    assert labels.dtype == np.uint8 and labels.shape == (16, 16)
    strip = editor.walk_strip(0, np.linspace(-3, 3, 5))
    assert strip.shape == (5, 16, 16) and np.abs(strip[0] - strip[-1]).mean() > 1e-4


def test_inversion_finds_a_latent_that_reproduces_the_image(tiny_vae):
    editor = E.LatentEditor(tiny_vae)
    target_z = L.sample_latents(editor.model, 1, 7)
    target = L.decode(editor.model, target_z)[0, 0]
    raw = target * 2.0  # the card's normalisation maps [0, 2] -> [0, 1]
    z = run_to_completion(editor.invert_image(np.kron(raw, np.ones((2, 2))), steps=150))
    image, _ = editor.render()
    assert image.shape == (32, 32)  # rendered back at the inverted image's size
    err = np.abs(L.decode(editor.model, z[None])[0, 0] - target).mean()
    start_err = np.abs(L.decode(editor.model, np.zeros((1, z.size)))[0, 0] - target).mean()
    assert err < 0.5 * start_err


def test_cli_discover_measure_apply(tiny_vae, tmp_path, capsys):
    out = tmp_path / "d.json"
    assert main(["--quiet", "directions", "discover", "--model", tiny_vae, "--method", "sefa", "--k", "3",
                 "--out", str(out)]) == 0
    assert main(["--quiet", "directions", "measure", "--model", tiny_vae, "--directions", str(out),
                 "--bases", "2", "--csv", str(tmp_path / "t.csv")]) == 0
    assert "tumour size" in capsys.readouterr().out
    assert (tmp_path / "t.csv").read_text().count("\n") == 4
    assert main(["--quiet", "directions", "apply", "--model", tiny_vae, "--directions", str(out), "--move", "0=2",
                 "--walk", "0", "--out", str(tmp_path / "walk.nii.gz")]) == 0
    from napari_medgen.io.readers import read_volume

    assert read_volume(tmp_path / "walk.nii.gz").data.shape == (7, 16, 16)
    assert main(["directions", "apply", "--model", tiny_vae, "--out", str(tmp_path / "x.nii.gz")]) == 2


SHIPPED_VAE = SHIPPED_DIR / "vae_phantom.json"


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED_VAE.exists(), reason="shipped VAE not trained yet")
def test_shipped_vae_has_three_single_factor_directions():
    """Bar: at least three discovered directions each dominated by one phantom factor (12 walks each, as
    the card's metrics.directions was measured)."""
    editor = E.LatentEditor(SHIPPED_VAE)
    assert editor.directions is not None, "the shipped model must come with discovered directions"
    table, names = run_to_completion(M.disentanglement(editor.model, editor.directions, editor.pixel_mm, n_bases=12))
    hits = M.dominated(table)
    assert len({names[j] for _, j in hits}) >= 3, f"dominated: {hits}\n{np.round(table, 2)}"


def _phantom_outputs(factor: str, values, seed: int, style: str = "mr_vendor_a", size: int = 64) -> np.ndarray:
    """True phantoms as a generator would output them: (B, 1 + 8, H, W) image + one-hot labels."""
    from napari_medgen.data import phantom

    base = dict(tumour_radius_mm=12.0, breathing_phase=0.5, cardiac_phase=0.5, body_scale=1.0, rotation_deg=0.0)
    out = []
    for v in values:
        kw = {**base, factor: float(v)} if factor else base
        img, lab = phantom.make_phantom(seed, shape=(1, size, size), spacing=(6.0, 6.0, 5.0), style=style, **kw)
        onehot = np.eye(8)[lab.data[0]].transpose(2, 0, 1)
        out.append(np.concatenate([img.data[0][None] / 1.0, onehot]))
    return np.stack(out)


RANGES = {"tumour_radius_mm": (5, 20), "breathing_phase": (0, 1), "cardiac_phase": (0, 1), "body_scale": (0.9, 1.1),
          "rotation_deg": (-30, 30)}
ESTIMATE_OF = {"tumour_radius_mm": "tumour size", "breathing_phase": "breathing", "cardiac_phase": "heart size",
               "body_scale": "body size", "rotation_deg": "rotation"}


@pytest.fixture(scope="module")
def sweeps() -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    out = {}
    for factor, r in RANGES.items():
        values = np.linspace(*r, 6)
        out[factor] = (values, M.phantom_factors(_phantom_outputs(factor, values, seed=1), pixel_mm=6.0))
    return out


@pytest.mark.parametrize("factor", list(RANGES))
def test_factor_estimates_follow_their_own_factor_only(factor, sweeps):
    """On true phantoms, sweeping one factor moves its estimate (|r| >= 0.9); every other estimate
    either does not follow it (|r| <= 0.3) or barely moves (< 20% of its range under its own factor:
    a pixel or two of aliasing on the 6 mm grid)."""
    values, f = sweeps[factor]
    assert abs(np.corrcoef(values, f[ESTIMATE_OF[factor]])[0, 1]) >= 0.9
    for other_factor, other in ESTIMATE_OF.items():
        if other_factor == factor or f[other].std() < 1e-9:
            continue
        own_range = np.ptp(sweeps[other_factor][1][other])
        r = abs(np.corrcoef(values, f[other])[0, 1])
        assert r <= 0.3 or np.ptp(f[other]) < 0.2 * own_range, (other, r, np.ptp(f[other]), own_range)


def test_style_estimate_separates_vendors_far_more_than_geometry_moves_it():
    vendors = [M.phantom_factors(_phantom_outputs("", [0], seed=2, style=s), 6.0)["style"][0]
               for s in ("mr_vendor_a", "mr_vendor_c", "mr_vendor_b")]
    assert vendors[0] > vendors[1] > vendors[2]
    drift = M.phantom_factors(_phantom_outputs("body_scale", np.linspace(0.9, 1.1, 5), seed=2), 6.0)["style"]
    assert np.ptp(drift) < 0.1 * (vendors[0] - vendors[2])


def test_class_balanced_weights_favour_rare_classes_and_default_loss_is_unchanged(tmp_path):
    from napari_medgen.training.latent_trainers import VAETrainer
    from napari_medgen.training.losses import class_frequency_weights
    from napari_medgen.training.registry import TrainConfig

    labels = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    w = class_frequency_weights(labels, 4)
    assert w[2] > w[1] > w[0] and w[3] == 0  # rarer classes weigh more; an absent one has nothing to weigh
    assert torch.isclose(w[:3].mean(), torch.tensor(1.0))
    extra = {"n_subjects": 8, "size": 16, "latent_dim": 4, "anatomy_seed": 0}
    plain = VAETrainer(TrainConfig(sample="phantom", seed=0, steps=2, batch_size=4, extra=dict(extra)))
    assert plain.class_weights is None and plain.seg_weight == 0.1
    balanced = VAETrainer(TrainConfig(sample="phantom", seed=0, steps=2, batch_size=4,
                                      extra={**extra, "class_balanced": True, "seg_weight": 1.0}))
    assert balanced.class_weights is not None and balanced.class_weights.argmax() != 0
    assert np.isfinite(balanced.train_step(0)["loss"])


def test_pair_bank_pairs_share_all_but_one_to_five_factors(tmp_path):
    from napari_medgen.training.latent_trainers import VAETrainer, phantom_bank
    from napari_medgen.training.registry import TrainConfig

    images, labels, factors = phantom_bank(40, 16, seed=3, anatomy_seed=None, pairs=True)
    assert images.shape == (40, 16, 16) and labels.shape == (40, 16, 16)
    changed = [sum(a[k] != b[k] for k in a) for a, b in zip(factors[::2], factors[1::2])]
    assert min(changed) >= 1 and max(changed) <= 5 and len(set(changed)) > 1
    unpaired = [sum(a[k] != b[k] for k in a) for a, b in zip(factors[1:-1:2], factors[2::2])]
    assert min(unpaired) >= 5  # consecutive pairs are independent draws (the style may match by chance)
    extra = {"n_subjects": 6, "size": 16, "latent_dim": 4, "anatomy_seed": 0, "pairs": True}
    trainer = VAETrainer(TrainConfig(sample="phantom", seed=0, steps=2, batch_size=3, extra=extra))
    assert len(trainer.images) == 12 and "6 pairs" in trainer.data_desc
    batch, _ = trainer._draw()
    assert batch.shape[0] == 6 and np.isfinite(trainer.train_step(0)["loss"])
    with pytest.raises(InputError, match="pairs=true needs --sample phantom"):
        VAETrainer(TrainConfig(sample="brain", seed=0, steps=2, batch_size=3, extra={"pairs": True, "size": 16}))


def test_broadcast_decoder_vae_round_trips_and_exposes_the_layer_that_reads_z(tmp_path):
    from napari_medgen.models.families import load_model

    torch.manual_seed(0)
    vae = ImageLabelVAE(8, size=16, latent_dim=6, channels=(8, 8), decoder="broadcast")
    assert vae.first_layer_weight().shape == (32, 6)  # (channels, latent_dim): what SeFa factorises
    z = torch.randn(3, 6)
    out = vae.decode(z)
    assert out.shape == (3, 9, 16, 16) and torch.allclose(out[:, 1:].sum(1), torch.ones(3, 16, 16))
    modules, card = load_model(_save(tmp_path, "vae", vae), "cpu")
    assert card["network"]["decoder"] == "broadcast"
    with torch.inference_mode():
        assert torch.allclose(modules["model"].decode(z), out.detach(), atol=1e-6)
    with pytest.raises(ValueError, match="decoder"):
        ImageLabelVAE(8, size=16, decoder="mlp")


def test_layered_log_probs_paint_later_classes_over_earlier_ones():
    from napari_medgen.models.latent import layered_log_probs

    masks = torch.randn(2, 3, 4, 4) * 3
    on = torch.sigmoid(masks)
    expected = torch.stack([(1 - on).prod(1), on[:, 0] * (1 - on[:, 1]) * (1 - on[:, 2]), on[:, 1] * (1 - on[:, 2]),
                            on[:, 2]], 1)
    assert torch.allclose(layered_log_probs(masks).exp(), expected, atol=1e-6)
    assert torch.allclose(torch.softmax(layered_log_probs(masks), 1), expected, atol=1e-6)  # valid logits


def test_parts_decoder_keeps_each_structure_on_its_own_latent_group(tmp_path):
    from napari_medgen.models.families import load_model
    from napari_medgen.training.latent_trainers import VAETrainer
    from napari_medgen.training.registry import TrainConfig

    torch.manual_seed(0)
    vae = ImageLabelVAE(4, size=16, latent_dim=None, channels=(8, 8), decoder="parts", part_dims=2, style_dims=1)
    assert vae.latent_dim == 1 + 1 + 3 * 2  # pose, style, three foreground parts of two each
    weight = vae.first_layer_weight()
    assert weight.shape == (1 + 32 + 3 * 32, 8) and torch.all(weight[33:65, 4:] == 0)  # part 1 reads z[2:4] only
    z = torch.randn(2, 8)
    base = vae.decode_raw(z).detach()
    for part in range(3):  # one part's group moves its class and what it covers, never the layers above it
        moved = z.clone()
        moved[:, 2 + 2 * part:4 + 2 * part] += 1.0
        changed = (vae.decode_raw(moved).detach() - base)[:, 1:].abs().amax(dim=(0, 2, 3))  # per class 0..3
        assert changed[part + 1] > 1e-4 and torch.all(changed[part + 2:] == 0)
    restyled = z.clone()
    restyled[:, 1] += 1.0
    diff = (vae.decode_raw(restyled).detach() - base).abs().amax(dim=(0, 2, 3))
    assert diff[0] > 1e-4 and torch.all(diff[1:] == 0)  # style: intensities only, never the labels
    turned = z.clone()
    turned[:, 0] += 2.0
    assert torch.all((vae.decode_raw(turned).detach() - base)[:, 2:].abs().amax(dim=(0, 2, 3)) > 1e-4)  # pose: all
    modules, card = load_model(_save(tmp_path, "vae", vae), "cpu")
    assert card["network"]["decoder"] == "parts" and card["network"]["part_dims"] == 2
    with torch.inference_mode():
        assert torch.allclose(modules["model"].decode(z), vae.decode(z).detach(), atol=1e-6)
    with pytest.raises(ValueError, match="reads 8 latent dimensions, not 5"):
        ImageLabelVAE(4, size=16, latent_dim=5, decoder="parts", part_dims=2, style_dims=1)
    extra = {"n_subjects": 4, "size": 16, "anatomy_seed": 0, "decoder": "parts"}
    trainer = VAETrainer(TrainConfig(sample="phantom", seed=0, steps=2, batch_size=2, extra=extra))
    assert trainer.latent_dim == 1 + 2 + 7 and np.isfinite(trainer.train_step(0)["loss"])
    assert trainer.preview().shape == (16, 16)
    with pytest.raises(InputError, match="VAE settings: the parts decoder"):
        VAETrainer(TrainConfig(sample="phantom", seed=0, steps=2, batch_size=2, extra={**extra, "latent_dim": 6}))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_latent_trainers_train_on_the_gpu_and_export_for_the_cpu(tmp_path):
    from napari_medgen.models.families import load_model
    from napari_medgen.training.latent_trainers import GANTrainer, VAETrainer
    from napari_medgen.training.registry import TrainConfig

    extra = {"n_subjects": 6, "size": 16, "latent_dim": 4, "anatomy_seed": 0}
    for trainer_cls, more in ((VAETrainer, {"pairs": True, "class_balanced": True}), (GANTrainer, {})):
        trainer = trainer_cls(TrainConfig(sample="phantom", seed=0, steps=2, batch_size=3, device="cuda",
                                          extra={**extra, **more}))
        assert next(trainer.model.parameters()).is_cuda and trainer.images.is_cuda
        assert all(np.isfinite(v) for v in trainer.train_step(0).values())
        trainer.export(tmp_path / trainer.family, {})
        modules, _ = load_model(tmp_path / trainer.family, "cpu")
        assert not next(next(iter(modules.values())).parameters()).is_cuda


class _Thresholder(torch.nn.Module):
    """A 'VAE' whose latent is the image itself and whose decoder thresholds it into 3 classes."""

    def __init__(self, shift: int = 0):
        super().__init__()
        self.shift = shift

    def encode(self, x):
        return x.flatten(1), torch.zeros_like(x.flatten(1))

    def decode(self, z):
        img = z.view(len(z), 1, 16, 16)
        lab = torch.roll((img[:, 0] > 0.4).long() + (img[:, 0] > 0.7).long(), self.shift, dims=-1)
        return torch.cat([img, torch.nn.functional.one_hot(lab, 3).permute(0, 3, 1, 2).float()], 1)


def test_reconstruction_quality_scores_a_perfect_and_a_shifted_decoder():
    images = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    labels = (images > 0.4).astype(np.uint8) + (images > 0.7)
    perfect = M.reconstruction_quality(_Thresholder(), images, labels)
    assert perfect["dice"] == {"1": 1.0, "2": 1.0} and perfect["psnr_db"] == 100.0 and perfect["n_images"] == 5
    shifted = M.reconstruction_quality(_Thresholder(shift=3), images, labels)
    assert all(d < 0.7 for d in shifted["dice"].values())  # random maps moved by 3 pixels overlap by chance only


def test_quality_command_regenerates_phantom_or_brain_data_and_records(tiny_vae, capsys):
    from napari_medgen.models.store import load_card
    from napari_medgen.training.latent_trainers import BRAIN_DATA

    assert main(["directions", "quality", "--model", tiny_vae, "--n", "4", "--record"]) == 0
    figures = load_card(tiny_vae + ".json")["metrics"]["reconstruction"]
    assert figures["n_images"] == 4 and set(figures["dice"]) <= {str(c) for c in range(1, 8)}
    assert all(0.0 <= d <= 1.0 for d in figures["dice"].values())
    card = Path(tiny_vae + ".json")
    card.write_text(card.read_text().replace('"100 random 2D phantoms"', json.dumps(BRAIN_DATA)))
    images, labels = E.LatentEditor(tiny_vae).training_data(500)
    assert images.shape == labels.shape and 40 < len(images) < 100 and labels.max() == 3  # the brain's slices
    card.write_text(card.read_text().replace(json.dumps(BRAIN_DATA), '"my scans"'))
    assert main(["directions", "quality", "--model", tiny_vae]) == 2
    assert "not regenerated here" in capsys.readouterr().err


@pytest.mark.slow
def test_shipped_brain_vae_inverts_held_out_slices_as_they_come_from_a_scan():
    """The held-out slabs (data.brain.axial_split) of the 2 mm brain sample, given as a user's slice comes:
    a skull and scalp around the brain (synthetic: the template has none), other units, 2 mm pixels.
    The inversion reproduces the prepared slice (the ledger's bar, 0.8, on the model grid) whatever the units."""
    from napari_medgen.data import brain
    from napari_medgen.data.brain_slices import FOV_MM, MIN_BRAIN_FRACTION, with_synthetic_skull
    from napari_medgen.data.samples import brain_sample

    image, labels = brain_sample()
    spacing = (labels.spacing[1], labels.spacing[0])
    _, held = brain.axial_split(brain.axial_z_mm(labels))
    editor = E.LatentEditor(SHIPPED_DIR / "vae_brain")
    brain_mm2 = (labels.data > 0).sum(axis=(1, 2)) * spacing[0] * spacing[1]
    scores: dict[str, list[float]] = {"raw": [], "other": []}
    for k in np.flatnonzero(held & (brain_mm2 >= MIN_BRAIN_FRACTION * FOV_MM ** 2)):  # as training chose slices
        truth = np.pad(labels.data[k] > 0, 10)
        raw = with_synthetic_skull(np.pad(image.data[k].astype(np.float32), 10), truth, spacing, seed=int(k))
        for units, scale, offset in (("raw", 1.0, 0.0), ("other", 0.02, 300.0)):
            run_to_completion(editor.invert_image(raw * scale + offset, steps=150, spacing_mm=spacing))
            prepared = editor.prepared
            decoded = L.decode(editor.model, editor.z[None])[0, 0]
            scores[units].append(np.corrcoef(decoded[prepared.mask], prepared.image[prepared.mask])[0, 1])
            out, out_labels = editor.render()  # back on the scan's slice, in its units
            assert out.shape == raw.shape and out_labels.shape == raw.shape
            spread = scale * np.ptp(raw[truth])
            assert abs(np.median(out[truth]) - np.median(raw[truth] * scale + offset)) < 0.15 * spread
            assert np.corrcoef(out[truth], raw[truth])[0, 1] > 0.5
    assert len(scores["raw"]) >= 8
    assert np.mean(scores["raw"]) >= 0.8, np.round(scores["raw"], 3)
    assert np.allclose(scores["raw"], scores["other"], atol=0.02)  # the scan's units do not matter
