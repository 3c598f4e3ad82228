"""Per-label intensity statistics of an image under an integer label map (napari-free, any shape)."""

from __future__ import annotations

import numpy as np


def label_sums(image: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(pixel counts (n_classes,), intensity sums (n_classes,) float64) of label values 0..n_classes-1."""
    flat = np.asarray(labels).ravel().astype(np.int64)
    counts = np.bincount(flat, minlength=n_classes)[:n_classes]
    sums = np.bincount(flat, weights=np.asarray(image, np.float64).ravel(), minlength=n_classes)[:n_classes]
    return counts, sums


def label_means(image: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean image intensity per label value 0..n_classes-1 (NaN where a label is absent), shape (n_classes,)."""
    counts, sums = label_sums(image, labels, n_classes)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
