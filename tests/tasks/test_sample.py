"""tasks/sample.py on tiny untrained models: previews, cancel, determinism, masks, geometry, MONAI parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.inferers import DiffusionInferer

from napari_medgen.errors import Cancelled, InputError, ModelError
from napari_medgen.io.volume import Volume
from napari_medgen.models.diffusion import DiffusionModel, build_unet, make_scheduler
from napari_medgen.progress import CancelToken, collect, run_to_completion
from napari_medgen.tasks.sample import sample, supported_samplers
from napari_medgen.tasks.sample_inputs import mask_inputs

NET = {"in_channels": 1, "out_channels": 1, "channels": [8, 8], "attention_levels": [False, False],
       "num_res_blocks": 1, "norm_num_groups": 8, "num_head_channels": 8}
DDPM = {"objective": "ddpm", "num_train_timesteps": 1000, "schedule": "scaled_linear_beta",
        "beta_start": 0.0015, "beta_end": 0.0195}
RFLOW = {"objective": "rflow", "num_train_timesteps": 1000, "use_discrete_timesteps": False}


def tiny(dims: int = 2, sched: dict = DDPM, label_nc: int | None = None, size: int = 16) -> DiffusionModel:
    torch.manual_seed(0)
    net = {"spatial_dims": dims, **NET, **({"label_nc": label_nc, "spade_intermediate_channels": 8} if label_nc else {})}
    unet = build_unet(net)["unet"].eval()
    return DiffusionModel(unet, dict(sched), (size,) * dims, spacing=(2.0, 2.0, 4.0), source="tiny",
                          label_names={i: f"c{i}" for i in range(label_nc)} if label_nc else None)


@pytest.mark.parametrize("sampler, sched", [("ddim", DDPM), ("ddpm", DDPM), ("rflow", RFLOW)])
def test_previews_and_result(sampler, sched):
    progress, vol = collect(sample(tiny(sched=sched), sampler=sampler, steps=6, n=3, preview_every=2, device="cpu"))
    assert [p.step for p in progress] == [0, 1, 2, 4, 6]
    assert all(p.preview.data.shape == (3, 1, 16, 16) and p.preview.spacing == vol.spacing for p in progress)
    assert vol.data.shape == (3, 1, 16, 16) and vol.spacing == (2.0, 2.0, 4.0)
    assert np.isfinite(vol.data).all()
    # the last x0 estimate is close to the final sample (the chain ends at the clean image)
    assert np.abs(progress[-1].preview.data - vol.data).mean() < np.abs(progress[1].preview.data - vol.data).mean() + 1e-6


def test_seed_determines_samples():
    m = tiny()
    a = run_to_completion(sample(m, steps=3, n=2, seed=1, device="cpu")).data
    b = run_to_completion(sample(m, steps=3, n=2, seed=1, device="cpu")).data
    c = run_to_completion(sample(m, steps=3, n=2, seed=2, device="cpu")).data
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3
    assert np.abs(a[0] - a[1]).mean() > 1e-3  # the n samples differ from each other


def test_a_cards_known_defects_come_with_every_result():
    """A model card's ``known_defects`` reach the user as notes on the result (the dock shows them as
    notifications, ``medgen sample`` prints them), named with the model; a model without them adds no note."""
    m = tiny()
    assert "notes" not in run_to_completion(sample(m, steps=2, device="cpu")).metadata
    m.extra["card"] = {"known_defects": ["draws two tumours"]}
    m.source = "/models/phantom3d.json"
    vol = run_to_completion(sample(m, steps=2, device="cpu"))
    assert vol.metadata["notes"] == ["phantom3d: known defect: draws two tumours"]


def test_cancel_within_one_step():
    token = CancelToken()
    task = sample(tiny(), steps=20, n=1, preview_every=1, cancel=token, device="cpu")
    assert next(task).step == 0
    assert next(task).step == 1
    token.cancel()
    with pytest.raises(Cancelled):
        next(task)


@pytest.mark.parametrize("fast", [False, True])
def test_same_as_monai_stock_inferer(fast):
    """Our loop (previews, cancel) computes what MONAI's DiffusionInferer.sample computes."""
    m = tiny()
    ours = run_to_completion(sample(m, sampler="ddim", steps=5, n=2, seed=3, device="cpu", fast=fast)).data
    noise = torch.randn((2, 1, 16, 16), generator=torch.Generator().manual_seed(3))
    sched = make_scheduler(DDPM, "ddim", 5)
    m.unet.to(memory_format=torch.contiguous_format)
    stock = DiffusionInferer(sched).sample(noise, m.unet, sched, verbose=False)
    np.testing.assert_allclose(ours, stock.numpy(), atol=1e-4)


