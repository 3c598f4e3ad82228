"""Family "diffusion": builder, schedulers, card round trip, speed-ups, trainer contract, shipped models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medgen.errors import InputError, ModelError
from napari_medgen.models.diffusion import build_unet, load_diffusion, make_scheduler, speed_up
from napari_medgen.models.store import shipped_models
from napari_medgen.training.diffusion_trainer import DiffusionTrainer, learning_rate, resize
from napari_medgen.training.registry import TrainConfig

TINY = {"channels": "8,8", "groups": "8", "size": "16", "n_subjects": "3"}


@pytest.mark.parametrize("dims, label_nc", [(2, None), (3, None), (2, 4)])
def test_builder_shapes(dims, label_nc):
    net = {"spatial_dims": dims, "in_channels": 1, "out_channels": 1, "channels": [8, 8],
           "attention_levels": [False, False], "num_res_blocks": 1, "norm_num_groups": 8, "num_head_channels": 8}
    if label_nc:
        net.update(label_nc=label_nc, spade_intermediate_channels=8)
    unet = build_unet(net)["unet"].eval()
    x = torch.randn(2, 1, *(8,) * dims)
    kw = {"seg": torch.zeros(2, label_nc, *(8,) * dims)} if label_nc else {}
    assert unet(x, timesteps=torch.tensor([1.0, 500.0]), **kw).shape == x.shape


@pytest.mark.parametrize("dims", [2, 3])
def test_patched_unet_folds_each_block_of_voxels_into_channels_and_back(dims):
    net = {"spatial_dims": dims, "in_channels": 1, "out_channels": 1, "channels": [8, 8],
           "attention_levels": [False, True], "num_res_blocks": 1, "norm_num_groups": 8, "num_head_channels": 8,
           "patch": 2}
    unet = build_unet(net)["unet"].eval()
    x = torch.arange(8.0 ** dims).reshape(1, 1, *(8,) * dims)
    folded = unet._fold(x)
    assert folded.shape == (1, 2 ** dims, *(4,) * dims)
    corner = x[(0, 0, *[slice(0, 2)] * dims)].flatten()  # the first 2^d block, in C order
    assert torch.equal(folded[(0, slice(None), *[0] * dims)], corner)
    assert torch.equal(unet._unfold(folded), x)
    noisy = torch.randn(2, 1, *(8,) * dims)
    assert unet(noisy, timesteps=torch.tensor([1.0, 500.0])).shape == noisy.shape
    with pytest.raises(ModelError, match="patch is for networks without label"):
        build_unet({**net, "label_nc": 3})


def test_trainer_refuses_patch_for_mask_conditioned_models():
    cfg = TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                      extra={**TINY, "conditioned": "1", "patch": "2"})
    with pytest.raises(ModelError, match="patch is for networks without label conditioning"):
        DiffusionTrainer(cfg)


def test_bad_network_config():
    with pytest.raises(ModelError, match="not valid for MONAI"):
        build_unet({"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [8, 8], "bogus": 1})


def test_scheduler_choice():
    spec = {"objective": "ddpm", "num_train_timesteps": 1000, "set_alpha_to_one": True}
    assert len(make_scheduler(spec, "ddim", 50).timesteps) == 50
    assert len(make_scheduler(spec, "ddpm", 1000).timesteps) == 1000  # DDIM-only key dropped for DDPM
    with pytest.raises(ModelError, match="rectified flow|samples with rflow"):
        make_scheduler({"objective": "rflow"}, "ddim", 10)
    with pytest.raises(ModelError, match="unknown diffusion objective"):
        make_scheduler({"objective": "score"}, "ddim", 10)


GAUSSIAN_SPEC = {"objective": "ddpm", "num_train_timesteps": 1000, "prediction_type": "epsilon", "clip_sample": False,
                 "schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195}


def _sampled_std(sched, sd: float = 0.5, n: int = 20000) -> float:
    """Std of values sampled with the exact noise predictor of data ~ N(0, sd^2) (E[x0 | x_t] is linear in x_t)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, n, generator=g)
    for t in sched.timesteps:
        a, b = sched.alphas_cumprod[t].sqrt(), (1 - sched.alphas_cumprod[t]).sqrt()
        x0 = a * sd**2 * x / (a**2 * sd**2 + b**2)
        x, _ = sched.step((x - a * x0) / b, t, x, generator=g)
    return float(x.std())


