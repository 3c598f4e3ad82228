"""Where a trainer's data comes from: one :class:`TrainingSource` for every family.

A source is the shipped brain sample (``--sample brain``: MNI152 2009 T1 at 2 mm with its tissue
labels), the phantom (``--sample phantom``: each family renders its own seeded subjects, as its
module says) or the user's folders (``--images DIR`` and/or ``--labels DIR``; images and label
maps are matched by file name, ``data.datasets.load_pairs``). A family declares what it trains on
as :class:`Sources`; :meth:`TrainingSource.of` refuses anything else, naming what the family takes.

The source gives whole volumes (:meth:`~TrainingSource.volumes`, :meth:`~TrainingSource.pairs`),
their label names and a plain-words description; each family cuts them into its own training grid
(slices or volumes), which its model cards record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..io.volume import Volume

if TYPE_CHECKING:
    from .config import TrainConfig

SAMPLES = ("brain", "phantom")
# which folders a family reads: both (matched by name), images only, labels only, images with optional labels
FOLDER_WORDS = {"images+labels": "--images DIR --labels DIR", "images": "--images DIR", "labels": "--labels DIR",
                "images[+labels]": "--images DIR [--labels DIR]"}


@dataclass(frozen=True)
class Sources:
    """What a family trains on: these shipped samples, and ``folders`` (a key of :data:`FOLDER_WORDS`,
    or None: no folders)."""

    samples: tuple[str, ...] = SAMPLES
    folders: str | None = "images+labels"

    def words(self) -> str:
        """The command-line options that give such data, e.g. "--sample brain|phantom or --images DIR"."""
        parts = [f"--sample {'|'.join(self.samples)}"] if self.samples else []
        return " or ".join(parts + ([FOLDER_WORDS[self.folders]] if self.folders else []))


@dataclass(frozen=True)
class TrainingSource:
    """One training source. kind: "brain" | "phantom" | "folders"; images/labels: the folders a
    "folders" source reads (None: not read)."""

    kind: str
    images: Path | None = None
    labels: Path | None = None

    @classmethod
    def of(cls, config: TrainConfig, family: str = "", sources: Sources | None = None) -> TrainingSource:
        """The source ``config`` names (``--sample``, else its folders). With ``sources``: InputError
        unless ``family`` trains on it; only the folders the family reads are kept."""
        if config.sample is not None:
            if config.sample not in SAMPLES:
                raise InputError(f"Unknown sample '{config.sample}': use {' or '.join(SAMPLES)}.")
            if sources is not None and config.sample not in sources.samples:
                raise InputError(f"The {family} family does not train on the {config.sample} sample: "
                                 f"use {sources.words()}.")
            return cls(config.sample)
        images, labels = _path(config.images), _path(config.labels)
        if sources is None:
            return cls("folders", images, labels)
        want = sources.folders
        if want is None and (images or labels):
            raise InputError(f"The {family} family does not train on folders: use {sources.words()}.")
        wants_images, wants_labels = want != "labels", want != "images"
        missing_labels = want in ("images+labels", "labels") and labels is None
        if want is None or (wants_images and images is None) or missing_labels:
            raise InputError(f"Training needs data: the {family} family trains on {sources.words()}.")
        return cls("folders", images if wants_images else None, labels if wants_labels else None)

    def describe(self) -> str:
        """Plain-words description of the source, for a model card."""
        if self.kind != "folders":
            return f"shipped sample '{self.kind}'"
        return ", ".join(f"{what} {path}" for what, path in (("images", self.images), ("labels", self.labels)) if path)

    def volumes(self) -> list[tuple[Volume | None, Volume | None]]:
        """(image, label map) volumes: the brain sample's one pair, or the folders' (matched by file name,
        sorted; the side whose folder is not read is None). Not for the phantom (a family renders it)."""
        if self.kind == "brain":
            from ..data.samples import brain_sample

            return [brain_sample()]
        if self.kind != "folders":
            raise ValueError(f"The {self.kind} source renders its data in each family's trainer.")
        if self.images is not None and self.labels is not None:
            from ..data.datasets import load_pairs

            return list(load_pairs(self.images, self.labels))
        from ..data.datasets import list_volumes
        from ..io.readers import read_volume

        folder = self.images if self.images is not None else self.labels
        read = [read_volume(p, as_label=self.images is None) for p in list_volumes(folder).values()]
        return [(v, None) for v in read] if self.images is not None else [(None, v) for v in read]

    def pairs(self) -> list[tuple[Volume, Volume]]:
        """:meth:`volumes` where both sides are there (a family that reads images and labels)."""
        pairs = self.volumes()
        if any(img is None or lab is None for img, lab in pairs):
            raise ValueError("This source reads only one of images and labels.")
        return pairs  # type: ignore[return-value]

    def label_names(self, labels: Sequence[Volume] = ()) -> dict[int, str]:
        """{label value: name}: the phantom's or the brain sample's own names; for folders "label K" for
        0..the largest value in ``labels``, overridden by the names the first label map carries."""
        if self.kind == "phantom":
            from ..data.phantom import LABELS

            return dict(LABELS)
        if self.kind == "brain":
            from ..data.brain import TISSUE_LABELS

            return dict(TISSUE_LABELS)
        n_classes = max((int(v.data.max()) for v in labels), default=-1) + 1
        carried = labels[0].metadata.get("label_names", {}) if labels else {}
        return {**{k: f"label {k}" for k in range(n_classes)}, **{int(k): str(v) for k, v in carried.items()}}


def _path(value: str | Path | None) -> Path | None:
    return None if value is None or str(value) == "" else Path(value)