class _Divided(torch.nn.Module):
    """A network whose noise prediction is divided by ``by`` (what epsilon scaling samples with)."""

    def __init__(self, net: torch.nn.Module, by: float):
        super().__init__()
        self.net, self.by = net, by

    def forward(self, *args, **kwargs):
        return self.net(*args, **kwargs) / self.by


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_epsilon_scaling_divides_the_predicted_noise(sampler):
    """The card's epsilon_scaling samples what MONAI's inferer samples with the network's output divided by it;
    the override wins over the card, and 1 is plain sampling."""
    m = tiny()
    _wake(m.unet)
    m.extra["card"] = {"epsilon_scaling": 1.05}
    scaled = run_to_completion(sample(m, sampler=sampler, steps=5, n=2, seed=3, device="cpu", fast=False))
    noise = torch.randn((2, 1, 16, 16), generator=torch.Generator().manual_seed(3))
    sched = make_scheduler(DDPM, sampler, 5)
    gen = {"generator": torch.Generator().manual_seed(4)} if sampler == "ddpm" else {}  # sample()'s step noise: seed + 1
    x = noise
    with torch.inference_mode():
        for t in sched.timesteps:
            x, _ = sched.step(_Divided(m.unet, 1.05)(x, t.float().expand(2)), t, x, **gen)
    np.testing.assert_allclose(scaled.data, x.numpy(), atol=1e-4)
    assert scaled.metadata["epsilon_scaling"] == 1.05
    plain = run_to_completion(sample(m, sampler=sampler, steps=5, n=2, seed=3, device="cpu", fast=False,
                                     epsilon_scale=1.0))
    assert np.abs(plain.data - scaled.data).max() > 1e-3 and "epsilon_scaling" not in plain.metadata


def test_a_cards_default_steps_apply_to_its_default_sampler_only():
    m = tiny()
    m.extra["card"] = {"default_sampler": "ddpm", "default_steps": 4}
    assert run_to_completion(sample(m, n=1, device="cpu")).metadata["steps"] == 4  # its sampler, its steps
    assert run_to_completion(sample(m, sampler="ddim", n=1, device="cpu")).metadata["steps"] == 50
    assert run_to_completion(sample(m, steps=3, n=1, device="cpu")).metadata["steps"] == 3  # asked for
    for bad in (0, 2.5, "many", True):
        m.extra["card"]["default_steps"] = bad
        with pytest.raises(ModelError, match="default_steps must be a whole number"):
            run_to_completion(sample(m, n=1, device="cpu"))


def test_epsilon_scaling_refused_where_it_does_not_apply():
    m = tiny()
    m.extra["card"] = {"epsilon_scaling": 1.5}
    with pytest.raises(ModelError, match="between 1 and 1.2"):
        run_to_completion(sample(m, steps=2, device="cpu"))
    m.extra["card"] = {"epsilon_scaling": "strong"}
    with pytest.raises(ModelError, match="number between 1 and 1.2, got 'strong'"):
        run_to_completion(sample(m, steps=2, device="cpu"))
    with pytest.raises(ModelError, match="rflow sampling"):
        run_to_completion(sample(tiny(sched=RFLOW), steps=2, device="cpu", epsilon_scale=1.01))
    with pytest.raises(ModelError, match="predicts the noise"):
        run_to_completion(sample(tiny(sched={**DDPM, "prediction_type": "v_prediction"}), steps=2, device="cpu",
                                 epsilon_scale=1.01))