def test_ddpm_with_fewer_steps_is_respaced_and_draws_the_data_spread():
    """With the exact noise predictor, DDPM on 250 of 1000 timesteps draws the data's spread (0.5); MONAI's
    DDPMScheduler stepping 250 times as if each step joined t and t - 1 leaves most of the noise."""
    from monai.networks.schedulers import DDPMScheduler

    from napari_medgen.models.diffusion import RespacedDDPMScheduler

    ours = make_scheduler(GAUSSIAN_SPEC, "ddpm", 250)
    assert isinstance(ours, RespacedDDPMScheduler)
    assert _sampled_std(ours) == pytest.approx(0.5, rel=0.05)
    monai = DDPMScheduler(**{k: v for k, v in GAUSSIAN_SPEC.items() if k != "objective"})
    monai.set_timesteps(250)
    assert _sampled_std(monai) > 0.65
    full = make_scheduler(GAUSSIAN_SPEC, "ddpm", 1000)  # all timesteps: MONAI's own DDPM
    assert isinstance(full, DDPMScheduler) and _sampled_std(full) == pytest.approx(0.5, rel=0.05)
    with pytest.raises(ModelError, match="all 1000 steps"):
        make_scheduler({**GAUSSIAN_SPEC, "variance_type": "fixed_large"}, "ddpm", 250)


def test_speed_up_keeps_outputs():
    net = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [8, 8],
           "attention_levels": [False, True], "num_res_blocks": 1, "norm_num_groups": 8, "num_head_channels": 8}
    torch.manual_seed(0)
    unet = build_unet(net)["unet"].eval()
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([10.0, 900.0])
    with torch.inference_mode():
        ref = unet(x, timesteps=t)
        speed_up(unet, torch.channels_last)
        fast = unet(x.contiguous(memory_format=torch.channels_last), timesteps=t)
    assert any(getattr(m, "use_flash_attention", False) for m in unet.modules())
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)


def test_resize_keeps_aspect_and_labels():
    img = np.zeros((20, 10), np.float32)
    img[:, 5:] = 1.0
    lab = (img * 3).astype(np.int64)
    out, lout = resize(img, 8), resize(lab, 8, label=True)
    assert out.shape == lout.shape == (8, 8)
    assert set(np.unique(lout)) <= {0, 3} and lout.dtype == np.int64
    assert out[:, :2].max() == 0  # padding left and right of the narrow axis


@pytest.mark.parametrize("extra", [{"objective": "ddpm"}, {"objective": "rflow", "conditioned": "1"},
                                   {"objective": "ddpm", "dims": "3", "size": "8", "n_subjects": "4"},
                                   {"objective": "ddpm", "dims": "3", "size": "8", "n_subjects": "4", "patch": "2"}])
