"""The project's one image type: a voxel array with its physical geometry.

Geometry convention (the only one in this project; DESIGN.md "Geometry lives in one place"):

* ``data`` is indexed ``[z, y, x]`` (3D) or ``[t, z, y, x]`` (4D time series), as SimpleITK's
  ``GetArrayFromImage`` returns it. Voxel index ``(i, j, k)`` addresses ``data[..., k, j, i]``.
* ``spacing``, ``origin`` and ``direction`` follow ITK/DICOM: they are given in ``(x, y, z)``
  order, in millimetres, in **LPS** patient coordinates (x grows to the patient's Left, y to
  Posterior, z to Superior). ``direction`` is 3x3; its column ``c`` is the unit physical
  direction of index axis ``c`` (i, j, k).
* Physical point of voxel (i, j, k): ``origin + direction @ (spacing * (i, j, k))``.

NIfTI files (RAS) are converted to LPS by the reader and back by the writer. napari world
coordinates are the same LPS millimetres in reversed, array-like order ``(z, y, x)``: see
:mod:`napari_medgen.io.layers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A 3D (z, y, x) or 4D (t, z, y, x) array with LPS geometry in (x, y, z) order.

    is_label: integer label map (0 = background). metadata: free key/values, e.g.
    ``label_names`` {int: str}, ``time_spacing`` (seconds or days), ``source`` path, ``notes``
    (list of messages the GUI should show, e.g. "NaN voxels replaced").
    """

    data: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    is_label: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        if self.data.ndim not in (3, 4):
            raise ValueError(f"Volume data must be 3D (z, y, x) or 4D (t, z, y, x), got shape {self.data.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if len(self.spacing) != 3 or len(self.origin) != 3:
            raise ValueError("spacing and origin must have 3 values in (x, y, z) order")
        if any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive and finite, got {self.spacing}")

    @property
    def is_time_series(self) -> bool:
        return self.data.ndim == 4

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """Shape of one 3D frame, (z, y, x)."""
        return tuple(self.data.shape[-3:])  # type: ignore[return-value]

    def affine(self) -> np.ndarray:
        """4x4 matrix mapping voxel index (i, j, k, 1) to LPS millimetres (x, y, z, 1)."""
        a = np.eye(4)
        a[:3, :3] = self.direction @ np.diag(self.spacing)
        a[:3, 3] = self.origin
        return a

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Voxel indices (..., 3) in (i, j, k) order -> LPS points (..., 3) in (x, y, z) mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ (self.direction @ np.diag(self.spacing)).T + np.asarray(self.origin)

    def is_axis_aligned(self, tol: float = 1e-4) -> bool:
        """True when the direction matrix is a signed permutation (no obliquity)."""
        d = np.abs(self.direction)
        return bool(np.all((d < tol) | (np.abs(d - 1) < tol)))

    def with_data(self, data: np.ndarray, is_label: bool | None = None, **metadata: Any) -> "Volume":
        """Same geometry, new array (e.g. a synthetic image for a label map)."""
        meta = {**self.metadata, **metadata}
        return replace(self, data=np.asarray(data), is_label=self.is_label if is_label is None else is_label,
                       metadata=meta, direction=self.direction.copy())

    def frame(self, t: int) -> "Volume":
        """One 3D frame of a 4D series, same geometry."""
        if not self.is_time_series:
            raise ValueError("frame() needs a 4D volume")
        return self.with_data(self.data[t])