def test_traced_network_computes_what_the_eager_one_does(monkeypatch):
    """Long runs on CPUs without native bf16 trace the network: same samples, the traced graph used."""
    import napari_medgen.tasks.sample as sample_mod

    traced_calls = []
    real_trace = sample_mod.freeze_trace
    monkeypatch.setattr(sample_mod, "native_bf16_cpu", lambda: False)
    monkeypatch.setattr(sample_mod, "TRACE_MIN_CALLS", 1)
    monkeypatch.setattr(sample_mod, "freeze_trace", lambda *a: traced_calls.append(a) or real_trace(*a))
    for label_nc in (None, 3):
        m = tiny(label_nc=label_nc)
        mask = Volume(np.random.default_rng(0).integers(0, 3, (1, 16, 16)).astype(np.uint8), is_label=True) \
            if label_nc else None
        same = ["identity"] if label_nc else []  # the mask's values are the model's classes
        eager = run_to_completion(sample(m, sampler="ddim", steps=4, n=2, seed=1, device="cpu", fast=False, mask=mask,
                                         label_map=same))
        traced = run_to_completion(sample(m, sampler="ddim", steps=4, n=2, seed=1, device="cpu", fast=True, mask=mask,
                                          label_map=same))
        np.testing.assert_allclose(traced.data, eager.data, atol=1e-4)
    assert len(traced_calls) == 2


def test_autocast_only_where_the_hardware_pays(monkeypatch):
    import napari_medgen.device as device

    monkeypatch.setattr(device, "native_bf16_cpu", lambda: True)
    assert device.inference_autocast(torch.device("cpu")).fast_dtype == torch.bfloat16
    monkeypatch.setattr(device, "native_bf16_cpu", lambda: False)
    assert not isinstance(device.inference_autocast(torch.device("cpu")), torch.autocast)


def test_3d_sample_shape():
    vol = run_to_completion(sample(tiny(dims=3, size=8), steps=2, n=2, device="cpu"))
    assert vol.data.shape == (2, 8, 8, 8)


def test_mask_conditioning_and_geometry():
    m = tiny(label_nc=3)
    mask = Volume(np.zeros((1, 16, 16), np.uint8), spacing=(1.5, 1.5, 3.0), origin=(10.0, 20.0, 30.0), is_label=True)
    mask.data[0, 4:12, 4:12] = 2
    vol = run_to_completion(sample(m, steps=2, n=2, mask=mask, device="cpu", label_map=["identity"]))
    assert vol.data.shape == (2, 1, 16, 16)
    assert vol.spacing == mask.spacing and vol.origin == mask.origin


def test_one_sample_per_mask_of_a_series():
    m = tiny(label_nc=3)
    masks = np.zeros((3, 1, 16, 16), np.uint8)
    masks[1, 0, :8] = 1
    masks[2, 0, 8:] = 2
    vol = run_to_completion(sample(m, steps=2, mask=Volume(masks, is_label=True), device="cpu", label_map=["identity"]))
    assert vol.data.shape == (3, 1, 16, 16)
    with pytest.raises(InputError, match="3 masks were given for 2 samples"):
        run_to_completion(sample(m, steps=2, n=2, mask=Volume(masks, is_label=True), device="cpu",
                                 label_map=["identity"]))


def test_mask_errors():
    m = tiny(label_nc=3)
    lab = Volume(np.zeros((1, 16, 16), np.uint8), is_label=True, metadata={"source": "L.nii.gz"})
    with pytest.raises(InputError, match="mask-conditioned: give a label map"):
        run_to_completion(sample(m, steps=2, device="cpu"))
    bad = lab.data.copy()
    bad[0, 0, 0] = 5
    with pytest.raises(InputError, match=r"Mask 'L.nii.gz' has label values that model 'tiny' has no class for: "
                                         r"5 \(unnamed\)\. The model's classes: 0 c0, 1 c1, 2 c2"):
        run_to_completion(sample(m, steps=2, mask=lab.with_data(bad), device="cpu", label_map=["identity"]))
    with pytest.raises(InputError, match="not mask-conditioned"):
        run_to_completion(sample(tiny(), steps=2, mask=lab, device="cpu"))
    with pytest.raises(InputError, match="Slice 7 is outside the mask, which has 3 slices"):
        run_to_completion(sample(m, steps=2, mask=lab.with_data(np.zeros((3, 16, 16), np.uint8)), slice_index=7,
                                 device="cpu"))