def test_trainer_resume_is_exact_and_exports(tmp_path, extra):
    settings = {**TINY, **extra}
    size, dims = int(settings["size"]), int(settings.get("dims", 2))
    cfg = TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu", extra=settings)
    a = DiffusionTrainer(cfg)
    if dims == 3:  # 3D trains in channels-last memory (faster on CPU)
        conv = next(m for m in a.unet.modules() if isinstance(m, torch.nn.Conv3d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    a.train_step(0)
    torch.save(a.state_dict(), tmp_path / "s.pt")  # the loop saves like this and loads with weights_only=True
    loss_a = a.train_step(1)["loss"]
    b = DiffusionTrainer(cfg)
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert b.train_step(1)["loss"] == pytest.approx(loss_a, abs=1e-6)
    assert b.preview().shape == (size, size)
    b.export(tmp_path / "m", {"training": {"seed": 3}})
    model = load_diffusion(tmp_path / "m")
    assert model.shape == (size,) * dims and model.objective == extra["objective"]
    assert (model.label_nc is not None) == ("conditioned" in extra)
    if "patch" in extra:  # a patched network samples shapes in multiples of patch x its downsampling
        assert model.network_shape((12,) * dims) == (12,) * dims
        with pytest.raises(InputError, match="multiple of 4"):
            model.network_shape((10,) * dims)


def test_sampler_steps_become_the_cards_default_steps(tmp_path):
    cfg = lambda **kw: TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",  # noqa: E731
                                   extra={**TINY, "sampler": "ddpm", **kw})
    DiffusionTrainer(cfg(sampler_steps="100")).export(tmp_path / "m", {})
    card = load_diffusion(tmp_path / "m").extra["card"]
    assert card["default_sampler"] == "ddpm" and card["default_steps"] == 100
    DiffusionTrainer(cfg()).export(tmp_path / "plain", {})
    assert "default_steps" not in load_diffusion(tmp_path / "plain").extra["card"]
    with pytest.raises(InputError, match="sampler_steps must be between 1 and 1000"):
        DiffusionTrainer(cfg(sampler_steps="0"))


@pytest.mark.parametrize("prediction, own", [("epsilon", lambda snr: snr), ("sample", lambda snr: 1.0),
                                               ("v_prediction", lambda snr: snr + 1)])
def test_min_snr_weighting_weighs_each_timestep_as_min_snr_gamma_in_x0_terms(prediction, own):
    cfg = TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                      extra={**TINY, "prediction": prediction, "min_snr_gamma": "5"})
    tr = DiffusionTrainer(cfg)
    t = torch.tensor([0, 300, 999])
    a = tr.noise_scheduler.alphas_cumprod[t]
    snr = a / (1 - a)
    assert snr[0] > 5 > snr[2]  # the cap binds at low noise, not at high noise
    w = tr._min_snr_weights(t)
    assert torch.allclose(w * torch.as_tensor(own(snr)), torch.minimum(snr, torch.tensor(5.0)), rtol=1e-5)
    assert np.isfinite(tr.train_step(0)["loss"])
    with pytest.raises(InputError, match="min_snr_gamma needs objective=ddpm"):
        DiffusionTrainer(TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                                     extra={**TINY, "objective": "rflow", "min_snr_gamma": "5"}))


def test_class_balance_weighs_rare_labels_up_and_keeps_the_mean_voxel_weight_at_one():
    cfg = TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                      extra={**TINY, "prediction": "sample", "class_balance": "0.5"})
    tr = DiffusionTrainer(cfg)
    lab = tr.labels
    share = torch.bincount(lab.flatten()).double() / lab.numel()
    w = tr.class_weights.double()
    assert float(w[lab].mean()) == pytest.approx(1.0, rel=1e-5)
    present = torch.nonzero(share > 0).flatten()
    ratio = w[present] * share[present] ** 0.5  # share ** -0.5 up to one factor
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4)
    assert w[share.argmin()] > 1 > w[share.argmax()]
    flat = DiffusionTrainer(TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                                        extra={**TINY, "class_balance": "0"}))
    assert torch.allclose(flat.class_weights[torch.unique(flat.labels)], torch.tensor(1.0))
    assert np.isfinite(tr.train_step(0)["loss"])
    with pytest.raises(InputError, match="class_balance must be 0 or more"):
        DiffusionTrainer(TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                                     extra={**TINY, "class_balance": "-1"}))


