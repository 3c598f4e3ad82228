"""A model's card (``NAME.json``): what the model is, what it was trained on, how it measured.

One name per concept, checked on every read and write:

* ``family`` (str) and ``network`` (the builder's keyword arguments) are required.
* ``voxel_mm``: the training grid's voxel size in mm, (x, y, z), or (x, y) for a 2D model.
* ``shape``: one sample's spatial shape, (y, x) or (z, y, x). ``label_names``: {"0": "background", ...}.
* ``normalization``: how intensities were scaled, e.g. ``{"kind": "percentile", "low": 0.5, "high": 99.5}``.
* ``training``: a :class:`TrainingRecord` (command, data, seed, steps, device actually used, ...).
* ``metrics``: measured quality, by name or section. ``modules``/``weights_dtype``: what the weights hold.
* the family's own entries, listed in :data:`FAMILY_KEYS` (e.g. a diffusion model's ``scheduler``).

A missing required entry, an unknown one, or one of the wrong type is a ModelError naming the
card and the key. Cards written before these names are read through :func:`migrate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelError

# The entries each family adds to the common ones (a family not listed here may add any).
FAMILY_KEYS: dict[str, frozenset[str]] = {
    "anomaly_ae": frozenset(),
    "diffusion": frozenset({"scheduler", "sample", "default_sampler", "default_steps", "epsilon_scaling",
                           "acquisition_noise"}),
    "feature_encoder": frozenset({"feature_dim"}),
    "gan": frozenset({"phantom_bank"}),
    "label_vae": frozenset({"heldout", "latent_prior"}),
    "spade": frozenset({"slice_orientation", "style_mean", "style_std", "styles", "acquisition_noise"}),
    "temporal": frozenset({"modality", "series", "tracked_label", "series_length", "time_step",
                           "heldout_seed_start", "time_rate", "time_rate_calibration"}),
    "vae": frozenset({"phantom_bank"}),
}


@dataclass(frozen=True)
class TrainingRecord:
    """How the model was trained. device: what it actually ran on ("cpu", "cuda (GPU name)"); hardware: the
    machine's CPU model, logical CPUs and torch threads (wall times differ between machines of one kind)."""

    command: str = ""
    family: str = ""
    data: str = ""
    seed: int = 0
    steps: int = 0
    batch_size: int = 0
    lr: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    final_losses: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    device: str = ""
    hardware: str = ""
    commit: str = ""
    torch: str = ""
    monai: str = ""
    date: str = ""
    held_out: Any = None
    held_out_slabs_mm: Any = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ModelCard:
    """A checked card (see the module doc); ``details`` holds the family's own entries."""

    family: str
    network: dict[str, Any]
    voxel_mm: tuple[float, ...] | None = None
    shape: tuple[int, ...] | None = None
    label_names: dict[int, str] | None = None
    normalization: dict[str, Any] | None = None
    training: TrainingRecord | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    modules: tuple[str, ...] = ()
    weights_dtype: str = "float32"
    loss_curve: str | None = None
    distributed: dict[str, Any] | None = None
    known_defects: tuple[str, ...] = ()  # what the model gets wrong, told to the user with every result
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, where: str) -> ModelCard:
        """Check ``obj`` (a card's JSON object, already migrated) and type it; ``where`` names it in errors."""
        if not isinstance(obj, dict) or not isinstance(obj.get("family"), str):
            raise ModelError(f"Model card '{where}' has no 'family' entry: it is not a napari-medgen model card.")
        family = obj["family"]
        common = {f.name for f in dataclasses.fields(cls)} - {"details"}
        own = FAMILY_KEYS.get(family)
        if own is not None:
            unknown = sorted(set(obj) - common - own)
            if unknown:
                raise ModelError(f"Model card '{where}': unknown entry '{unknown[0]}' for a '{family}' model "
                                 f"(known: {', '.join(sorted(common | own))}).")
        if "network" not in obj:
            raise ModelError(f"Model card '{where}' lacks the entry 'network'.")
        _expect(where, "network", obj["network"], dict)
        training = obj.get("training")
        if training is not None:
            _expect(where, "training", training, dict)
            training = _record(where, training)
        return cls(
            family=family,
            network=obj["network"],
            voxel_mm=_numbers(where, "voxel_mm", obj.get("voxel_mm"), float, (2, 3)),
            shape=_numbers(where, "shape", obj.get("shape"), int, (2, 3)),
            label_names=_label_names(where, obj.get("label_names")),
            normalization=_expect(where, "normalization", obj.get("normalization"), dict),
            training=training,
            metrics=_expect(where, "metrics", obj.get("metrics", {}), dict),
            modules=tuple(_expect(where, "modules", obj.get("modules", []), list)),
            weights_dtype=_expect(where, "weights_dtype", obj.get("weights_dtype", "float32"), str),
            loss_curve=_expect(where, "loss_curve", obj.get("loss_curve"), str),
            distributed=_expect(where, "distributed", obj.get("distributed"), dict),
            known_defects=_strings(where, "known_defects", obj.get("known_defects", [])),
            details={k: v for k, v in obj.items() if k not in common},
        )


