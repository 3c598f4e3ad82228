"""The spade family's typed handle: a loaded label-to-image model (:class:`Synthesizer`).

It loads a model once and offers the fast path live painting calls
(:meth:`Synthesizer.synthesize_slices`), style handling (random, encoded from a reference image,
the card's named styles such as the phantom's vendors, interpolation), the label mapping from a
user's values to the model's classes, and the slice plan of a volume. Whole volumes are
synthesised by the task :func:`..tasks.synthesize.synthesize`.

Label meaning: the user's label values are turned into the model's classes by one
:class:`..data.label_mapping.LabelMapping` (proposed from the label names of the file or layer and
of the model card, or given by the user); a label map with a value that has no class is refused,
naming both sides. :meth:`Synthesizer.synthesize_slices` and :meth:`Synthesizer.check_labels` take
model classes.

Slice axis: the axis with the largest spacing when the volume is clearly anisotropic, else the
index axis closest to the model's training orientation (axial for the shipped models). Slices
whose in-plane spacing is more than 1.5x away from the model's, or that do not fit its input,
are resampled (labels nearest, image bilinear back to the input grid); the output Volume's
``metadata["notes"]`` says so. Smaller slices are padded with background and cropped back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import label_mapping
from ..data.body import body_mask
from ..data.label_mapping import LabelMapping
from ..data.normalize import denormalize, normalize
from ..device import resolve_device
from ..errors import InputError, ModelError
from ..io.volume import Volume
from . import spade
from .acquisition_noise import NoiseModel
from .store import load_family, resolve_model

Style = str | np.ndarray


class Synthesizer:
    """A loaded spade model. Attributes: card, label_names {int: str}, n_classes, slice_shape (y, x)
    it was trained on, style_dim, plane_spacing (rows, cols mm), device."""

    def __init__(self, model_path: str | Path, device: str = "auto"):
        self.device = resolve_device(device)
        model_path = resolve_model(model_path)
        modules, card = load_family(model_path, "spade", spade.build_spade, self.device)
        if card["network"].get("spatial_dims", 2) != 2:
            raise ModelError(f"Model '{model_path}' is a 3D spade model; synthesis runs 2D models only.")
        self.path = str(model_path)
        self.card = card
        self.generator = modules["generator"]
        self.label_names = {int(k): str(v) for k, v in card["label_names"].items()}
        self.n_classes = int(card["network"]["n_classes"])
        self.slice_shape: tuple[int, int] = tuple(int(s) for s in card["shape"])  # type: ignore[assignment]
        self.style_dim = int(card["network"]["z_dim"])
        self.plane_spacing: tuple[float, float] = tuple(reversed((card.get("voxel_mm") or [1.0, 1.0])[:2]))  # type: ignore[assignment]
        self.orientation = card.get("slice_orientation", "axial")
        self._norm = card["normalization"]
        self.noise = NoiseModel.from_card(card.get("acquisition_noise"), self.path)
        self._style_mean = np.asarray(card.get("style_mean", np.zeros(self.style_dim)), dtype=np.float32)
        self._style_std = np.asarray(card.get("style_std", np.ones(self.style_dim)), dtype=np.float32)

    # --- styles -------------------------------------------------------------------------------
    def random_style(self, seed: int) -> np.ndarray:
        """A style (style_dim,) drawn from a Gaussian fitted to the encoded training images."""
        eps = np.random.default_rng(seed).standard_normal(self.style_dim).astype(np.float32)
        return self._style_mean + self._style_std * eps

    def mean_style(self) -> np.ndarray:
        """The mean encoded style of the training images (style_dim,)."""
        return self._style_mean.copy()

    def named_styles(self) -> dict[str, np.ndarray]:
        """Named styles stored in the card (e.g. the phantom's vendors): mean encoded style of each."""
        return {k: np.asarray(v, dtype=np.float32) for k, v in self.card.get("styles", {}).items()}

    @staticmethod
    def interpolate(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
        """Linear blend of two styles: t=0 gives a, t=1 gives b."""
        return ((1.0 - t) * np.asarray(a, np.float32) + t * np.asarray(b, np.float32)).astype(np.float32)

    def resolve_style(self, style: Style, seed: int = 0) -> np.ndarray:
        """"random" (with ``seed``), "mean", "vendor:NAME" / a named style, or a vector -> (style_dim,)."""
        if isinstance(style, np.ndarray) or not isinstance(style, str):
            vec = np.asarray(style, dtype=np.float32).reshape(-1)
            if vec.shape != (self.style_dim,):
                raise InputError(f"A style vector must have {self.style_dim} values for this model, got {vec.size}.")
            return vec
        if style == "random":
            return self.random_style(seed)
        if style == "mean":
            return self.mean_style()
        named = self.named_styles()
        name = style.split(":", 1)[1] if style.startswith("vendor:") else style
        if name not in named:
            known = ", ".join(["random", "mean"] + [f"vendor:{k}" for k in named])
            raise InputError(f"Unknown style '{style}' for model '{self.path}' (known: {known}).")
        return named[name]

    def encode_style(self, image: Volume | np.ndarray, labels: Volume | np.ndarray | None = None) -> np.ndarray:
        """Style of a reference image: mean of the encoder's mu over its slices with foreground.

        image/labels: Volumes with the same grid, or arrays (n, y, x) of slices at the model's
        spacing. Labels choose the slice plan and which slices count (>= 5 % foreground). Without
        labels, the reference's own body (``data.body.body_mask``: its voxels above the Otsu
        threshold) is its foreground: never another image's label map, whose anatomy is not the
        reference's.
        """
        img = image.data if isinstance(image, Volume) else np.asarray(image)
        if img.ndim != 3:
            raise InputError(f"The reference image must be 3D (z, y, x) or a stack of 2D slices (n, y, x); got shape "
                             f"{img.shape}.")
        if labels is None:
            body = body_mask(np.asarray(img, np.float32)).astype(np.uint8)
            labels = image.with_data(body, is_label=True) if isinstance(image, Volume) else body
        lab = labels.data if isinstance(labels, Volume) else np.asarray(labels)
        if img.shape != lab.shape:
            raise InputError(f"The reference image {img.shape} and its labels {lab.shape} must have the same shape.")
        label_mapping.label_values(lab, "The reference image's label map")
        plan = self.plan_slices(labels)
        fill = spade.background_value(img.astype(np.float32), lab)
        img_s = spade.to_model(spade.cut(img.astype(np.float32), plan.axis), plan, nearest=False, fill=fill)
        fg = (spade.cut(lab, plan.axis) > 0).reshape(img_s.shape[0], -1).mean(1)
        keep = fg >= 0.05 if np.any(fg >= 0.05) else np.ones_like(fg, dtype=bool)
        x = torch.from_numpy(normalize(img_s[keep], self._norm).astype(np.float32))[:, None]
        with torch.inference_mode():
            mu = torch.cat([self.generator.encode(x[i:i + 32].to(self.device))[0].cpu() for i in range(0, len(x), 32)])
        return mu.mean(0).numpy().astype(np.float32)

    # --- input checks -------------------------------------------------------------------------
    def mapping_for(self, labels: Volume | np.ndarray, explicit: dict[int, int] | None = None,
                    identity: bool = False, user_names: dict[int, str] | None = None) -> LabelMapping:
        """The label mapping (user value -> model class) for the values of ``labels``: ``explicit``
        choices, then classes named like the user's labels (``user_names``, default the Volume's
        ``metadata["label_names"]``), then, with ``identity``, the same number for unnamed values.

        Raises InputError naming the unmapped values and the model's classes.
        """
        data = labels.data if isinstance(labels, Volume) else np.asarray(labels)
        what = label_map_name(labels)
        if user_names is None:
            user_names = label_mapping.user_label_names(labels.metadata if isinstance(labels, Volume) else None)
        return label_mapping.resolve(label_mapping.label_values(data, what), user_names, self.label_names,
                                     self.n_classes, explicit, identity, what=what, model=f"model '{self.name}'")

    @property
    def name(self) -> str:
        return Path(self.path).name

    def check_labels(self, labels: Volume | np.ndarray) -> spade.SlicePlan:
        """Check a map of model classes and return how it will be sliced (and resampled, see the plan's notes).

        Raises InputError for non-integer values, negative values, or values >= n_classes.
        A numpy array (n, y, x) is taken as slices at the model's in-plane spacing.
        """
        data = labels.data if isinstance(labels, Volume) else np.asarray(labels)
        _check_values(data, self.n_classes, self.label_names, label_map_name(labels))
        return self.plan_slices(labels)

    def plan_slices(self, labels: Volume | np.ndarray) -> spade.SlicePlan:
        """How a 3D label map (Volume, or array (n, y, x) of slices at the model's spacing) is cut into slices."""
        data = labels.data if isinstance(labels, Volume) else np.asarray(labels)
        if data.ndim != 3:
            raise InputError(f"{label_map_name(labels)} must be 3D (z, y, x) or a stack of 2D slices (n, y, x); "
                             f"got shape {data.shape}.")
        if isinstance(labels, Volume):
            axis = spade.slice_axis(labels.spacing, labels.direction, self.orientation)
            return spade.plan_slices(data.shape, labels.spacing, axis, self.slice_shape, self.plane_spacing)
        spacing = (self.plane_spacing[1], self.plane_spacing[0], max(self.plane_spacing) * 2)
        return spade.plan_slices(data.shape, spacing, 0, self.slice_shape, self.plane_spacing)

    # --- fast path ----------------------------------------------------------------------------
    @torch.inference_mode()
    def synthesize_slices(self, labels2d: np.ndarray, style: np.ndarray,
                          plan: spade.SlicePlan | None = None, noise_seed: int | None = 0) -> np.ndarray:
        """Integer label slices (n, y, x) (or one (y, x)) -> images of the same shape, float32, in the
        training images' intensity units.

        Slices of the model's slice_shape go straight to the network; others are padded or
        resampled. plan: the volume's plan from :meth:`check_labels` (so that live slices match
        :func:`synthesize`); default: slices taken to be at the model's spacing. Values are
        checked (InputError as check_labels). noise_seed: seed of the card's acquisition noise (None:
        the noise-free image).
        """
        labels2d = np.asarray(labels2d)
        if labels2d.ndim == 2:
            return self.synthesize_slices(labels2d[None], style, plan, noise_seed)[0]
        _check_values(labels2d, self.n_classes, self.label_names, "The label map")
        if plan is None and labels2d.shape[1:] != self.slice_shape:
            plan = self.check_labels(labels2d)
        if plan is not None:
            if labels2d.shape[1:] != plan.plane_shape:
                raise InputError(f"Label slices of shape {labels2d.shape[1:]} do not match the plan's {plan.plane_shape}.")
            labels2d = spade.to_model(labels2d, plan, nearest=True)
        out = self._forward(torch.from_numpy(labels2d.astype(np.int64, copy=False)), style, noise_seed)
        return spade.from_model(out, plan) if plan is not None else out

    def _forward(self, labels: torch.Tensor, style: np.ndarray, noise_seed: int | None = 0) -> np.ndarray:
        """Checked int64 labels (n, *slice_shape) -> denormalised images (n, *slice_shape) float32, with the
        card's acquisition noise drawn from ``noise_seed`` (none when the seed is None or the card has no
        noise model)."""
        onehot = F.one_hot(labels.to(self.device), self.n_classes).movedim(-1, 1).float()
        z = torch.as_tensor(np.asarray(style, dtype=np.float32), device=self.device).reshape(1, -1)
        return self.to_image(self.generator.decode(onehot, z.expand(len(labels), -1)), noise_seed)

    def to_image(self, out: torch.Tensor, noise_seed: int | None = 0) -> np.ndarray:
        """The generator's output (n, 1, *slice_shape), normalised -> images (n, *slice_shape) float32 in the
        training images' units, with the card's acquisition noise drawn from ``noise_seed`` (None: none)."""
        image = torch.from_numpy(denormalize(out[:, 0].cpu().numpy(), self._norm))
        if self.noise is not None and noise_seed is not None:
            image = self.noise.apply(image, torch.Generator().manual_seed(int(noise_seed)))
        return image.numpy().astype(np.float32, copy=False)


def label_map_name(labels: Volume | np.ndarray) -> str:
    """How messages name a label map: its file when known."""
    if isinstance(labels, Volume) and labels.metadata.get("source"):
        return f"Label map '{labels.metadata['source']}'"
    return "The label map"


def _check_values(data: np.ndarray, n_classes: int, names: dict[int, str], what: str) -> None:
    """InputError for float maps with non-integer values, negative values or values >= n_classes."""
    if data.dtype.kind == "f":
        frac = data[np.isfinite(data)] % 1 != 0
        if not np.all(np.isfinite(data)) or frac.any():
            example = data[~np.isfinite(data)][:1] if not np.all(np.isfinite(data)) else data[np.isfinite(data)][frac][:1]
            raise InputError(f"{what} holds non-integer values (e.g. {float(example[0]):.4g}): it looks like an "
                             f"intensity image, not a label map. Pick a labels layer or an integer label file.")
    elif data.dtype.kind not in "iub":
        raise InputError(f"{what} has data type {data.dtype}; a label map must hold integers.")
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    if lo < 0 or hi >= n_classes:
        values = np.unique(data)
        bad = values[(values < 0) | (values >= n_classes)]
        shown = ", ".join(str(int(v)) for v in bad[:10]) + (" ..." if bad.size > 10 else "")
        known = ", ".join(f"{k} {v}" for k, v in sorted(names.items()))
        raise InputError(f"{what} has label values {shown} that this model does not know: it has {n_classes} "
                         f"classes ({known}). Relabel them or pick a model trained with these labels.")
