"""npe2 sample-data contributions (File > Open Sample > napari-medgen): LayerData lists with geometry."""

from __future__ import annotations

from typing import Any

from .data.samples import brain_sample, phantom_sample, series_sample
from .io.layers import volume_to_layer
from .io.volume import Volume

LayerData = tuple[Any, dict[str, Any], str]


def _layers(*named: tuple[Volume, str]) -> list[LayerData]:
    out = []
    for vol, name in named:
        data, kwargs, kind = volume_to_layer(vol, name=name)
        if kind == "image":
            kwargs.setdefault("colormap", "gray")
        out.append((data, kwargs, kind))
    return out


def brain_mri() -> list[LayerData]:
    """MNI152 2009 T1 (2 mm) and its tissue labels (CSF, grey matter, white matter)."""
    image, labels = brain_sample()
    return _layers((image, "MNI152 T1"), (labels, "MNI152 tissue"))


def thorax_phantom() -> list[LayerData]:
    """One thorax phantom subject (seed 0): image and labels."""
    image, labels = phantom_sample(0)
    return _layers((image, "phantom"), (labels, "phantom labels"))


def phantom_series() -> list[LayerData]:
    """4D phantom series (t, z, y, x): tumour regression (6 frames) and breathing (8 frames)."""
    s = series_sample(0)
    return _layers((s["tumour_regression_image"], "tumour regression"),
                   (s["tumour_regression_labels"], "tumour regression labels"),
                   (s["breathing_image"], "breathing"), (s["breathing_labels"], "breathing labels"))
