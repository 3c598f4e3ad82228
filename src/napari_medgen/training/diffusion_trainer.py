"""Trainer for family "diffusion" (MONAI DiffusionModelUNet / SPADEDiffusionModelUNet, 2D or 3D).

Objectives (``--set objective=...``): "ddpm" (predict the noise added by MONAI's DDPMScheduler,
samples with DDPM/DDIM) or "rflow" (predict the velocity ``x0 - noise`` of MONAI's
RFlowScheduler, samples with rectified flow). ``--set conditioned=1`` trains a SPADE model
conditioned on one-hot label maps. Other settings (``--set k=v``): ``dims`` 2|3, ``size`` (edge
of the square/cubic training grid, pixels), ``channels`` "32,64,64", ``attention`` "0,0,1" (default: none),
``res_blocks``, ``spade_channels``, ``ema``, ``prediction`` (ddpm: "epsilon" noise or "sample" x0) (decay of the exported weight average).

Data: ``--sample brain`` (axial slices of the shipped brain; every 5th slice is held back),
``--sample phantom`` (phantom subjects, seeds 0..n_subjects-1; seeds from 1000 are held back)
or ``--images DIR [--labels DIR]``. Images are scaled to [-1, 1] with percentile
normalisation (recorded in the card) and resized to the training grid (area averaging;
nearest for labels).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.schedulers import DDPMScheduler, RFlowScheduler

from ..data.normalize import normalize, percentile_spec
from ..device import resolve_device
from ..errors import InputError
from ..io.volume import Volume
from ..models.acquisition_noise import NoiseModel, estimate as estimate_noise
from ..models.diffusion import SAMPLERS_OF, build_unet, make_scheduler
from ..models.store import load_family, resolve_model, save_model
from .checkpoint import AttributeState
from .config import TrainConfig, family_settings
from .losses import class_frequency_weights
from .source import Sources, TrainingSource

SOURCES = Sources(folders="images[+labels]")
HELD_OUT_EVERY = 5  # brain: slice index % 5 == 0 is held back
PHANTOM_HELD_OUT_SEED = 1000
HELD_OUT = {"brain": f"axial slices z with z % {HELD_OUT_EVERY} == 0 (of those > 15 % labelled)",
            "phantom": f"phantom seeds from {PHANTOM_HELD_OUT_SEED} on"}  # by source kind, for the card
DDPM_SCHEDULE = {"schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195}
SAMPLING_ONLY = ("clip_sample",)  # scheduler settings that do not change what the network learns


def _ints(text: Any) -> list[int]:
    return [int(v) for v in str(text).replace(" ", "").split(",") if v]


def resize(arr: np.ndarray, size: int, label: bool = False) -> np.ndarray:
    """Pad (y, x) or (z, y, x) to a square/cube (edge value 0 after normalisation: background) and
    resize each axis to ``size`` (area averaging for images, nearest for labels)."""
    edge = max(arr.shape)
    pads = [((edge - s) // 2, edge - s - (edge - s) // 2) for s in arr.shape]
    fill = 0 if label else float(arr.min())
    arr = np.pad(arr, pads, constant_values=fill)
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None]
    mode = "nearest" if label else "area"
    out = F.interpolate(t, size=(size,) * arr.ndim, mode=mode)[0, 0].numpy()
    return out.astype(np.int64) if label else out


def sample_data(sample: str, dims: int, size: int, held_out: bool = False,
                n_subjects: int = 48) -> tuple[list[np.ndarray], list[np.ndarray], tuple[float, float, float]]:
    """Training (or held-back) images and label maps from shipped sample data.

    Returns (images, labels, spacing): arrays of shape (size,)*dims in raw intensities, and the
    (x, y, z) spacing in mm of the resized grid.
    """
    if sample == "brain":
        [(image, labels)] = TrainingSource("brain").pairs()
        if dims != 2:
            raise InputError("The brain sample is one subject: train 2D (--set dims=2) diffusion models on it.")
        keep = [k for k in range(image.data.shape[0]) if (labels.data[k] > 0).mean() > 0.15]
        keep = [k for k in keep if (k % HELD_OUT_EVERY == 0) == held_out]
        scale = max(image.data.shape[1:]) / size
        spacing = (image.spacing[0] * scale, image.spacing[1] * scale, image.spacing[2])
        return ([resize(image.data[k], size) for k in keep], [resize(labels.data[k], size, True) for k in keep], spacing)
    if sample == "phantom":
        from ..data.phantom import make_phantom

        first = PHANTOM_HELD_OUT_SEED if held_out else 0
        count = max(8, n_subjects // 4) if held_out else n_subjects
        shape = (1, 2 * size, 2 * size) if dims == 2 else (size, size, size)
        images, labels = [], []
        for seed in range(first, first + count):
            img, lab = make_phantom(seed, shape=shape)
            a, b = (img.data[0], lab.data[0]) if dims == 2 else (img.data, lab.data)
            images.append(resize(a, size))
            labels.append(resize(b, size, True))
        sp = img.spacing
        return images, labels, (sp[0] * 2, sp[1] * 2, sp[2]) if dims == 2 else sp
    raise InputError(f"Unknown sample data '{sample}': use brain or phantom.")


def folder_data(pairs: list[tuple[Volume, Volume | None]], dims: int,
                size: int) -> tuple[list[np.ndarray], list[np.ndarray], tuple[float, float, float]]:
    """Images (and label maps) of the user's folders (``TrainingSource.volumes``), as 2D axial slices or
    whole volumes."""
    out_i, out_l = [], []
    spacing = pairs[0][0].spacing
    for img, lab in pairs:
        frames = [img.data[k] for k in range(img.data.shape[0])] if dims == 2 else [img.data]
        lframes = ([lab.data[k] for k in range(lab.data.shape[0])] if dims == 2 else [lab.data]) if lab is not None else None
        for j, fr in enumerate(frames):
            out_i.append(resize(fr, size))
            if lframes is not None:
                out_l.append(resize(lframes[j], size, True))
    return out_i, out_l, spacing


@dataclass(frozen=True)
class DiffusionSettings:
    """``--set`` settings of a diffusion model. dims/size: 2D or 3D samples of size^dims; objective:
    ddpm | rflow; prediction (ddpm): epsilon | sample | v_prediction; conditioned: SPADE mask conditioning (label_nc
    classes, default from the data); ema: decay of the exported weights' average; n_subjects: phantom
    subjects of --sample phantom. channels/attention: per level, "32,64,64" or a list; res_blocks,
    groups (default the smallest channel count), head_channels (default the last), spade_channels;
    sampler: the card's default sampler (ddpm | ddim | rflow; default: DDIM for ddpm, rflow for rflow);
    sampler_steps: its default number of steps (the card's ``default_steps``; default DDIM 50, rflow 30,
    DDPM 1000; fewer DDPM steps are respaced, ``models.diffusion.RespacedDDPMScheduler``).
    init: a diffusion model (path or shipped name) whose weights the network starts from (fine-tuning); its
    network and objective must be the ones these settings build. min_snr_gamma (ddpm): each
    timestep's loss weighted as min(SNR, gamma) in x0 terms (Hang et al. 2023, "Efficient Diffusion Training via
    Min-SNR Weighting Strategy"; SNR = alpha_bar / (1 - alpha_bar)): the high-noise steps, whose x0 is
    mostly guessed, no longer dominate the loss, and fine structure gets its share. class_balance: alpha >= 0;
    each voxel's loss weighted by its label's share of the training voxels to the power -alpha (normalised to a mean
    weight of 1 over the training set), so that small structures count for more than their size (needs label maps;
    sampling stays unconditional). class_balance_steps: apply those weights to the first n steps only, then train on
    with the plain loss, so that one run does what a class-balanced first stage and a plain second stage did
    (the weights pull small structures' intensities towards themselves: docs/phantom3d_experiments.md). class_balance_fade
    (ddpm): fade each item's weights with the noise, w_t = 1 + (w - 1) * alpha_bar_t: full weights where the noisy
    input still shows where each structure lies, none at the highest noise, where a weighted loss would pull the
    learnt mean image towards rare structures' intensities wherever they may lie
    (``scripts/phantom3d_weight_bias.py``). flip: mirror each training
    item left-right at random (as the SPADE trainer's flip); turn it off (0) for anatomy that is not left-right
    symmetric, such as a heart right of the midline, or the model learns both sides and draws mirrored anatomy.
    acquisition_noise: "rician" (MR magnitude) or "gaussian" (CT): the scanner's noise measured on the training
    images' background (label 0, away from every label; needs label maps, ``models.acquisition_noise``) and
    recorded in the card, so that sampling adds it to the network's noise-free image (``tasks.sample``); the
    network is trained as without it. patch: p > 1 folds
    blocks of p voxels per axis into channels before the UNet (``models.diffusion.PatchedUNet``): a 3D network
    without its full-resolution levels, about 3 x faster per CPU training step at 48^3 with one more, attended,
    level for the same cost (``benchmarks/diffusion3d_train_step.py``); not with conditioned. clip_sample (ddpm):
    clip each sampling step's predicted clean image to [-1, 1] (MONAI's default); false keeps the network's
    own values. It changes sampling only (the card's scheduler), so a model fine-tuned with ``init`` may set it
    either way. lr_schedule: "constant" (--lr throughout) or "cosine" (--lr decayed to 0 over the planned --steps,
    lr * (1 + cos(pi * step / steps)) / 2, Loshchilov & Hutter 2017, without restarts): one run does what stages at
    falling rates did. A pure function of the step, so resuming needs no saved state; resuming with more --steps
    stretches the rest of the curve."""

    dims: int = 2
    size: int = 64
    objective: str = "ddpm"
    prediction: str = "epsilon"
    conditioned: bool = False
    label_nc: int | None = None
    ema: float = 0.999
    n_subjects: int = 48
    channels: Any = "32,64,64"
    attention: Any = None
    res_blocks: int = 1
    groups: int | None = None
    head_channels: int | None = None
    spade_channels: int = 32
    sampler: str | None = None
    sampler_steps: int | None = None
    init: str | None = None
    min_snr_gamma: float | None = None
    class_balance: float | None = None
    class_balance_steps: int | None = None
    class_balance_fade: bool = False
    flip: bool = True
    acquisition_noise: str | None = None
    patch: int = 1
    clip_sample: bool = True
    lr_schedule: str = "constant"


LR_SCHEDULES = ("constant", "cosine")


def learning_rate(base: float, schedule: str, step: int, steps: int) -> float:
    """The learning rate of optimisation step ``step`` (0-based) of ``steps`` planned under ``schedule``."""
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / max(steps, 1)))
    return base


def _mirror(batch: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Items of ``batch`` (batch, ...) whose ``flip`` (batch,) bool is set, mirrored along the last axis (x)."""
    return torch.where(flip.view(-1, *[1] * (batch.ndim - 1)), batch.flip(-1), batch)


def _start_weights(model: str, network: dict[str, Any], scheduler: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The UNet weights (float32) of diffusion ``model`` to fine-tune; InputError naming the model when its
    network or noise schedule is not the one being trained."""
    path = resolve_model(model)
    modules, card = load_family(path, "diffusion", build_unet)
    schedule = lambda spec: {k: v for k, v in (spec or {}).items() if k not in SAMPLING_ONLY}  # noqa: E731
    for what, theirs, ours in (("network", card["network"], network),
                               ("noise schedule", schedule(card.get("scheduler")), schedule(scheduler))):
        if theirs != ours:
            diff = sorted(k for k in set(theirs or {}) | set(ours) if (theirs or {}).get(k) != ours.get(k))
            raise InputError(f"init model '{path}' has another {what} than these settings build (differs in: "
                             f"{', '.join(diff)}): set the same channels, attention, groups and prediction.")
    return {k: v.float() for k, v in modules["unet"].state_dict().items()}


class DiffusionTrainer(AttributeState):
    """One optimisation step = one batch of noised images at random timesteps, MSE on the target."""

    state_attrs = ("unet", "ema", "optimizer", "generator")

    def __init__(self, config: TrainConfig) -> None:
        s = family_settings(DiffusionSettings, config.extra or {}, "diffusion")
        self.dims, self.size, self.objective = s.dims, s.size, s.objective
        if self.objective not in ("ddpm", "rflow"):
            raise InputError(f"objective must be ddpm or rflow, not '{self.objective}'.")
        self.conditioned = s.conditioned
        self.ema_decay = s.ema
        self.flip = s.flip
        self.default_sampler = s.sampler
        self.default_steps = s.sampler_steps
        if s.sampler_steps is not None and not 1 <= int(s.sampler_steps) <= 1000:
            raise InputError(f"sampler_steps must be between 1 and 1000 (the training timesteps), "
                             f"not {s.sampler_steps}.")
        if s.sampler is not None and s.sampler not in SAMPLERS_OF[s.objective]:
            raise InputError(f"sampler must be one of {', '.join(SAMPLERS_OF[s.objective])} for a '{s.objective}' "
                             f"model, not '{s.sampler}'.")
        self.device = resolve_device(config.device)
        self.batch_size = int(config.batch_size)
        source = TrainingSource.of(config, "diffusion", SOURCES)
        label_maps: list[Volume] = []
        if source.kind != "folders":
            images, labels, spacing = sample_data(source.kind, self.dims, self.size, n_subjects=s.n_subjects)
            items = "slices" if self.dims == 2 else "volumes"
            self.data_description = f"sample '{source.kind}' ({len(images)} {items})"
        else:
            pairs = source.volumes()
            label_maps = [lab for _, lab in pairs if lab is not None]
            images, labels, spacing = folder_data(pairs, self.dims, self.size)
            self.data_description = f"{source.images} ({len(images)} items)"
        if not images:
            raise InputError("No training images were found.")
        self.spacing = spacing
        self.sample = config.sample
        self.held_out = HELD_OUT.get(source.kind, "")
        stack = np.stack(images).astype(np.float32)
        self.normalization = percentile_spec(stack)
        self.images = torch.from_numpy(normalize(stack, self.normalization).astype(np.float32))[:, None]
        self.label_names: dict[str, str] | None = None
        # (n, *grid) label maps, kept where the network is conditioned on them or the loss is class-balanced
        self.labels: torch.Tensor | None = None
        if self.conditioned or s.class_balance is not None:
            if not labels:
                what = "A mask-conditioned diffusion model" if self.conditioned else "class_balance"
                raise InputError(f"{what} needs label maps (--labels DIR or sample data).")
            self.labels = torch.from_numpy(np.stack(labels))
            if int(self.labels.min()) < 0:
                raise InputError(f"Label maps hold negative values ({int(self.labels.min())}): labels must be 0 or more.")
        self.noise: NoiseModel | None = None
        if s.acquisition_noise is not None:
            if not labels:
                raise InputError("acquisition_noise is measured away from every label: it needs label maps "
                                 "(--labels DIR or sample data).")
            raw, lab = np.stack(images), np.stack(labels)
            self.noise = estimate_noise(raw.reshape(-1, *raw.shape[-2:]), lab.reshape(-1, *lab.shape[-2:]),
                                        str(s.acquisition_noise))
        if self.conditioned:
            self.label_nc = int(self.labels.max()) + 1 if s.label_nc is None else s.label_nc
            self.label_names = {str(k): v for k, v in source.label_names(label_maps).items()}
        ch = _ints(s.channels)
        att = [bool(v) for v in _ints(s.attention if s.attention is not None else ",".join("0" * len(ch)))]
        self.network: dict[str, Any] = {
            "spatial_dims": self.dims, "in_channels": 1, "out_channels": 1, "channels": ch,
            "attention_levels": att, "num_res_blocks": s.res_blocks,
            "norm_num_groups": min(ch) if s.groups is None else s.groups,
            "num_head_channels": ch[-1] if s.head_channels is None else s.head_channels,
        }
        if s.patch != 1:  # build_unet refuses it for conditioned (SPADE) networks
            self.network["patch"] = int(s.patch)
        if self.conditioned:
            self.network["label_nc"] = self.label_nc
            self.network["spade_intermediate_channels"] = s.spade_channels
        if self.objective == "ddpm":
            self.prediction = s.prediction
            if self.prediction not in ("epsilon", "sample", "v_prediction"):
                raise InputError("prediction must be epsilon (noise), sample (x0) or v_prediction (velocity), "
                                 f"not '{self.prediction}'.")
            self.scheduler_spec = {"objective": "ddpm", "num_train_timesteps": 1000, "prediction_type": self.prediction,
                                   "clip_sample": bool(s.clip_sample), **DDPM_SCHEDULE}
            self.noise_scheduler: Any = DDPMScheduler(**{k: v for k, v in self.scheduler_spec.items() if k != "objective"})
        else:
            self.scheduler_spec = {"objective": "rflow", "num_train_timesteps": 1000, "use_discrete_timesteps": False,
                                   "sample_method": "logit-normal", "spatial_dim": self.dims}
            self.noise_scheduler = RFlowScheduler(**{k: v for k, v in self.scheduler_spec.items() if k != "objective"})
        self.class_weights: torch.Tensor | None = None  # (classes,) loss weight per label value, voxel mean 1
        if s.class_balance is not None and self.labels is not None:
            if not float(s.class_balance) >= 0:
                raise InputError(f"class_balance must be 0 or more, not {s.class_balance}.")
            self.class_weights = class_frequency_weights(self.labels, int(self.labels.max()) + 1,
                                                         float(s.class_balance), mean_over="voxels")
        if s.class_balance_steps is not None and (s.class_balance is None or s.class_balance_steps < 0):
            raise InputError(f"class_balance_steps needs class_balance and a count of 0 or more "
                             f"(got class_balance {s.class_balance}, class_balance_steps {s.class_balance_steps}).")
        self.class_balance_steps = s.class_balance_steps
        if s.class_balance_fade and (s.class_balance is None or self.objective != "ddpm"):
            raise InputError(f"class_balance_fade needs class_balance and objective=ddpm (got class_balance "
                             f"{s.class_balance}, objective '{self.objective}').")
        self.class_balance_fade = bool(s.class_balance_fade)
        # 3D: channels-last memory (a little faster per CPU training step: benchmarks/diffusion3d_train_step.py)
        self.memory_format = torch.channels_last_3d if self.dims == 3 else torch.contiguous_format
        self.min_snr_gamma = None if s.min_snr_gamma is None else float(s.min_snr_gamma)
        if self.min_snr_gamma is not None and (self.objective != "ddpm" or not self.min_snr_gamma > 0):
            raise InputError(f"min_snr_gamma needs objective=ddpm and a value above 0 (got objective "
                             f"'{self.objective}', min_snr_gamma {s.min_snr_gamma}).")
        self.unet = build_unet(self.network)["unet"].to(self.device, memory_format=self.memory_format)
        if s.init is not None:
            self.unet.load_state_dict(_start_weights(s.init, self.network, self.scheduler_spec))
        self.ema = copy.deepcopy(self.unet).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=float(config.lr), weight_decay=0.0)
        if s.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not '{s.lr_schedule}'.")
        self.lr, self.lr_schedule, self.planned_steps = float(config.lr), s.lr_schedule, int(config.steps)
        self.generator = torch.Generator().manual_seed(int(config.seed))

    def _one_hot(self, lab: torch.Tensor) -> torch.Tensor:
        return F.one_hot(lab.long(), self.label_nc).movedim(-1, 1).float()

    def _min_snr_weights(self, t: torch.Tensor) -> torch.Tensor:
        """(batch,) loss weights of DDPM timesteps ``t``: min(SNR, gamma) in x0 terms, divided by what the
        prediction's own MSE already weighs (epsilon: SNR, x0: 1, velocity: SNR + 1)."""
        a = self.noise_scheduler.alphas_cumprod[t].float()
        snr = a / (1 - a)
        own = {"epsilon": snr, "sample": torch.ones_like(snr), "v_prediction": snr + 1}[self.prediction]
        return snr.clamp(max=self.min_snr_gamma) / own

    def _voxel_weights(self, lab: torch.Tensor | None, t: torch.Tensor, step: int) -> torch.Tensor | None:
        """(batch, 1, *grid) class-balance loss weights of a batch's label maps ``lab`` (batch, *grid) at
        timesteps ``t`` (batch,), or None where the loss is plain (no weights, or past class_balance_steps)."""
        balanced = self.class_balance_steps is None or step < self.class_balance_steps
        if self.class_weights is None or lab is None or not balanced:
            return None
        w = self.class_weights[lab][:, None]
        if self.class_balance_fade:
            signal = self.noise_scheduler.alphas_cumprod[t.long()].float().view(-1, *[1] * (w.ndim - 1))
            w = 1 + (w - 1) * signal
        return w.to(self.device)

    def train_step(self, step: int) -> dict[str, float]:
        g = self.generator
        idx = torch.randint(len(self.images), (self.batch_size,), generator=g)
        x0 = self.images[idx]
        # left-right flips, drawn even when off so that a seed gives the same batches, noise and timesteps
        flip = torch.rand(self.batch_size, generator=g) < (0.5 if self.flip else 0.0)
        x0 = _mirror(x0, flip)
        lab = _mirror(self.labels[idx], flip) if self.labels is not None else None
        seg = lab if self.conditioned else None
        noise = torch.randn(x0.shape, generator=g)
        if self.objective == "ddpm":
            t = torch.randint(0, 1000, (self.batch_size,), generator=g)
            xt = self.noise_scheduler.add_noise(x0, noise, t)
            target = {"epsilon": noise, "sample": x0}.get(self.prediction)
            if target is None:  # v_prediction: sqrt(alpha_bar) * noise - sqrt(1 - alpha_bar) * x0
                target = self.noise_scheduler.get_velocity(x0, noise, t)
        else:
            u = torch.sigmoid(torch.randn(self.batch_size, generator=g))  # logit-normal timesteps
            t = u * 1000
            xt, target = self.noise_scheduler.add_noise(x0, noise, t), x0 - noise
        voxel_w = self._voxel_weights(lab, t, step)
        x_in, t_in = xt.to(self.device, memory_format=self.memory_format), t.float().to(self.device)
        self.unet.train()
        if seg is not None:
            pred = self.unet(x_in, timesteps=t_in, seg=self._one_hot(seg).to(self.device))
        else:
            pred = self.unet(x_in, timesteps=t_in)
        sq = F.mse_loss(pred, target.to(self.device), reduction="none")
        if voxel_w is not None:
            sq = sq * voxel_w
        per_item = sq.flatten(1).mean(1)
        if self.min_snr_gamma is not None:
            per_item = self._min_snr_weights(t).to(self.device) * per_item
        loss = per_item.mean()
        lr = learning_rate(self.lr, self.lr_schedule, step, self.planned_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        decay = min(self.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(self.ema.parameters(), self.unet.parameters()):
                pe.lerp_(p, 1 - decay)
        return {"loss": float(loss.detach())}

    @torch.inference_mode()
    def preview(self) -> np.ndarray | None:
        """x0 of one fixed-noise sample (10 DDIM or rectified-flow steps of the averaged weights), (y, x)."""
        sampler = "ddim" if self.objective == "ddpm" else "rflow"
        sched = make_scheduler(self.scheduler_spec, sampler, 10)
        x = torch.randn((1, 1) + (self.size,) * self.dims, generator=torch.Generator().manual_seed(0)).to(self.device)
        seg = self._one_hot(self.labels[:1]).to(self.device) if self.conditioned and self.labels is not None else None
        self.ema.eval()
        steps = list(sched.timesteps) + [torch.tensor(0)]
        for t, nt in zip(steps[:-1], steps[1:]):
            tt = t.float().expand(1).to(self.device)
            out = self.ema(x, timesteps=tt, seg=seg) if seg is not None else self.ema(x, timesteps=tt)
            x, _ = sched.step(out, t, x, nt) if sampler == "rflow" else sched.step(out, t, x)
        img = x[0, 0].cpu().numpy()
        return img if self.dims == 2 else img[img.shape[0] // 2]

    def export(self, path: str | Path, card: dict[str, Any]) -> None:
        card = {**card, "family": "diffusion", "network": self.network, "scheduler": self.scheduler_spec,
                "normalization": self.normalization, "shape": [self.size] * self.dims,
                "voxel_mm": list(self.spacing), "sample": self.sample}
        if self.label_names:
            card["label_names"] = self.label_names
        if self.default_sampler:
            card["default_sampler"] = self.default_sampler
        if self.default_steps:
            card["default_steps"] = int(self.default_steps)
        if self.noise is not None:
            card["acquisition_noise"] = self.noise.to_card("background 3+ px from every label of the training images")
        if self.held_out:
            card["training"] = {**card.get("training", {}), "held_out": self.held_out}
        save_model(path, {"unet": self.ema}, card, half=True)