def test_cosine_lr_schedule_sets_each_steps_rate_and_the_default_keeps_lr():
    """lr_schedule=cosine: --lr at step 0, half at the middle of the planned steps, near 0 at the end; the optimiser
    steps with that rate. The default leaves --lr as given."""
    assert learning_rate(1e-3, "cosine", 0, 100) == pytest.approx(1e-3)
    assert learning_rate(1e-3, "cosine", 50, 100) == pytest.approx(5e-4)
    assert learning_rate(1e-3, "cosine", 99, 100) < 1e-6
    assert learning_rate(1e-3, "constant", 99, 100) == 1e-3
    cfg = TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, steps=4, device="cpu",
                      extra={**TINY, "lr_schedule": "cosine"})
    tr = DiffusionTrainer(cfg)
    for step in range(3):
        tr.train_step(step)
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 2 / 4)))
    plain = DiffusionTrainer(TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, steps=4, device="cpu",
                                         extra=TINY))
    plain.train_step(3)
    assert plain.optimizer.param_groups[0]["lr"] == 1e-3
    with pytest.raises(InputError, match="lr_schedule must be one of constant, cosine"):
        DiffusionTrainer(TrainConfig(sample="phantom", seed=3, device="cpu", extra={**TINY, "lr_schedule": "step"}))


def test_class_balance_steps_weighs_the_first_steps_only():
    """With class_balance_steps=n, step n and later have the plain loss (same seed: same weights and batch)."""
    def loss_at(step, **extra):
        cfg = TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                          extra={**TINY, "prediction": "sample", **extra})
        return DiffusionTrainer(cfg).train_step(step)["loss"]
    plain = loss_at(5)
    assert loss_at(5, class_balance="0.5", class_balance_steps="5") == pytest.approx(plain, rel=1e-6)
    assert loss_at(4, class_balance="0.5", class_balance_steps="5") != pytest.approx(loss_at(4), rel=1e-3)
    with pytest.raises(InputError, match="class_balance_steps needs class_balance"):
        DiffusionTrainer(TrainConfig(sample="phantom", seed=3, device="cpu",
                                     extra={**TINY, "class_balance_steps": "5"}))


@pytest.mark.parametrize("flip, mirrored", [("1", True), ("0", False)])
def test_flip_setting_decides_whether_training_items_are_mirrored(monkeypatch, flip, mirrored):
    """flip=0 trains on the items as they are (lateralised anatomy); the default mirrors about half of them."""
    cfg = TrainConfig(sample="phantom", seed=3, batch_size=8, lr=1e-3, device="cpu", extra={**TINY, "flip": flip})
    tr = DiffusionTrainer(cfg)
    seen = {}
    add_noise = tr.noise_scheduler.add_noise

    def recorded(x0, noise, t):
        seen["x0"] = x0
        return add_noise(x0, noise, t)

    monkeypatch.setattr(tr.noise_scheduler, "add_noise", recorded)
    g = tr.generator.get_state()
    tr.train_step(0)
    tr.generator.set_state(g)
    idx = torch.randint(len(tr.images), (8,), generator=tr.generator)
    as_is = [bool(torch.equal(a, b)) for a, b in zip(seen["x0"], tr.images[idx])]
    assert (not all(as_is)) == mirrored
    assert all(torch.equal(a, b) or torch.equal(a, b.flip(-1)) for a, b in zip(seen["x0"], tr.images[idx]))


def test_acquisition_noise_is_measured_on_the_training_background_and_added_to_samples(tmp_path):
    """acquisition_noise=rician: the card records the background noise of the training images (the
    phantom renderer's Rician noise, downsampled); sampling adds it to the noise-free result, reproducibly
    per seed, and leaves it out when asked."""
    from napari_medgen.models.acquisition_noise import estimate
    from napari_medgen.progress import run_to_completion
    from napari_medgen.tasks.sample import sample
    from napari_medgen.training.diffusion_trainer import sample_data

    cfg = TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                      extra={**TINY, "size": "32", "n_subjects": "8", "acquisition_noise": "rician"})
    tr = DiffusionTrainer(cfg)  # 32 x 32: enough background 3+ pixels from the body to measure the noise on
    images, labels, _ = sample_data("phantom", 2, 32, n_subjects=8)
    assert tr.noise.sigma == pytest.approx(estimate(np.stack(images), np.stack(labels), "rician").sigma)
    assert tr.noise.sigma > 0
    tr.export(tmp_path / "m", {"training": {"seed": 3}})
    draw = lambda **kw: run_to_completion(sample(tmp_path / "m", n=2, steps=3, seed=5, device="cpu", **kw))  # noqa: E731
    plain, noisy, again = draw(acquisition_noise=False), draw(), draw()
    assert "acquisition_noise" in noisy.metadata and "acquisition_noise" not in plain.metadata
    np.testing.assert_array_equal(noisy.data, again.data)
    added = noisy.data - plain.data
    assert 0.5 * tr.noise.sigma < added.std() < 3 * tr.noise.sigma
    assert (noisy.data >= 0).all()  # a magnitude image
    with pytest.raises(InputError, match="Unknown acquisition noise"):
        DiffusionTrainer(TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                                     extra={**TINY, "acquisition_noise": "poisson"}))