def test_masks_of_any_size_resampled_to_the_model_grid_and_back():
    """Issue 20: a real mask (several slices, another size) conditions a 2D 16 x 16 model; the samples come
    back on the mask's grid at the chosen slice."""
    m = tiny(label_nc=3)
    data = np.zeros((5, 40, 30), np.uint8)
    data[:, :20] = 2  # top half class 2
    data[2, 20:, :15] = 1
    mask = Volume(data, spacing=(0.5, 0.75, 2.0), origin=(1.0, 2.0, 3.0), is_label=True)
    seg, grid, notes = mask_inputs(m, mask, 2, ["identity"])
    assert notes == {}  # no value took another class number
    assert seg.shape == (1, 3, 16, 16) and grid.shape == (1, 40, 30)
    classes = seg[0].argmax(0).numpy()
    assert (classes[:8] == 2).all() and (classes[8:, :8] == 1).all() and (classes[8:, 8:] == 0).all()
    vol = run_to_completion(sample(m, steps=2, n=2, mask=mask, device="cpu", label_map=["identity"]))
    assert vol.data.shape == (2, 1, 40, 30) and vol.spacing == mask.spacing
    assert np.allclose(vol.origin, (1.0, 2.0, 3.0 + 2 * 2.0))  # the middle slice (index 2)
    m3 = tiny(dims=3, label_nc=3, size=8)
    vol = run_to_completion(sample(m3, steps=1, mask=mask, device="cpu", label_map=["identity"]))
    assert vol.data.shape == (1, 5, 40, 30) and vol.origin == mask.origin


def test_samplers_filtered_per_model():
    assert supported_samplers(tiny()) == ("ddpm", "ddim")
    assert supported_samplers(tiny(sched=RFLOW)) == ("rflow",)


def test_sampler_must_fit_objective():
    with pytest.raises(ModelError, match="samples with ddim or ddpm, not 'rflow'"):
        run_to_completion(sample(tiny(), sampler="rflow", steps=2, device="cpu"))
    with pytest.raises(ModelError, match="between 1 and 1000"):
        run_to_completion(sample(tiny(), sampler="ddim", steps=5000, device="cpu"))
    with pytest.raises(InputError, match="between 1 and"):
        run_to_completion(sample(tiny(), n=0, device="cpu"))


