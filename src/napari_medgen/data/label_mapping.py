"""What a user's label values mean to a model: one mapping, user value -> model class.

A model card names its classes (``label_names`` {"0": "background", "1": "body", ...}); a user's
label map carries its own values and, where the file or layer says so, their names
(:func:`user_label_names`). Wherever the two meet (synthesis, label deformation with a model,
the longitudinal dock's tracked label) the same rules apply:

* a user value is proposed the model class whose name means the same (:func:`concept`: case,
  ``_``/``-``/spaces and common synonyms such as tumour/tumor/lesion/mass/nodule,
  grey/gray matter, CSF/cerebrospinal fluid are ignored);
* value 0 without a name is background (napari's and most tools' convention) when the model has
  a background class;
* a value without a name, or whose name no class shares, gets no proposal: the user chooses
  (CLI ``--map VALUE=CLASS``, the dock's label table). Equal numbers alone never count: a
  lesion painted as 1 is not the model's class 1 ("body", "CSF") unless the user says so
  (``--map identity`` confirms "my values are the model's classes");
* a map with a value that has no class is refused, naming the user's values and the model's classes.

Napari-free; labels are integer arrays of any shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

#: Words that mean the same class, by canonical name (compared after :func:`normalize_name`).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "background": ("background", "bg", "clear label", "unlabeled", "unlabelled", "exterior", "outside", "none"),
    "tumour": ("tumour", "tumor", "lesion", "mass", "nodule", "cancer", "neoplasm", "gtv", "metastasis",
               "lung tumour", "lung tumor", "lung nodule"),
    "csf": ("csf", "cerebrospinal fluid"),
    "grey matter": ("grey matter", "gray matter", "gm", "cortex", "cortical grey matter", "cortical gray matter"),
    "white matter": ("white matter", "wm", "cerebral white matter"),
    "body": ("body", "skin", "body outline", "soft tissue", "torso"),
    "lung": ("lung", "lungs", "lung parenchyma"),
    "lv blood": ("lv blood", "lv", "left ventricle", "lv blood pool", "left ventricular blood pool"),
    "myocardium": ("myocardium", "myo", "lv myocardium", "heart muscle"),
    "rv": ("rv", "right ventricle", "rv blood", "rv blood pool"),
    "spine": ("spine", "vertebra", "vertebrae", "spinal column"),
}
_CONCEPT = {word.replace(" ", ""): key for key, words in SYNONYMS.items() for word in words}
#: Feature/property columns of a napari Labels layer that may hold a label's name, in order of preference.
NAME_COLUMNS = ("name", "label_name", "label", "class", "segment", "description")


def normalize_name(name: str) -> str:
    """Lower case, ``_ - / .`` as spaces, single spaces: "Grey_Matter" -> "grey matter"."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-/.]+", " ", str(name).lower())).strip()


def concept(name: str) -> str:
    """The canonical meaning of a label name ("Tumor", "lesion" -> "tumour"); else its normalised form
    without spaces ("Class_3" -> "class3")."""
    norm = normalize_name(name).replace(" ", "")
    return _CONCEPT.get(norm, norm)


def user_label_names(metadata: Mapping[str, Any] | None = None,
                     features: Mapping[str, Sequence[Any]] | None = None) -> dict[int, str]:
    """A user's {value: name} from a Volume's/layer's ``metadata["label_names"]`` (what the readers
    fill from NIfTI/NRRD/MHA headers), else from a napari Labels layer's features/properties table.

    features: columns by name (e.g. ``layer.features.to_dict("list")``); the value of row i is its
    ``index`` column when present, else i; the name is the first of :data:`NAME_COLUMNS` present.
    """
    names = (metadata or {}).get("label_names")
    if names:
        return {int(k): str(v) for k, v in names.items()}
    if not features:
        return {}
    column = next((c for c in NAME_COLUMNS if c in features), None)
    if column is None:
        return {}
    texts = list(features[column])
    values = list(features["index"]) if "index" in features else list(range(len(texts)))
    out = {}
    for value, text in zip(values, texts):
        if text is not None and str(text).strip() and str(text) != "nan":
            out[int(value)] = str(text)
    return out