def test_velocity_prediction_trains_on_the_velocity_and_the_sampler_inverts_it(monkeypatch):
    """prediction=v_prediction: a training step's target is sqrt(a) * noise - sqrt(1 - a) * x0 of the batch it
    noised, and the card's scheduler turns a perfect velocity back into x0."""
    from napari_medgen.training import diffusion_trainer

    cfg = TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                      extra={**TINY, "prediction": "v_prediction"})
    trainer = DiffusionTrainer(cfg)
    assert trainer.scheduler_spec["prediction_type"] == "v_prediction"
    seen: dict[str, torch.Tensor] = {}
    add_noise, mse = trainer.noise_scheduler.add_noise, diffusion_trainer.F.mse_loss

    def recorded_add_noise(x0, noise, t):
        seen.update(x0=x0, noise=noise, t=t)
        return add_noise(x0, noise, t)

    def recorded_mse(pred, target, **kwargs):
        seen["target"] = target
        return mse(pred, target, **kwargs)

    monkeypatch.setattr(trainer.noise_scheduler, "add_noise", recorded_add_noise)
    monkeypatch.setattr(diffusion_trainer.F, "mse_loss", recorded_mse)
    assert np.isfinite(trainer.train_step(0)["loss"])
    a = trainer.noise_scheduler.alphas_cumprod[seen["t"]].view(-1, 1, 1, 1)
    torch.testing.assert_close(seen["target"], a.sqrt() * seen["noise"] - (1 - a).sqrt() * seen["x0"])
    x0, noise, t = torch.rand(1, 1, 16, 16), torch.randn(1, 1, 16, 16), torch.tensor([600])
    v = trainer.noise_scheduler.get_velocity(x0, noise, t)
    sched = make_scheduler(trainer.scheduler_spec, "ddim", 1000)
    xt = trainer.noise_scheduler.add_noise(x0, noise, t)
    _, pred_x0 = sched.step(v, 600, xt)
    torch.testing.assert_close(pred_x0, x0, atol=1e-4, rtol=1e-4)
    with pytest.raises(Exception, match="v_prediction"):
        DiffusionTrainer(TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                                     extra={**TINY, "prediction": "velocity"}))