def test_cli_writes_samples_and_refuses_bad_mask(tmp_path, capsys):
    from napari_medgen.cli import main
    from napari_medgen.io.readers import read_volume
    from napari_medgen.io.writers import write_volume
    from napari_medgen.models.store import save_model

    m = tiny(label_nc=3)
    _wake(m.unet)  # an output that depends on its input: --epsilon-scale changes the samples
    card = {"family": "diffusion", "network": {"spatial_dims": 2, **NET, "label_nc": 3, "spade_intermediate_channels": 8},
            "shape": [16, 16], "spacing": [2.0, 2.0, 4.0], "scheduler": DDPM}
    save_model(tmp_path / "diffusion_tiny", {"unet": m.unet}, card)
    mask = Volume(np.zeros((1, 16, 16), np.uint8), spacing=(1.0, 1.0, 3.0), origin=(5.0, 6.0, 7.0), is_label=True)
    mask.data[0, 3:9, 3:9] = 1
    write_volume(mask, tmp_path / "L.nii.gz")
    argv = ["--device", "cpu", "--quiet", "sample", "--model", str(tmp_path / "diffusion_tiny"), "--sampler", "ddim",
            "--steps", "2", "--n", "2", "--mask", str(tmp_path / "L.nii.gz"), "--map", "identity",
            "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    stack, one = read_volume(tmp_path / "out" / "samples.nii.gz"), read_volume(tmp_path / "out" / "sample_001.nii.gz")
    assert stack.data.shape == (2, 1, 16, 16) and one.data.shape == (1, 16, 16)
    np.testing.assert_allclose(one.origin, mask.origin, atol=1e-5)
    bad = mask.with_data(np.full((1, 16, 16), 4, np.uint8))
    write_volume(bad, tmp_path / "bad.nii.gz")
    assert main(argv) == 2  # the earlier result is not replaced without --overwrite
    assert "add --overwrite" in capsys.readouterr().err
    bad_argv = [*argv, "--overwrite"]
    bad_argv[bad_argv.index(str(tmp_path / "L.nii.gz"))] = str(tmp_path / "bad.nii.gz")
    assert main(bad_argv) == 2
    err = capsys.readouterr().err  # the card names no classes: only --map can say what 4 is
    assert "bad.nii.gz' has label values that model" in err and "no class for: 4 (unnamed)" in err
    assert "names none of its classes" in err
    assert read_volume(tmp_path / "out" / "sample_001.nii.gz").data.shape == (1, 16, 16)  # a failed run keeps it
    fewer = [*argv, "--overwrite"]
    fewer[fewer.index("--n") + 1] = "1"
    assert main(fewer) == 0
    assert sorted(f.name for f in (tmp_path / "out").glob("*.nii.gz")) == ["sample_000.nii.gz", "samples.nii.gz"]
    scaled = [*fewer, "--epsilon-scale", "1.1"]
    scaled[scaled.index("--out") + 1] = str(tmp_path / "scaled")
    assert main(scaled) == 0
    assert np.abs(read_volume(tmp_path / "scaled" / "sample_000.nii.gz").data
                  - read_volume(tmp_path / "out" / "sample_000.nii.gz").data).max() > 1e-3
    with pytest.raises(SystemExit) as exc:
        main([*scaled[:-2], "--epsilon-scale", "1.5"])
    assert exc.value.code == 2 and "--epsilon-scale" in capsys.readouterr().err
    overflow = [*argv, "--overwrite", "--seed", "99999999999999999999999"]
    with pytest.raises(SystemExit) as exc:
        main(overflow)
    assert exc.value.code == 2 and "--seed" in capsys.readouterr().err


# --- latent diffusion (AutoencoderKL + UNet in latent space) and conditioning vectors ---

AE = {"in_channels": 1, "out_channels": 1, "latent_channels": 3, "channels": [8, 8], "num_res_blocks": 1,
      "norm_num_groups": 8, "attention_levels": [False, False], "with_encoder_nonlocal_attn": False,
      "with_decoder_nonlocal_attn": False}


def _wake(net: torch.nn.Module) -> torch.nn.Module:
    """MONAI zero-initialises the UNet's residual and output convolutions (an untrained UNet outputs 0,
    whatever its input): give them small random values so that the output depends on x, t and the condition."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return net


def tiny_latent(dims: int = 2, cond: int = 4, concat: bool = False, scale: float = 0.7, size: int = 8) -> DiffusionModel:
    """A latent model: AutoencoderKL (downsampling 2) + UNet on 3-channel latents of ``size`` per axis;
    ``cond`` cross-attention values (0: none), also concatenated as input channels when ``concat``."""
    from monai.networks.nets import AutoencoderKL

    torch.manual_seed(0)
    ae = AutoencoderKL(spatial_dims=dims, **AE).eval()
    net = {"spatial_dims": dims, **NET, "in_channels": 3 + (cond if concat else 0), "out_channels": 3,
           **({"with_conditioning": True, "cross_attention_dim": cond} if cond else {})}
    return DiffusionModel(_wake(build_unet(net)["unet"]).eval(), dict(DDPM), (size,) * dims, in_channels=3,
                          spacing=(2.0, 2.0, 4.0), source="tiny_ldm", autoencoder=ae, scale_factor=scale)


@pytest.mark.parametrize("dims", [2, 3])
def test_latent_previews_decoded_and_result(dims):
    m = tiny_latent(dims, size=8 if dims == 2 else 4)
    image = (1, 16, 16) if dims == 2 else (8, 8, 8)
    progress, vol = collect(sample(m, steps=4, n=2, seed=5, condition=[0.1, 0.2, 0.3, 0.4], preview_every=2,
                                   device="cpu", fast=False))
    assert [p.step for p in progress] == [0, 1, 2, 4]
    assert progress[0].preview is None  # the starting noise is not decoded (a full-size decode for nothing)
    assert all(p.preview.data.shape == (2, *image) for p in progress[1:])  # decoded, not the latent
    assert vol.data.shape == (2, *image) and vol.spacing == (2.0, 2.0, 4.0) and np.isfinite(vol.data).all()
    np.testing.assert_allclose(progress[-1].preview.data, vol.data, atol=1e-4)  # last x0 estimate = result (DDIM)
    assert np.abs(progress[1].preview.data - vol.data).mean() > 1e-3  # the first estimate is not the result


@pytest.mark.parametrize("fast", [False, True])
def test_latent_same_as_monai_latent_inferer(fast, monkeypatch):
    """Our loop computes what MONAI's LatentDiffusionInferer.sample computes (cross-attention context,
    latents divided by scale_factor before decoding); with fast=True the network is traced with the context."""
    from monai.inferers import LatentDiffusionInferer

    import napari_medgen.tasks.sample as sample_mod
    from napari_medgen import device

    monkeypatch.setattr(device, "native_bf16_cpu", lambda: False)  # no autocast: the decoder in float32 too
    monkeypatch.setattr(sample_mod, "native_bf16_cpu", lambda: False)
    monkeypatch.setattr(sample_mod, "TRACE_MIN_CALLS", 1)
    m = tiny_latent()
    cond = [0.5, -1.0, 2.0, 0.0]
    ours = run_to_completion(sample(m, sampler="ddim", steps=4, n=2, seed=3, condition=cond, device="cpu",
                                    fast=fast)).data
    noise = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(3))
    sched = make_scheduler(DDPM, "ddim", 4)
    context = torch.tensor(cond).reshape(1, 1, 4).expand(2, 1, 4)
    with torch.inference_mode():
        stock = LatentDiffusionInferer(sched, scale_factor=0.7).sample(
            noise, m.autoencoder, m.unet.to(memory_format=torch.contiguous_format), sched, conditioning=context,
            mode="crossattn", verbose=False)
    np.testing.assert_allclose(ours[:, 0], stock[:, 0].numpy(), atol=1e-4)


def test_concatenated_condition_channels_and_tracing(monkeypatch):
    """A network that also takes the vector as extra input channels (the brain LDM bundle): traced = eager,
    and the condition changes the samples."""
    import napari_medgen.tasks.sample as sample_mod
    from napari_medgen import device

    monkeypatch.setattr(device, "native_bf16_cpu", lambda: False)
    monkeypatch.setattr(sample_mod, "native_bf16_cpu", lambda: False)
    monkeypatch.setattr(sample_mod, "TRACE_MIN_CALLS", 1)
    m = tiny_latent(concat=True)
    assert m.concat_channels == 4 and m.condition_size == 4
    kw = {"sampler": "ddim", "steps": 3, "n": 2, "seed": 1, "device": "cpu"}
    eager = run_to_completion(sample(m, condition="0,0.5,1,0", fast=False, **kw)).data
    traced = run_to_completion(sample(m, condition="0,0.5,1,0", fast=True, **kw)).data
    other = run_to_completion(sample(m, condition="1,0.5,1,0", fast=False, **kw)).data
    np.testing.assert_allclose(traced, eager, atol=1e-4)
    assert np.abs(other - eager).mean() > 1e-4


def test_condition_required_and_validated():
    m = tiny_latent()
    with pytest.raises(InputError, match=r"'tiny_ldm' is conditioned on 4 values: give them"):
        run_to_completion(sample(m, steps=2, device="cpu"))
    with pytest.raises(InputError, match=r"conditioned on 4 values; got 5 \(1, 2, 3, 4, 5\)"):
        run_to_completion(sample(m, steps=2, condition=[1, 2, 3, 4, 5], device="cpu"))
    with pytest.raises(InputError, match="must be numbers separated by commas"):
        run_to_completion(sample(m, steps=2, condition="0.5,age", device="cpu"))
    with pytest.raises(InputError, match="give 4 finite numbers"):
        run_to_completion(sample(m, steps=2, condition=[0, 1, float("nan"), 2], device="cpu"))
    with pytest.raises(InputError, match="takes no conditioning values"):
        run_to_completion(sample(tiny(), steps=2, condition=[1.0], device="cpu"))


def test_latent_shape_scale_and_memory_guard(monkeypatch):
    from napari_medgen.tasks import memory

    m = tiny_latent(cond=0)
    vol = run_to_completion(sample(m, steps=2, shape=(12, 20), device="cpu"))
    assert vol.data.shape == (1, 1, 12, 20) and m.shape == (6, 10)
    with pytest.raises(InputError, match=r"shape 10 x 20: each axis must be a positive multiple of 4 \(latents"):
        run_to_completion(sample(m, steps=2, shape=(10, 20), device="cpu"))
    with pytest.raises(InputError, match="not a latent model"):
        run_to_completion(sample(tiny(), steps=2, scale_factor=0.5, device="cpu"))
    with pytest.raises(InputError, match="positive number"):
        run_to_completion(sample(m, steps=2, scale_factor=0.0, device="cpu"))
    a = run_to_completion(sample(m, steps=2, seed=0, scale_factor=0.5, device="cpu")).data
    b = run_to_completion(sample(m, steps=2, seed=0, scale_factor=1.0, device="cpu")).data
    assert np.abs(a - b).mean() > 1e-3  # the scale factor is used
    # the guard probes the decoder (here said to need 1 GiB) and counts it once, however many samples
    probed = []

    def one_gib(module, run):
        probed.append(module)
        return memory.GIB

    monkeypatch.setattr(memory, "live_peak_bytes", one_gib)
    monkeypatch.setattr(memory, "free_bytes", lambda device: int(1.5 * memory.GIB))
    with pytest.raises(InputError, match=r"^Sampling 1 x 12x20 needs about 2(\.00\d)? GiB"):  # x MARGIN 2
        memory.check_sampling(m, 1, "cpu")
    monkeypatch.setattr(memory, "free_bytes", lambda device: int(2.5 * memory.GIB))
    memory.check_sampling(m, 3, "cpu")  # fits: the decoder decodes one sample at a time
    assert probed == [m.autoencoder, m.autoencoder]


def test_decoder_estimate_counts_live_outputs_only():
    """The decoder is estimated from the outputs alive at once (a chain of 6 convolutions holds 2), not
    from all outputs summed (7 here: the Sequential's own output too), which over-estimated the
    brain LDM's full-size decoder about 8x."""
    from napari_medgen.tasks import memory

    chain = torch.nn.Sequential(*[torch.nn.Conv2d(4, 4, 3, padding=1) for _ in range(6)])
    x = torch.zeros(1, 4, 32, 32)
    one = x.numel() * 4
    assert memory.output_bytes(chain, lambda: chain(x)) == 7 * one
    assert memory.live_peak_bytes(chain, lambda: chain(x)) == 2 * one


def test_cli_condition_and_bundle_overrides(tmp_path, capsys):
    """medgen sample on the published brain LDM bundle: named conditions, --set overrides, errors in one line."""
    from napari_medgen.cli import main
    from napari_medgen.io.readers import read_volume

    from ..models.test_bundle import BRAIN, REDUCED, publish

    folder = publish(BRAIN, tmp_path)
    sets = [a for k, v in REDUCED[BRAIN].items() for a in ("--set", f"{k}={json.dumps(v)}")]
    argv = ["--device", "cpu", "--quiet", "sample", "--model", str(folder), "--steps", "2", "--n", "2",
            "--shape", "32", "32", "32", *sets, "--out", str(tmp_path / "out")]
    assert main([*argv, "--condition", "age=1.5"]) == 2
    assert "'age' (Age) of model" in capsys.readouterr().err
    assert main([*argv, "--condition", "age=0.5,Brain volume=0.3"]) == 0
    stack = read_volume(tmp_path / "out" / "samples.nii.gz")
    assert stack.data.shape == (2, 32, 32, 32) and np.isfinite(stack.data).all()
