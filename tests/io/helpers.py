"""Test helpers: write files with the format's own library (independently of napari_medgen.io).

Geometry is given as a 4x4 LPS affine (index (i, j, k, 1) -> LPS mm), arrays as (z, y, x).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

FLIP_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: direction matrices (columns = index axes i, j, k in LPS) and spacings (i, j, k) mm
CASES = {
    "identity": (np.eye(3), (1.0, 1.0, 1.0)),
    "flipped": (np.diag([-1.0, 1.0, -1.0]), (0.8, 1.1, 2.5)),
    "permuted": (np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), (0.7, 1.3, 3.0)),
    "improper": (np.diag([1.0, -1.0, 1.0]), (1.2, 0.9, 3.0)),  # det -1, e.g. NIfTI "LAS"
    "anisotropic": (np.eye(3), (0.4, 0.9, 5.0)),
    "oblique": (Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix(), (0.9, 1.2, 2.0)),
}
ORIGIN = np.array([-40.5, 25.25, 60.0])


def lps_affine(direction: np.ndarray, spacing, origin=ORIGIN) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = np.asarray(direction) @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def index_grid(shape_zyx) -> np.ndarray:
    """(z, y, x, 3) array of (i, j, k) indices."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    return np.stack([i, j, k], axis=-1).astype(float)


COEF = np.array([0.5, -2.0, 3.0])  # value = COEF . LPS point + 7


def linear_field(shape_zyx, affine: np.ndarray) -> np.ndarray:
    """float32 (z, y, x) volume whose value is a known linear function of the LPS position."""
    pts = index_grid(shape_zyx) @ affine[:3, :3].T + affine[:3, 3]
    return (pts @ COEF + 7.0).astype(np.float64)


def write_nifti(path: Path, data_zyx: np.ndarray, affine_lps: np.ndarray, **header) -> Path:
    img = nib.Nifti1Image(np.asarray(data_zyx).T, FLIP_LPS_RAS @ affine_lps, dtype=data_zyx.dtype)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, str(path))
    return path


def write_nrrd(path: Path, data_zyx: np.ndarray, affine_lps: np.ndarray, space: str = "LPS") -> Path:
    """NRRD via pynrrd in 'left-posterior-superior' or 'right-anterior-superior' space."""
    aff = affine_lps if space == "LPS" else FLIP_LPS_RAS @ affine_lps
    name = "left-posterior-superior" if space == "LPS" else "right-anterior-superior"
    nrrd.write(str(path), np.asarray(data_zyx).T, {"space": name, "space directions": aff[:3, :3].T,
                                                    "space origin": aff[:3, 3]}, index_order="F")
    return path


def sitk_image(data_zyx: np.ndarray, affine_lps: np.ndarray) -> sitk.Image:
    lin = affine_lps[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    img = sitk.GetImageFromArray(data_zyx)
    img.SetSpacing(spacing.tolist())
    img.SetOrigin(affine_lps[:3, 3].tolist())
    img.SetDirection((lin / spacing).ravel().tolist())
    return img


def write_dicom_series(folder: Path, data_zyx: np.ndarray, affine_lps: np.ndarray,
                       series_uid: str = "1.2.826.0.1.3680043.2.1125.1", trigger_ms: float | None = None,
                       first_instance: int = 1) -> Path:
    """One DICOM file per z slice with ImagePositionPatient/ImageOrientationPatient (int16 data).

    trigger_ms: TriggerTime of every slice (one time point of a multi-phase series); files are
    named by instance number, starting at ``first_instance``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    vol = sitk_image(data_zyx.astype(np.int16), affine_lps)
    direction = np.asarray(vol.GetDirection()).reshape(3, 3)
    iop = "\\".join(f"{v:.10f}" for v in (*direction[:, 0], *direction[:, 1]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(data_zyx.shape[0]):
        sl = vol[:, :, z]
        ipp = vol.TransformIndexToPhysicalPoint((0, 0, z))
        tags = {"0008|0060": "MR", "0020|000e": series_uid, "0020|000d": series_uid + ".0",
                "0020|0032": "\\".join(f"{v:.10f}" for v in ipp), "0020|0037": iop,
                "0020|0013": str(z + first_instance), "0008|0018": f"{series_uid}.{z + first_instance}",
                "0018|0050": f"{vol.GetSpacing()[2]:.6f}", "0028|0030": "\\".join(f"{v:.6f}" for v in vol.GetSpacing()[1::-1])}
        if trigger_ms is not None:
            tags["0018|1060"] = f"{trigger_ms:g}"
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{z + first_instance - 1:03d}.dcm"))
        writer.Execute(sl)
    return folder


def layer_world_points(data: np.ndarray, kwargs: dict, layer_type: str, index: np.ndarray) -> np.ndarray:
    """napari world coordinates (z, y, x) of layer data indices (n, ndim), via a real napari layer."""
    from napari.layers import Image, Labels

    layer = (Labels if layer_type == "labels" else Image)(data, **{k: v for k, v in kwargs.items() if k != "metadata"})
    return np.array([np.asarray(layer.data_to_world(idx)) for idx in index])


def pydicom_file(name: str) -> Path:
    """A test file bundled in the pydicom wheel (never downloaded; fails if it is not bundled)."""
    import pydicom.data

    path = Path(pydicom.data.__file__).parent / "test_files" / name
    assert path.is_file(), f"{name} is not bundled with this pydicom"
    return path