def label_values(data: np.ndarray, what: str = "The label map") -> np.ndarray:
    """Sorted distinct values of an integer label array (whole-number floats accepted), int64.

    Raises InputError for non-integer or non-finite values (an intensity image) and negative values.
    """
    data = np.asarray(data)
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        bad = ~finite if not finite.all() else (data % 1 != 0)
        if bad.any():
            raise InputError(f"{what} holds non-integer values (e.g. {float(data[bad][0]):.4g}): it looks like an "
                             f"intensity image, not a label map. Pick a labels layer or an integer label file.")
    elif data.dtype.kind not in "iub":
        raise InputError(f"{what} has data type {data.dtype}; a label map must hold integers.")
    if data.dtype.kind in "ub" and data.dtype.itemsize <= 2:  # counting is faster than sorting
        values = np.flatnonzero(np.bincount(data.reshape(-1).astype(np.int64, copy=False)))
    else:
        values = np.unique(data).astype(np.int64)
    if values.size and values[0] < 0:
        raise InputError(f"{what} holds negative values (e.g. {int(values[0])}); label values must be >= 0.")
    return values


def describe_classes(model_names: Mapping[int, str], n_classes: int | None = None) -> str:
    """"0 background, 1 body, ..." for messages (classes without a name show their number)."""
    n = n_classes if n_classes is not None else (max(model_names) + 1 if model_names else 0)
    return ", ".join(f"{c} {model_names.get(c, '(unnamed)')}" for c in range(n))


def _describe_values(values: Iterable[int], user_names: Mapping[int, str]) -> str:
    vals = list(values)
    shown = [f"{v} ({user_names[v]})" if v in user_names else f"{v} (unnamed)" for v in vals[:12]]
    return ", ".join(shown) + (f" and {len(vals) - 12} more" if len(vals) > 12 else "")


def propose(values: Iterable[int], user_names: Mapping[int, str],
            model_names: Mapping[int, str]) -> dict[int, int | None]:
    """For each user value, the model class whose name means the same, or None (the user must choose).

    Unnamed 0 -> the model's background class. A name that two classes share gives None.
    """
    by_concept: dict[str, list[int]] = {}
    for c, name in model_names.items():
        by_concept.setdefault(concept(name), []).append(int(c))
    out: dict[int, int | None] = {}
    for v in (int(v) for v in values):
        name = user_names.get(v)
        if name is None:
            name = "background" if v == 0 else None
        classes = by_concept.get(concept(name), []) if name is not None else []
        out[v] = classes[0] if len(classes) == 1 else None
    return out


def class_of(token: str, model_names: Mapping[int, str], n_classes: int) -> int:
    """A model class given by number ("7") or name ("tumour", "Tumor"); InputError if there is none."""
    text = str(token).strip()
    if re.fullmatch(r"\d+", text):
        c = int(text)
        if c < n_classes:
            return c
    else:
        matches = [c for c, name in model_names.items() if concept(name) == concept(text)]
        if len(matches) == 1:
            return int(matches[0])
    raise InputError(f"'{text}' is not a class of this model; its classes are: "
                     f"{describe_classes(model_names, n_classes)}.")


def parse_map(specs: Iterable[str], model_names: Mapping[int, str], n_classes: int) -> tuple[dict[int, int], bool]:
    """``--map`` arguments -> ({user value: model class}, identity confirmed).

    Each spec is ``VALUE=CLASS`` (class by number or name), several may be comma-separated, or
    ``identity`` (the user's values are the model's classes where nothing else is said).
    """
    table: dict[int, int] = {}
    identity = False
    for spec in specs:
        for part in (p.strip() for p in str(spec).split(",")):
            if not part:
                continue
            if part.lower() == "identity":
                identity = True
                continue
            value, sep, cls = part.partition("=")
            if not sep or not re.fullmatch(r"\d+", value.strip()) or not cls.strip():
                raise InputError(f"--map '{part}' is not VALUE=CLASS (e.g. 1=tumour or 1=7) or 'identity'.")
            table[int(value)] = class_of(cls, model_names, n_classes)
    return table, identity


