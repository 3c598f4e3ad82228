"""The plugin's sample data as Volumes: the shipped brain MRI and phantom subjects/series.

brain_sample reads sample_data/brain/ (written by scripts/make_brain_sample.py from the MNI152
2009 template, see sample_data/NOTICE-MNI.txt); the phantom samples are generated on the fly.
"""

from __future__ import annotations

from pathlib import Path

from ..io.readers import read_volume
from ..io.volume import Volume
from .brain import TISSUE_LABELS
from .phantom import breathing_series, make_phantom, tumour_regression_series

BRAIN_DIR = Path(__file__).resolve().parents[1] / "sample_data" / "brain"
BRAIN_IMAGE = "mni152_t1_2mm.nii.gz"
BRAIN_LABELS = "mni152_tissue_2mm_seg.nii.gz"
SERIES_SHAPE = (48, 96, 96)  # (z, y, x): 4 x 4 x 6.67 mm over the phantom's field of view


def brain_sample() -> tuple[Volume, Volume]:
    """(T1 image int16, tissue labels uint8 {0 background, 1 CSF, 2 grey matter, 3 white matter})."""
    image = read_volume(BRAIN_DIR / BRAIN_IMAGE, as_label=False)
    labels = read_volume(BRAIN_DIR / BRAIN_LABELS, as_label=True)
    labels.metadata["label_names"] = dict(TISSUE_LABELS)
    return image, labels


def phantom_sample(seed: int = 0) -> tuple[Volume, Volume]:
    """One thorax phantom subject, (64, 128, 128) at 3 x 3 x 5 mm, style mr_vendor_a."""
    return make_phantom(seed)


def series_sample(seed: int = 0) -> dict[str, Volume]:
    """4D phantom series: keys tumour_regression_image/_labels (6 frames), breathing_image/_labels (8)."""
    reg_image, reg_labels = tumour_regression_series(seed, shape=SERIES_SHAPE)
    br_image, br_labels = breathing_series(seed, shape=SERIES_SHAPE)
    return {"tumour_regression_image": reg_image, "tumour_regression_labels": reg_labels,
            "breathing_image": br_image, "breathing_labels": br_labels}