def test_init_starts_from_a_models_weights_and_refuses_another_network(tmp_path):
    """init=MODEL: the network (and the exported average) start from that model's weights; a model with
    another network or objective is refused with its name and what differs."""
    from napari_medgen.errors import InputError

    cfg = TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu", extra=dict(TINY))
    first = DiffusionTrainer(cfg)
    for _ in range(3):
        first.train_step(0)
    first.export(tmp_path / "first", {})
    saved = load_diffusion(tmp_path / "first").unet.state_dict()
    tuned = DiffusionTrainer(TrainConfig(sample="phantom", seed=4, batch_size=2, lr=1e-3, device="cpu",
                                         extra={**TINY, "init": str(tmp_path / "first")}))
    fresh = DiffusionTrainer(TrainConfig(sample="phantom", seed=4, batch_size=2, lr=1e-3, device="cpu", extra=dict(TINY)))
    for name, value in saved.items():
        torch.testing.assert_close(tuned.unet.state_dict()[name], value.float())
        torch.testing.assert_close(tuned.ema.state_dict()[name], value.float())
    assert any(not torch.equal(fresh.unet.state_dict()[k], v.float()) for k, v in saved.items())
    with pytest.raises(InputError, match=r"first' has another network .*channels"):
        DiffusionTrainer(TrainConfig(sample="phantom", seed=4, batch_size=2, lr=1e-3, device="cpu",
                                     extra={**TINY, "channels": "8,16", "init": str(tmp_path / "first")}))
    with pytest.raises(InputError, match=r"another noise schedule .*prediction_type"):
        DiffusionTrainer(TrainConfig(sample="phantom", seed=4, batch_size=2, lr=1e-3, device="cpu",
                                     extra={**TINY, "prediction": "sample", "init": str(tmp_path / "first")}))
    # clip_sample changes sampling only: a fine-tuned model may set it either way
    unclipped = DiffusionTrainer(TrainConfig(sample="phantom", seed=4, batch_size=2, lr=1e-3, device="cpu",
                                             extra={**TINY, "clip_sample": False, "init": str(tmp_path / "first")}))
    assert unclipped.scheduler_spec["clip_sample"] is False and first.scheduler_spec["clip_sample"] is True


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_a_cards_clip_sample_reaches_the_sampler(sampler):
    """A predicted clean image outside [-1, 1] is clipped by default (MONAI's) and kept with clip_sample false."""
    spec = {"objective": "ddpm", "num_train_timesteps": 1000, "prediction_type": "sample",
            "schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195}
    x0 = torch.full((1, 1, 4, 4), 3.0)  # the network's prediction (x0 objective)
    xt = torch.zeros(1, 1, 4, 4)
    for clip, expected in ((None, 1.0), (True, 1.0), (False, 3.0)):
        sched = make_scheduler(spec if clip is None else {**spec, "clip_sample": clip}, sampler, 10)
        _, pred_x0 = sched.step(x0, int(sched.timesteps[0]), xt)
        torch.testing.assert_close(pred_x0, torch.full_like(x0, expected))


@pytest.mark.parametrize("name", sorted(shipped_models("diffusion")))
def test_shipped_models_load(name):
    model = load_diffusion(shipped_models("diffusion")[name])
    assert model.normalization and model.shape and model.extra["card"]["training"]["command"].startswith("medgen")


def test_shipped_phantom_model_draws_the_heart_on_its_side():
    """Quality: the unconditional 2D phantom model (trained without left-right mirroring) draws the heart
    where the training phantoms have it, not mirrored (structure_presence.Measure.hearts_in_place), with the
    myocardium's ring round its blood pool."""
    from napari_medgen.progress import run_to_completion
    from napari_medgen.tasks import structure_presence as sp
    from napari_medgen.tasks.sample import sample
    from napari_medgen.training.diffusion_trainer import sample_data

    path = shipped_models("diffusion")["diffusion_phantom2d"]
    size = load_diffusion(path).shape[-1]
    train, train_lab = (np.stack(x) for x in sample_data("phantom", 2, size)[:2])
    samples = run_to_completion(sample(path, n=8, seed=3, device="cpu")).data[:, 0]  # its default sampler
    measure = sp.Measure.from_training(train, train_lab)
    segmented = measure.segment(samples)
    in_place = measure.hearts_in_place(segmented)
    assert in_place.mean() >= 0.75, in_place  # 8 of 8; the model trained on mirrored slices: 2 of 8
    assert measure.rates(segmented)["myocardium"] >= 0.75  # the ring round the blood pool: 8 of 8; 700 steps: 0


def test_shipped_3d_phantom_model_draws_every_structure():
    """Quality: the 3D phantom model's samples (seed 3; the ledger draws seed 0) hold every structure of the
    phantom (``structure_presence``: segmented by intensity, each structure's largest piece of a plausible
    size in its place): body, lungs, LV blood pool, myocardium, RV, spine and a tumour."""
    from napari_medgen.progress import run_to_completion
    from napari_medgen.tasks import structure_presence as sp
    from napari_medgen.tasks.sample import sample
    from napari_medgen.training.diffusion_trainer import sample_data

    path = shipped_models("diffusion")["diffusion_phantom3d"]
    size = load_diffusion(path).shape[-1]
    train, train_lab = (np.stack(x) for x in sample_data("phantom", 3, size)[:2])
    samples = run_to_completion(sample(path, n=4, seed=3, device="cpu")).data  # its default sampler (DDIM 50)
    measure = sp.Measure.from_training(train, train_lab)
    rates = measure.rates(measure.segment(samples))
    assert min(rates.values()) >= 0.75, rates  # ledger (20 samples, seed 0): LV blood 0.95, the rest 1.0


def test_shipped_mask_model_respects_the_mask():
    """Quality: with the same noise, swapping the conditioning mask changes the sample where the masks'
    classes differ: the sample difference correlates with the difference of class-mean images."""
    from napari_medgen.io.volume import Volume
    from napari_medgen.progress import run_to_completion
    from napari_medgen.tasks.sample import sample
    from napari_medgen.training.diffusion_trainer import sample_data

    path = shipped_models("diffusion").get("diffusion_phantom2d_mask")
    if path is None:
        pytest.skip("the mask-conditioned model is not shipped")
    model = load_diffusion(path)
    images, labels, _ = sample_data("phantom", 2, model.shape[0], n_subjects=8)
    means = np.array([np.mean([i[lab == c].mean() for i, lab in zip(images, labels) if (lab == c).any()])
                      for c in range(model.label_nc)])
    _, held, spacing = sample_data("phantom", 2, model.shape[0], held_out=True, n_subjects=16)
    a, b = held[0], held[1]
    samples = [run_to_completion(sample(model, sampler="ddim", steps=20, seed=0, device="cpu",
                                        mask=Volume(m[None].astype(np.uint8), spacing, is_label=True),
                                        label_map=["identity"])).data[0, 0]
               for m in (a, b)]
    corr = np.corrcoef((samples[0] - samples[1]).ravel(), (means[a] - means[b]).ravel())[0, 1]
    assert corr > 0.5  # measured 0.79 for these masks (0.71-0.79 over three pairs)


def test_class_balance_fade_keeps_the_weights_at_low_noise_and_drops_them_at_high():
    """class_balance_fade: each item's weights are 1 + (w - 1) * alpha_bar_t, so full at t=0, about 1 at t=999;
    train_step uses them (same seed, another loss); it needs class_balance and the ddpm objective."""
    def trainer(**extra):
        return DiffusionTrainer(TrainConfig(sample="phantom", seed=3, batch_size=2, lr=1e-3, device="cpu",
                                            extra={**TINY, "prediction": "sample", "class_balance": "0.5", **extra}))
    tr = trainer(class_balance_fade="1")
    lab = tr.labels[:2]
    full = tr.class_weights[lab][:, None]
    assert float(full.max()) > 2  # the rare labels weigh more: there is something to fade
    w = tr._voxel_weights(lab, torch.tensor([0, 999]), step=0)
    alpha_bar = tr.noise_scheduler.alphas_cumprod
    assert torch.allclose(w[0], 1 + (full[0] - 1) * alpha_bar[0]) and float(alpha_bar[0]) > 0.99
    assert float((w[1] - 1).abs().max()) < 0.01 * float((full[1] - 1).abs().max())
    assert torch.equal(trainer()._voxel_weights(lab, torch.tensor([0, 999]), step=0), full)
    assert tr.train_step(0)["loss"] != pytest.approx(trainer().train_step(0)["loss"], rel=1e-4)
    with pytest.raises(InputError, match="class_balance_fade needs class_balance"):
        DiffusionTrainer(TrainConfig(sample="phantom", seed=3, device="cpu", extra={**TINY, "class_balance_fade": "1"}))
    with pytest.raises(InputError, match="class_balance_fade needs class_balance and objective=ddpm"):
        trainer(class_balance_fade="1", objective="rflow")