def migrate(obj: dict[str, Any]) -> dict[str, Any]:
    """A card written before the names above, renamed (a copy; the current form is returned as is).

    ``spacing`` (x, y, z) -> ``voxel_mm``; ``plane_spacing`` (rows, cols) -> ``voxel_mm`` (x, y);
    ``pixel_mm`` p -> ``voxel_mm`` (p, p); top-level ``data``/``training_data`` -> ``training.data``.
    """
    card = dict(obj)
    spacing, plane, pixel = card.pop("spacing", None), card.pop("plane_spacing", None), card.pop("pixel_mm", None)
    if "voxel_mm" not in card:
        if spacing is not None:
            card["voxel_mm"] = spacing
        elif isinstance(plane, list) and len(plane) == 2:
            card["voxel_mm"] = [plane[1], plane[0]]
        elif pixel is not None:
            card["voxel_mm"] = [pixel, pixel]
    data = card.pop("data", None) or card.pop("training_data", None)
    card.pop("training_data", None)
    if data is not None and isinstance(card.get("training", {}), dict):
        card["training"] = {**card.get("training", {}), "data": data}
    return card


_TYPES = {int: "a whole number", float: "a number", str: "text", dict: "an object", list: "a list"}


def _expect(where: str, key: str, value: Any, kind: type) -> Any:
    """``value`` when it is None or of ``kind`` (an int counts as a float), else a ModelError."""
    if value is None or isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ModelError(f"Model card '{where}': '{key}' must be {_TYPES[kind]}, not {value!r}.")


def _strings(where: str, key: str, value: Any) -> tuple[str, ...]:
    """A list of strings as a tuple, else a ModelError."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ModelError(f"Model card '{where}': '{key}' must be a list of strings, not {value!r}.")
    return tuple(value)


def _numbers(where: str, key: str, value: Any, kind: type, lengths: tuple[int, ...]) -> tuple[Any, ...] | None:
    """A list of ``lengths`` positive numbers of ``kind`` as a tuple (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) not in lengths:
        raise ModelError(f"Model card '{where}': '{key}' must be a list of {' or '.join(map(str, lengths))} "
                         f"numbers, not {value!r}.")
    numbers = tuple(_expect(where, key, v, kind) for v in value)
    if any(v is None or v <= 0 for v in numbers):
        raise ModelError(f"Model card '{where}': '{key}' must hold positive numbers, not {value!r}.")
    return numbers


def _label_names(where: str, value: Any) -> dict[int, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.isdigit() and isinstance(v, str)
                                              for k, v in value.items()):
        raise ModelError(f"Model card '{where}': 'label_names' must map label values to names, "
                         f"e.g. {{\"0\": \"background\"}}, not {value!r}.")
    return {int(k): v for k, v in value.items()}


def _record(where: str, obj: dict[str, Any]) -> TrainingRecord:
    """The ``training`` entry typed; each value must have the type of its field's default (None: any)."""
    fields = {f.name: f for f in dataclasses.fields(TrainingRecord)}
    unknown = sorted(set(obj) - set(fields))
    if unknown:
        raise ModelError(f"Model card '{where}': unknown entry 'training.{unknown[0]}' "
                         f"(known: {', '.join(fields)}).")
    values = {}
    for key, value in obj.items():
        f = fields[key]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        values[key] = value if default is None else _expect(where, f"training.{key}", value, type(default))
    return TrainingRecord(**{k: v for k, v in values.items() if v is not None})
