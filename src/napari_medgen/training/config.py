"""What every trainer is built from: :class:`TrainConfig`, and ``--set key=value`` settings.

Each family declares its settings as a dataclass (defaults = what it trains with when a key is
not given); :func:`family_settings` reads ``config.extra`` into it, refusing an unknown key with
the list of valid ones and a value that does not fit the field's type.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import InputError


@dataclass
class TrainConfig:
    """Everything a trainer is built from.

    images/labels: folders of volumes matched by file name (see ``data.datasets.load_pairs``), or
    sample: "brain" | "phantom" to train on the shipped sample data instead (``source.TrainingSource``).
    seed: seeds weights and batch order. steps: planned optimisation steps (some trainers use it for schedules).
    device: "auto", "cpu", "cuda", ... extra: family-specific settings from ``--set key=value``.
    """

    images: Path | None = None
    labels: Path | None = None
    seed: int = 0
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-3
    device: str = "auto"
    sample: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_settings(items: Iterable[str]) -> dict[str, Any]:
    """``["lr_d=2e-4", "channels=[32,64]", "name=x"]`` -> {"lr_d": 0.0002, "channels": [32, 64], "name": "x"}.

    Values are read as JSON where they parse (numbers, true/false, lists), else kept as text.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"Setting '{item}' must look like key=value.")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


S = TypeVar("S")
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def family_settings(kind: type[S], extra: Mapping[str, Any], family: str) -> S:
    """``extra`` (the ``--set`` values) as ``family``'s settings dataclass ``kind``.

    A field annotated ``int``, ``float``, ``bool`` or ``str`` (or one of them ``| None``) gets its
    value converted (``true``/``1``/``yes`` are true); other fields keep the value as given.
    InputError for an unknown key (naming the valid ones) or a value that does not convert.
    """
    fields = {f.name: f for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    unknown = sorted(set(extra) - set(fields))
    if unknown:
        raise InputError(f"Unknown {family} setting '{unknown[0]}' (--set); the valid ones are: "
                         f"{', '.join(sorted(fields))}.")
    return kind(**{key: _convert(value, _annotation(fields[key].type), family, key) for key, value in extra.items()})


def _annotation(kind: Any) -> str:
    """A field's annotation as written ("int", "int | None"), also where it was evaluated to a type."""
    return kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))


def _convert(value: Any, annotation: str, family: str, key: str) -> Any:
    annotation = annotation.removesuffix(" | None")  # optional: None is kept, other values converted
    if value is None:
        return None
    try:
        if annotation == "bool":
            text = str(value).strip().lower()
            if text not in _TRUE + _FALSE:
                raise ValueError(value)
            return text in _TRUE
        if annotation == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if annotation == "float":
            return float(value)
        if annotation == "str":
            return str(value)
    except (TypeError, ValueError):
        raise InputError(f"The {family} setting {key}={value!r} must be {_words(annotation)}.") from None
    return value


def _words(annotation: str) -> str:
    return {"bool": "true or false", "int": "a whole number", "float": "a number"}.get(annotation, annotation)