@dataclass(frozen=True)
class LabelMapping:
    """User value -> model class: ``table``, and for values not in it but below ``same_below``
    (the user confirmed "my values are the model's classes"), the same number."""

    table: dict[int, int]
    same_below: int = 0

    @property
    def is_identity(self) -> bool:
        return all(v == c for v, c in self.table.items())

    def class_of(self, value: int) -> int | None:
        """The model class of a user value (None: the mapping has none)."""
        return self.table.get(int(value), int(value) if 0 <= int(value) < self.same_below else None)

    def apply(self, data: np.ndarray, what: str = "The label map", model_names: Mapping[int, str] | None = None,
              n_classes: int | None = None) -> np.ndarray:
        """User label array (any shape) -> model classes (same shape; the array itself for an identity
        mapping, else uint8, or int32 for classes >= 256).

        Raises InputError naming the unmapped values and, when given, the model's classes.
        """
        values = label_values(data, what)
        classes = [self.class_of(v) for v in values]
        missing = [int(v) for v, c in zip(values, classes) if c is None]
        if missing:
            known = f" The model's classes: {describe_classes(model_names, n_classes)}." if model_names else ""
            raise InputError(f"{what} has values with no model class in the label mapping: "
                             f"{_describe_values(missing, {})}.{known} Choose a class for each "
                             f"(CLI: --map VALUE=CLASS; dock: the label table).")
        if all(int(v) == c for v, c in zip(values, classes)):
            return np.asarray(data)
        lut = np.array(classes)
        lut = lut.astype(np.uint8 if lut.max(initial=0) < 256 else np.int32)
        return lut[np.searchsorted(values, np.asarray(data).astype(np.int64, copy=False))]

    def describe(self, user_names: Mapping[int, str], model_names: Mapping[int, str]) -> str:
        """"1 (lesion) -> 7 tumour; ..." for notes and logs."""
        rows = [f"{v}{f' ({user_names[v]})' if v in user_names else ''} -> {c} {model_names.get(c, '')}".strip()
                for v, c in sorted(self.table.items())]
        if self.same_below:
            rows.append(f"other values below {self.same_below} -> the same class number")
        return "; ".join(rows)


def resolve(values: Iterable[int], user_names: Mapping[int, str], model_names: Mapping[int, str], n_classes: int,
            explicit: Mapping[int, int] | None = None, identity: bool = False,
            what: str = "The label map", model: str = "the model") -> LabelMapping:
    """The mapping for the user values present: ``explicit`` choices first, then :func:`propose`,
    then (when ``identity`` is confirmed) the same number for values whose name does not say otherwise.

    Raises InputError naming both sides when a value has no class, or a class is out of range.
    """
    values = [int(v) for v in values]
    explicit = dict(explicit or {})
    for v, c in explicit.items():
        if not 0 <= int(c) < n_classes:
            raise InputError(f"Label value {v} is mapped to class {c}, but {model} has classes "
                             f"{describe_classes(model_names, n_classes)}.")
    proposal = propose(values, user_names, model_names)
    table: dict[int, int] = {}
    for v in values:
        c = explicit.get(v, proposal[v])
        if c is None and identity and v < n_classes and v not in user_names:
            c = v
        if c is not None:
            table[v] = int(c)
    missing = [v for v in values if v not in table]
    if missing:
        raise InputError(f"{what} has label values that {model} has no class for: "
                         f"{_describe_values(missing, user_names)}. The model's classes: "
                         f"{describe_classes(model_names, n_classes)}. Choose a class for each "
                         f"(CLI: --map VALUE=CLASS, e.g. --map {missing[0]}=<class name or number>; dock: the label "
                         f"table), or pick a model trained with these labels.")
    return LabelMapping(table, n_classes if identity else 0)


def tracked_candidates(values: Iterable[int], user_names: Mapping[int, str]) -> list[int]:
    """Foreground values a "which label to follow?" question should pre-select, best first: those
    named like a lesion (tumour, tumor, lesion, mass, nodule, ...), else the only foreground value."""
    fg = [int(v) for v in values if int(v) != 0]
    named = [v for v in fg if v in user_names and concept(user_names[v]) == "tumour"]
    return named if named else (fg if len(fg) == 1 else [])
