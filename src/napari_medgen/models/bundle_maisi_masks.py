"""MAISI's mask generation: a label map generated from anatomy sizes when the user gives none.

The maisi_ct_generative bundle carries a second latent diffusion model for this (config entries
``mask_generation_diffusion_def``, a ``DiffusionModelUNet`` with cross-attention on 10 numbers, and
``mask_generation_autoencoder_def``, an ``AutoencoderKlMaisi`` decoding to 125 class scores). The
steps follow the bundle's ``scripts/sample.py`` and ``scripts/utils.py`` (which are not run):

* the 10 anatomy sizes (:data:`ANATOMY` order; a percentile 0..1, or -1: absent) the user sets are
  completed from the closest entry (sum of absolute differences over the set sizes) of the bundle's
  ``all_anatomy_size_condtions.json`` (``prepare_anatomy_size_condtion``);
* DDPM with ``mask_generation_noise_scheduler`` for ``mask_generation_num_inference_steps`` steps on
  noise of ``mask_generation_latent_shape``, conditioned (cross-attention context (1, 1, 10)) on them;
* latents / ``mask_generation_scale_factor`` decoded, argmax over the 125 scores, remapped to MAISI's
  label values with ``label_dict_124_to_132.json``; the raw map has 1.5 mm voxels (the script's
  constant);
* of the script's clean-up (``general_mask_generation_post_process``) three steps: the body kept as
  its largest connected part (eroded and dilated once), tumours other than the one whose size was set
  turned into their organ, hepatic vessels into liver (airway restored). Its per-organ
  largest-component and hole-filling steps are not reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage

from ..errors import InputError, ModelError
from ..progress import CancelToken, Progress
from .bundle_config import ConditionField, read_file
from .diffusion import make_scheduler

# scripts/sample.py prepare_anatomy_size_condtion: the order of the 10 conditioning numbers
ANATOMY = ("gallbladder", "liver", "stomach", "pancreas", "colon", "lung tumor", "pancreatic tumor",
           "hepatic tumor", "colon cancer primaries", "bone lesion")
TUMOR_LABELS = (23, 24, 26, 27, 128)  # the labels of ANATOMY[5:] (ldm_conditional_sample_one_mask)
TUMOR_ORGAN = {23: 28, 24: 4, 26: 1, 27: 62, 128: 200}  # a tumour not asked for becomes this organ
HEPATIC_VESSEL, LIVER, AIRWAY = 25, 1, 132
MASK_SPACING = 1.5  # mm: "current mask generation model only can generate ... 1.5 mm spacing"
AUTO, ABSENT = "auto", "absent"
_BALL = np.ones((3, 3, 3), bool)


def size_key(anatomy: str) -> str:
    return "size_" + anatomy.replace(" ", "_")


def anatomy_fields() -> tuple[ConditionField, ...]:
    """One field per anatomy size: a percentile 0..1, "absent" (the bundle's -1) or "auto" (the bundle's
    default: taken from its closest size combination)."""
    return tuple(ConditionField(size_key(a), f"{a} size", AUTO, 0.0, 1.0, special=(AUTO, ABSENT)) for a in ANATOMY)


def anatomy_sizes(named: Mapping[str, float | str]) -> dict[int, float]:
    """{ANATOMY index: size} of the sizes set (not "auto"; "absent" is -1). InputError for two tumours."""
    given = {i: -1.0 if named[size_key(a)] == ABSENT else float(named[size_key(a)])
             for i, a in enumerate(ANATOMY) if named.get(size_key(a), AUTO) != AUTO}
    tumors = [ANATOMY[i] for i, v in given.items() if i >= 5 and v >= 0]
    if len(tumors) > 1:
        raise InputError(f"MAISI generates one tumour at a time (its mask model's clean-up follows one); sizes were "
                         f"set for {', '.join(tumors)}.")
    return given


@dataclass
class MaskGenerator:
    """The bundle's mask-generation networks and settings (all read from its config)."""

    unet: torch.nn.Module
    autoencoder: torch.nn.Module
    scheduler: dict[str, Any]
    scale_factor: float
    latent_shape: tuple[int, ...]  # (C, x, y, z)
    steps: int
    classes: int  # the decoder's output channels
    remap_path: Path  # label_dict_124_to_132.json
    sizes_path: Path  # all_anatomy_size_condtions.json
    window: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.6667

    def condition(self, given: Mapping[int, float]) -> list[float]:
        """The 10 numbers: ``given`` completed from the closest entry of the bundle's size combinations."""
        if not given:
            raise InputError("MAISI without a label map generates one from anatomy sizes: set at least one (e.g. "
                             "size_liver=0.5). The bundle's other route, one of its 3000 candidate masks chosen by "
                             "body region, is not supported.")
        if len(given) == len(ANATOMY):
            return [given[i] for i in range(len(ANATOMY))]
        if not self.sizes_path.is_file():
            raise ModelError(f"MAISI's anatomy sizes not set here come from '{self.sizes_path}' (downloaded with the "
                             "bundle's weights, see its large_files.yml), which is missing; set all ten sizes instead.")
        table = read_file(self.sizes_path)
        rows = [e.get("organ_size") for e in table] if isinstance(table, list) and all(
            isinstance(e, dict) for e in table) else []
        rows = [r for r in rows if isinstance(r, list) and len(r) == len(ANATOMY)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r)]
        if not rows:
            raise ModelError(f"'{self.sizes_path}' holds no anatomy size combinations ([{{'organ_size': [10 numbers]}}]).")
        best = min(rows, key=lambda r: sum(abs(v - r[i]) for i, v in given.items()))
        return [given.get(i, float(v)) for i, v in enumerate(best)]

    def remap(self) -> np.ndarray:
        """Look-up table: decoder class (0..classes-1) -> MAISI label value."""
        if not self.remap_path.is_file():
            raise ModelError(f"MAISI's generated masks are mapped to its label values with '{self.remap_path}' "
                             "(downloaded with the bundle's weights, see its large_files.yml), which is missing.")
        pairs = read_file(self.remap_path)
        lut = np.full(self.classes, -1, np.int64)
        for pair in pairs.values() if isinstance(pairs, dict) else ():
            if (isinstance(pair, list) and len(pair) == 2 and all(type(v) is int and 0 <= v < 256 for v in pair)
                    and pair[0] < self.classes):
                lut[pair[0]] = pair[1]
        if (lut < 0).any():
            raise ModelError(f"'{self.remap_path}' gives no label value for the mask decoder's class(es) "
                             f"{np.flatnonzero(lut < 0)[:10].tolist()} ({{name: [class, label value], ...}}).")
        return lut

    def generate(self, given: Mapping[int, float], seed: int, cancel: CancelToken,
                 device: torch.device) -> Generator[Progress, None, np.ndarray]:
        """Yields Progress per step; returns the label map (X, Y, Z) uint8 at MASK_SPACING mm."""
        sizes = self.condition(given)
        lut = self.remap()
        sched = make_scheduler(self.scheduler, "ddpm", self.steps, source="MAISI's mask generation")
        x = torch.randn((1, *self.latent_shape), generator=torch.Generator().manual_seed(seed)).to(device)
        context = torch.tensor([[sizes]], dtype=torch.float32, device=device)
        step_gen = torch.Generator(device=device).manual_seed(seed + 1)  # DDPM's per-step noise
        total = len(sched.timesteps)
        with torch.inference_mode():
            for i, t in enumerate(sched.timesteps):
                cancel.check()
                out = self.unet(x, timesteps=t.expand(1).to(device), context=context)
                x, _ = sched.step(out, t, x, generator=step_gen)
                yield Progress(i + 1, total, f"label map from anatomy sizes: step {i + 1}/{total}")
            scores = self._decode(x)
        raw = scores.argmax(1)[0].cpu().numpy()
        target = next((TUMOR_LABELS[i] for i in reversed(range(5)) if sizes[5 + i] != -1), None)
        return clean_up(lut[raw], target).astype(np.uint8)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        def recon(latent: torch.Tensor) -> torch.Tensor:
            return self.autoencoder.decode_stage_2_outputs(latent / self.scale_factor)

        if math.prod(z.shape[2:]) < math.prod(self.window):
            return recon(z)
        return sliding_window_inference(z, self.window, 1, recon, overlap=self.overlap, mode="gaussian")


def clean_up(labels: np.ndarray, target: int | None) -> np.ndarray:
    """Three steps of the bundle's ``general_mask_generation_post_process`` on labels (X, Y, Z): the body's
    largest connected part only, tumours other than ``target`` as their organ, hepatic vessel as liver."""
    vessel, airway = labels == HEPATIC_VESSEL, labels == AIRWAY
    body = ndimage.binary_erosion(labels > 0, _BALL)
    parts, n = ndimage.label(body, _BALL)
    if n > 1:
        body = parts == 1 + int(np.argmax(ndimage.sum_labels(body, parts, range(1, n + 1))))
    out = labels * ndimage.binary_dilation(body, _BALL)
    for tumor in TUMOR_LABELS:
        if tumor != target:
            out[out == tumor] = TUMOR_ORGAN[tumor]
    out[vessel] = LIVER
    out[airway] = AIRWAY
    return out
