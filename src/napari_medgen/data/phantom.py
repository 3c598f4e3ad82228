"""Procedural thorax/heart phantom (in the spirit of XCAT): exact label maps and rendered images.

Coordinates are LPS millimetres (x to the patient's Left, y Posterior, z Superior); the returned
Volumes have identity direction and are centred on (0, 0, 0). A 2D subject (shape ``(1, ny, nx)``)
is the axial slice at z = ``SLICE_2D_Z_MM`` (through the heart and both lungs).

Anatomy (unrotated, before seeded variation; every number is exact and listed in docs/data.md):

* body: elliptic cylinder over the whole z range, semi-axes 160 x 110 mm (L-R x A-P) times
  ``body_scale``;
* lungs: one per side, centred at x = +-68 mm, y = 5 mm, elliptic cross-section 46 x 68 mm
  tapering to the apex at z = 110 mm; base (lowest lung point) at z = -70 - 30 * breathing_phase
  mm, with a 20 mm diaphragm dome; in-plane size x (1 + 0.06 * breathing_phase); excluded from a
  fixed mediastinum (the end-diastolic heart enlarged by 8 %);
* heart: left ventricle (myocardium around the LV blood pool) centred at (28, -35, -25) mm,
  blood pool 24 x 20 x 30 mm at end-diastole whose volume falls by ``EJECTION_FRACTION`` at
  end-systole while the myocardial volume stays constant; right ventricle to the right-anterior
  whose volume falls by ``RV_EJECTION_FRACTION``;
* spine: vertebral body, elliptic cylinder 18 x 16 mm at (0, 70) mm;
* tumour: a ball of radius ``tumour_radius_mm`` in the posterior-lateral part of one lung.

Label priority (a voxel in several structures gets the highest): tumour > lv_blood >
myocardium > rv > spine > lung > body > background. The seed varies body width/depth (+-5 %),
lung size (+-8 %) and height (+-8 %), heart position (+-5 mm per axis) and size (+-8 %), and
the tumour's lung, position and z; explicit factors are applied on top and never change the
seeded draws. ``rotation_deg`` rotates all anatomy about the z axis through the centre, from +x
towards +y (left towards posterior).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io.layers import to_canonical
from ..io.volume import Volume

LABELS: dict[int, str] = {0: "background", 1: "body", 2: "lung", 3: "lv_blood", 4: "myocardium", 5: "rv",
                          6: "spine", 7: "tumour"}
PRIORITY = (1, 2, 6, 5, 4, 3, 7)  # painted in this order: later labels win
FOV_MM = (384.0, 384.0, 320.0)  # (x, y, z) field of view covered when spacing is not given
SLICE_2D_Z_MM = -20.0
EJECTION_FRACTION = 0.6  # LV blood-pool volume at end-systole = (1 - EF) x end-diastole
RV_EJECTION_FRACTION = 0.5
DIAPHRAGM_EXCURSION_MM = 30.0
LUNG_INSPIRATION_GROWTH = 0.06  # in-plane lung size factor at full inspiration: 1 + 0.06
BODY_SCALE_RANGE = (0.9, 1.1)
TUMOUR_RADIUS_RANGE_MM = (0.0, 20.0)
ROTATION_RANGE_DEG = (-45.0, 45.0)

# (mean, texture std) per label. MR styles are in arbitrary units (~0..1); "ct" in Hounsfield
# units with iodine contrast in the blood pools.
STYLE_TABLES: dict[str, dict[int, tuple[float, float]]] = {
    # T1-like with bright blood (bSSFP-like): bright fatty body, dark lungs
    "mr_vendor_a": {0: (0.0, 0.0), 1: (0.75, 0.04), 2: (0.05, 0.02), 3: (0.95, 0.03), 4: (0.35, 0.03),
                    5: (0.85, 0.03), 6: (0.55, 0.05), 7: (0.50, 0.04)},
    # black-blood, T2-like: inverted heart contrast (dark blood, bright myocardium), bright tumour
    "mr_vendor_b": {0: (0.0, 0.0), 1: (0.45, 0.04), 2: (0.10, 0.02), 3: (0.08, 0.02), 4: (0.60, 0.03),
                    5: (0.10, 0.02), 6: (0.30, 0.04), 7: (0.90, 0.04)},
    # proton-density-like, low contrast
    "mr_vendor_c": {0: (0.0, 0.0), 1: (0.60, 0.05), 2: (0.22, 0.03), 3: (0.68, 0.04), 4: (0.48, 0.04),
                    5: (0.64, 0.04), 6: (0.50, 0.05), 7: (0.74, 0.05)},
    "ct": {0: (-1000.0, 0.0), 1: (40.0, 15.0), 2: (-800.0, 40.0), 3: (250.0, 15.0), 4: (60.0, 10.0),
           5: (230.0, 15.0), 6: (500.0, 60.0), 7: (35.0, 12.0)},
}
STYLES: list[str] = list(STYLE_TABLES)
CT_NOISE_SCALE_HU = 1000.0  # ct: noise sigma = noise x 1000 HU


@dataclass(frozen=True)
class Anatomy:
    """Every number that shapes one subject (mm, degrees, fractions); recorded in label metadata."""

    seed: int
    body_semi_mm: tuple[float, float]
    lung_centre_x_mm: float
    lung_centre_y_mm: float
    lung_semi_mm: tuple[float, float]
    lung_apex_z_mm: float
    lung_base_z_mm: float
    dome_height_mm: float
    heart_centre_mm: tuple[float, float, float]
    lv_blood_semi_mm: tuple[float, float, float]
    lv_outer_semi_mm: tuple[float, float, float]
    lv_outer_ed_semi_mm: tuple[float, float, float]
    rv_centre_mm: tuple[float, float, float]
    rv_semi_mm: tuple[float, float, float]
    rv_ed_semi_mm: tuple[float, float, float]
    spine_centre_mm: tuple[float, float]
    spine_semi_mm: tuple[float, float]
    tumour_centre_mm: tuple[float, float, float]
    tumour_radius_mm: float
    breathing_phase: float
    cardiac_phase: float
    body_scale: float
    rotation_deg: float


def anatomy(seed: int = 0, *, tumour_radius_mm: float = 12.0, breathing_phase: float = 0.0,
            cardiac_phase: float = 0.0, body_scale: float = 1.0, rotation_deg: float = 0.0,
            two_d: bool = False) -> Anatomy:
    """The subject's geometry for ``seed`` with the explicit factors applied (see module doc)."""
    _check_range("tumour_radius_mm", tumour_radius_mm, TUMOUR_RADIUS_RANGE_MM)
    _check_range("breathing_phase", breathing_phase, (0.0, 1.0))
    _check_range("cardiac_phase", cardiac_phase, (0.0, 1.0))
    _check_range("body_scale", body_scale, BODY_SCALE_RANGE)
    _check_range("rotation_deg", rotation_deg, ROTATION_RANGE_DEG)
    u = np.random.default_rng(seed).uniform(-1.0, 1.0, size=12)  # fixed draws: factors never shift them
    body = (160.0 * (1 + 0.05 * u[0]) * body_scale, 110.0 * (1 + 0.05 * u[1]) * body_scale)
    lung_size, lung_height = 1 + 0.08 * u[2], 1 + 0.08 * u[3]
    grow = 1 + LUNG_INSPIRATION_GROWTH * breathing_phase
    heart_size = 1 + 0.08 * u[7]
    heart = (28.0 + 5 * u[4], -35.0 + 5 * u[5], -25.0 + 5 * u[6])
    lv_ed = tuple(heart_size * s for s in (24.0, 20.0, 30.0))
    outer_ed = tuple(heart_size * s for s in (36.0, 32.0, 42.0))
    k_blood = (1 - EJECTION_FRACTION * cardiac_phase) ** (1 / 3)
    v_ed_blood, v_ed_outer = np.prod(lv_ed), np.prod(outer_ed)
    k_outer = ((v_ed_outer - v_ed_blood + v_ed_blood * k_blood ** 3) / v_ed_outer) ** (1 / 3)
    rv_ed = tuple(heart_size * s for s in (30.0, 24.0, 38.0))
    k_rv = (1 - RV_EJECTION_FRACTION * cardiac_phase) ** (1 / 3)
    side = 1.0 if u[8] >= 0 else -1.0
    lung_cx, lung_rx, lung_ry = 68.0 * lung_size, 46.0 * lung_size, 68.0 * lung_size
    tumour_z = SLICE_2D_Z_MM if two_d else -5.0 + 20.0 * u[10]
    tumour = (side * (lung_cx + (0.125 + 0.125 * u[11]) * lung_rx), 5.0 + (0.325 + 0.125 * u[9]) * lung_ry,
              tumour_z)
    return Anatomy(
        seed=int(seed), body_semi_mm=body, lung_centre_x_mm=lung_cx, lung_centre_y_mm=5.0,
        lung_semi_mm=(lung_rx * grow, lung_ry * grow), lung_apex_z_mm=110.0 * lung_height,
        lung_base_z_mm=-70.0 - DIAPHRAGM_EXCURSION_MM * breathing_phase, dome_height_mm=20.0,
        heart_centre_mm=heart, lv_blood_semi_mm=tuple(k_blood * s for s in lv_ed),
        lv_outer_semi_mm=tuple(k_outer * s for s in outer_ed), lv_outer_ed_semi_mm=outer_ed,
        rv_centre_mm=(heart[0] - 34.0 * heart_size, heart[1] - 8.0 * heart_size, heart[2]),
        rv_semi_mm=tuple(k_rv * s for s in rv_ed), rv_ed_semi_mm=rv_ed,
        spine_centre_mm=(0.0, 70.0), spine_semi_mm=(18.0, 16.0), tumour_centre_mm=tumour,
        tumour_radius_mm=float(tumour_radius_mm), breathing_phase=float(breathing_phase),
        cardiac_phase=float(cardiac_phase), body_scale=float(body_scale), rotation_deg=float(rotation_deg))


def make_labels(seed: int = 0, *, shape: tuple[int, int, int] = (64, 128, 128),
                spacing: tuple[float, float, float] | None = None, **factors: float) -> Volume:
    """The exact label map (uint8, values of :data:`LABELS`) of one subject on a (z, y, x) grid.

    spacing (x, y, z) mm; None covers :data:`FOV_MM` (z spacing 5 mm for a single slice).
    factors: tumour_radius_mm, breathing_phase, cardiac_phase, body_scale, rotation_deg.
    """
    shape, spacing = _grid(shape, spacing)
    a = anatomy(seed, two_d=shape[0] == 1, **factors)
    origin = tuple(-(n - 1) / 2 * s for n, s in zip(shape[::-1], spacing))
    if shape[0] == 1:
        origin = (origin[0], origin[1], SLICE_2D_Z_MM)
    x = (origin[0] + spacing[0] * np.arange(shape[2], dtype=np.float32))[None, None, :]
    y = (origin[1] + spacing[1] * np.arange(shape[1], dtype=np.float32))[None, :, None]
    z = (origin[2] + spacing[2] * np.arange(shape[0], dtype=np.float32))[:, None, None]
    t = np.deg2rad(a.rotation_deg)  # anatomy coordinates = physical rotated back by -t
    xa = np.cos(t) * x + np.sin(t) * y
    ya = -np.sin(t) * x + np.cos(t) * y
    masks = {
        1: _ellipse(xa, ya, (0.0, 0.0), a.body_semi_mm) & np.ones(shape, bool),
        2: _lungs(a, xa, ya, z),
        6: _ellipse(xa, ya, a.spine_centre_mm, a.spine_semi_mm) & np.ones(shape, bool),
        5: _ellipsoid(xa, ya, z, a.rv_centre_mm, a.rv_semi_mm),
        4: _ellipsoid(xa, ya, z, a.heart_centre_mm, a.lv_outer_semi_mm),
        3: _ellipsoid(xa, ya, z, a.heart_centre_mm, a.lv_blood_semi_mm),
        7: _ellipsoid(xa, ya, z, a.tumour_centre_mm, (a.tumour_radius_mm,) * 3),
    }
    labels = np.zeros(shape, np.uint8)
    for value in PRIORITY:
        labels[masks[value]] = value
    return Volume(labels, spacing, origin, np.eye(3), is_label=True,
                  metadata={"label_names": dict(LABELS), "factors": asdict(a)})


def render(labels: Volume, style: str = "mr_vendor_a", seed: int = 0, *, noise: float = 0.02, bias: float = 0.2,
           blur_mm: float = 1.0) -> Volume:
    """Render a 3D phantom label map to a float32 image with the same geometry.

    Per label a mean plus smooth texture (style table: mean, std; Gaussian noise smoothed with a
    1-voxel sigma), Gaussian blur of ``blur_mm`` (sigma, mm),
    for MR styles a smooth multiplicative bias field with amplitude ``bias`` (field in
    [1 - bias, 1 + bias]) and Rician noise of sigma ``noise`` (relative to 1); for "ct" Gaussian
    noise of sigma ``noise`` x 1000 HU and no bias field.
    """
    if style not in STYLE_TABLES:
        raise InputError(f"Unknown phantom style {style!r}; choose one of {', '.join(STYLES)}")
    lab = np.asarray(labels.data)
    if lab.ndim != 3 or lab.size == 0:
        raise InputError(f"render needs a 3D (z, y, x) label map, got shape {lab.shape}")
    table = STYLE_TABLES[style]
    if not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0:
        raise InputError(f"render needs a non-negative integer label map, got dtype {lab.dtype}")
    unknown = sorted(set(np.flatnonzero(np.bincount(lab.ravel())).tolist()) - set(table))
    if unknown:
        raise InputError(f"Label map has values {unknown} that the phantom styles do not know (0..7)")
    rng = np.random.default_rng([int(seed), 1])
    lut_mean = np.zeros(max(table) + 1, np.float32)
    lut_std = np.zeros_like(lut_mean)
    for value, (mean, std) in table.items():
        lut_mean[value], lut_std[value] = mean, std
    sp_zyx = np.asarray(labels.spacing[::-1])
    texture = ndimage.gaussian_filter(rng.standard_normal(lab.shape, dtype=np.float32), 1.0, mode="nearest")
    texture /= max(float(texture.std()), 1e-6)  # unit-variance texture correlated over ~1 voxel
    texture *= lut_std[lab]
    img = texture
    img += lut_mean[lab]  # = mean + std * texture, in place
    if blur_mm > 0:
        img = ndimage.gaussian_filter(img, blur_mm / sp_zyx, mode="nearest")
    if style == "ct":
        img += rng.standard_normal(lab.shape, dtype=np.float32) * np.float32(noise * CT_NOISE_SCALE_HU)
    else:
        img *= _bias_field(lab.shape, bias, rng)
        n = rng.standard_normal((2,) + lab.shape, dtype=np.float32)  # Rician: |img + n1 + i n2|
        n *= np.float32(noise)
        n[0] += img
        np.square(n, out=n)
        img = np.sqrt(n[0] + n[1])
    meta = {"style": style, "render_seed": int(seed), "noise": noise, "bias": bias, "blur_mm": blur_mm,
            "units": "HU" if style == "ct" else "a.u."}
    return Volume(img.astype(np.float32), labels.spacing, labels.origin, labels.direction, False, meta)


def make_phantom(seed: int = 0, *, shape: tuple[int, int, int] = (64, 128, 128),
                 spacing: tuple[float, float, float] | None = None, tumour_radius_mm: float = 12.0,
                 breathing_phase: float = 0.0, cardiac_phase: float = 0.0, body_scale: float = 1.0,
                 rotation_deg: float = 0.0, style: str = "mr_vendor_a", noise: float = 0.02, bias: float = 0.2,
                 blur_mm: float = 1.0) -> tuple[Volume, Volume]:
    """One subject: (image float32 Volume, labels uint8 Volume), both (z, y, x) = ``shape``.

    spacing (x, y, z) mm; None = cover :data:`FOV_MM` (3 x 3 x 5 mm for the default shape).
    breathing_phase 0 exhale .. 1 inhale; cardiac_phase 0 end-diastole .. 1 end-systole.
    The image is rendered with the same seed (see :func:`render`).
    """
    labels = make_labels(seed, shape=shape, spacing=spacing, tumour_radius_mm=tumour_radius_mm,
                         breathing_phase=breathing_phase, cardiac_phase=cardiac_phase, body_scale=body_scale,
                         rotation_deg=rotation_deg)
    image = render(labels, style, seed, noise=noise, bias=bias, blur_mm=blur_mm)
    image.metadata["factors"] = labels.metadata["factors"]
    return image, labels


def factor_series(seed: int, factor: str, values: list[float] | np.ndarray, *, same_noise: bool = True,
                  **kwargs: Any) -> tuple[Volume, Volume]:
    """4D (t, z, y, x) image and labels with one factor taking ``values`` over time, all else fixed.

    same_noise: render every frame with the same noise/bias seed (only the factor changes);
    otherwise frame t uses seed + t. kwargs go to :func:`make_phantom`. metadata[factor] holds
    the values, metadata["series_factor"] the factor's name, metadata["factors"] frame 0's anatomy.
    """
    frames = [make_phantom(seed, **{**kwargs, factor: float(v)}) for v in values]
    if not same_noise:
        style_kw = {k: kwargs[k] for k in ("noise", "bias", "blur_mm") if k in kwargs}
        frames = [(render(lab, kwargs.get("style", "mr_vendor_a"), seed + t, **style_kw), lab)
                  for t, (_, lab) in enumerate(frames)]
    meta = {factor: [float(v) for v in values], "time_spacing": 1.0, "series_factor": factor}
    image = frames[0][0].with_data(np.stack([f[0].data for f in frames]), **meta)
    labels = frames[0][1].with_data(np.stack([f[1].data for f in frames]), **meta)
    return image, labels


def tumour_regression_series(seed: int = 0, n: int = 6, *, start_radius_mm: float = 16.0,
                             end_radius_mm: float = 6.0, mode: str = "geometric", **kwargs: Any) -> tuple[Volume, Volume]:
    """Tumour radius shrinking over ``n`` time points from start to end radius (mm).

    mode "geometric": r_t = r0 (r_end / r0) ** (t / (n - 1)); "linear": r_t = r0 + (r_end - r0) t / (n - 1).
    """
    if n < 2:
        raise InputError("a tumour regression series needs at least 2 time points")
    f = np.arange(n) / (n - 1)
    if mode == "geometric":
        if start_radius_mm <= 0 or end_radius_mm <= 0:
            raise InputError("geometric tumour regression needs positive start and end radii")
        radii = start_radius_mm * (end_radius_mm / start_radius_mm) ** f
    elif mode == "linear":
        radii = start_radius_mm + (end_radius_mm - start_radius_mm) * f
    else:
        raise InputError(f"mode must be 'geometric' or 'linear', not {mode!r}")
    return factor_series(seed, "tumour_radius_mm", radii, **kwargs)


def cosine_phases(n: int, cycles: float = 1.0) -> np.ndarray:
    """Phases of a periodic motion in ``n`` frames: (1 - cos(2 pi cycles t / n)) / 2, in [0, 1]."""
    return (1 - np.cos(2 * np.pi * cycles * np.arange(n) / n)) / 2


def breathing_series(seed: int = 0, n: int = 8, *, cycles: float = 1.0, **kwargs: Any) -> tuple[Volume, Volume]:
    """Breathing over ``cycles`` cycles in ``n`` frames (breathing_phase = :func:`cosine_phases`)."""
    return factor_series(seed, "breathing_phase", cosine_phases(n, cycles), **kwargs)


def cardiac_series(seed: int = 0, n: int = 8, *, cycles: float = 1.0, **kwargs: Any) -> tuple[Volume, Volume]:
    """Heart beats over ``cycles`` cycles in ``n`` frames (cardiac_phase = :func:`cosine_phases`)."""
    return factor_series(seed, "cardiac_phase", cosine_phases(n, cycles), **kwargs)


def estimate_factors(labels: Volume) -> dict[str, Any]:
    """Measure factors from a phantom label map (3D; 4D gives a list per key, one value per frame).

    tumour_volume_ml, lung_volume_ml (lungs incl. tumour), lv_volume_ml (blood pool),
    heart_volume_ml (LV blood + myocardium + RV), body_area_cm2 (mean axial body area),
    body_extent_mm (full major axis of the body ellipse from second moments), rotation_deg (angle of
    that axis from +x towards +y), diaphragm_z_mm (z of the lowest lung voxel; NaN without lungs).
    """
    if labels.data.ndim == 4:
        per_frame = [estimate_factors(labels.frame(t)) for t in range(labels.data.shape[0])]
        return {k: [f[k] for f in per_frame] for k in per_frame[0]}
    if not labels.is_axis_aligned():
        raise InputError("estimate_factors needs an axis-aligned label map (resample oblique volumes first)")
    vol, _ = to_canonical(labels)
    lab = np.asarray(vol.data)
    sx, sy, sz = vol.spacing
    ml = sx * sy * sz / 1000.0
    counts = np.bincount(lab.ravel(), minlength=len(LABELS))
    body = lab > 0
    weights = body.sum(axis=0).astype(np.float64)  # (y, x) count of body voxels through z
    yy = vol.origin[1] + sy * np.arange(lab.shape[1])[:, None]
    xx = vol.origin[0] + sx * np.arange(lab.shape[2])[None, :]
    total = weights.sum()
    if total > 0:
        mx, my = (weights * xx).sum() / total, (weights * yy).sum() / total
        cxx = (weights * (xx - mx) ** 2).sum() / total
        cyy = (weights * (yy - my) ** 2).sum() / total
        cxy = (weights * (xx - mx) * (yy - my)).sum() / total
        rotation = float(np.degrees(0.5 * np.arctan2(2 * cxy, cxx - cyy)))
        lam = 0.5 * (cxx + cyy) + np.sqrt(0.25 * (cxx - cyy) ** 2 + cxy ** 2)
        extent = float(4 * np.sqrt(lam))
    else:
        rotation, extent = float("nan"), 0.0
    lung_slices = np.nonzero(np.isin(lab, (2, 7)).any(axis=(1, 2)))[0]
    diaphragm = float(vol.origin[2] + sz * lung_slices.min()) if lung_slices.size else float("nan")
    return {
        "tumour_volume_ml": float(counts[7] * ml),
        "lung_volume_ml": float((counts[2] + counts[7]) * ml),
        "lv_volume_ml": float(counts[3] * ml),
        "heart_volume_ml": float((counts[3] + counts[4] + counts[5]) * ml),
        "body_area_cm2": float(body.sum() / lab.shape[0] * sx * sy / 100.0),
        "body_extent_mm": extent,
        "rotation_deg": rotation,
        "diaphragm_z_mm": diaphragm,
    }


def _lungs(a: Anatomy, xa: np.ndarray, ya: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Both lungs: elliptic cross-sections tapering to the apex, above a domed base, minus the mediastinum."""
    height = a.lung_apex_z_mm - a.lung_base_z_mm
    h = np.clip((z - a.lung_base_z_mm) / height, 0.0, None)
    taper = np.sqrt(np.clip(1 - h ** 4, 0.0, None))  # (z, 1, 1): 1 at the base, 0 at the apex
    out = np.zeros(np.broadcast_shapes(xa.shape, z.shape), bool)
    for side in (-1.0, 1.0):
        u2 = ((xa - side * a.lung_centre_x_mm) / a.lung_semi_mm[0]) ** 2 + ((ya - a.lung_centre_y_mm) / a.lung_semi_mm[1]) ** 2
        dome = a.lung_base_z_mm + a.dome_height_mm * np.clip(1 - u2, 0.0, None)
        out |= (u2 <= taper ** 2) & (z >= dome) & (z <= a.lung_apex_z_mm)
    mediastinum = _ellipsoid(xa, ya, z, a.heart_centre_mm, tuple(1.08 * s for s in a.lv_outer_ed_semi_mm))
    mediastinum |= _ellipsoid(xa, ya, z, a.rv_centre_mm, tuple(1.08 * s for s in a.rv_ed_semi_mm))
    return out & ~mediastinum


def _ellipse(xa: np.ndarray, ya: np.ndarray, centre: tuple[float, float], semi: tuple[float, float]) -> np.ndarray:
    return ((xa - centre[0]) / semi[0]) ** 2 + ((ya - centre[1]) / semi[1]) ** 2 <= 1.0


def _ellipsoid(xa: np.ndarray, ya: np.ndarray, z: np.ndarray, centre: tuple[float, float, float],
               semi: tuple[float, float, float]) -> np.ndarray:
    if min(semi) <= 0:
        return np.zeros(np.broadcast_shapes(xa.shape, z.shape), bool)
    return ((xa - centre[0]) / semi[0]) ** 2 + ((ya - centre[1]) / semi[1]) ** 2 + ((z - centre[2]) / semi[2]) ** 2 <= 1.0


def _bias_field(shape: tuple[int, ...], amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field 1 + amplitude * f, f a random quadratic in [-1, 1] over the grid."""
    if amplitude <= 0:
        return np.ones((1, 1, 1), np.float32)
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) if n > 1 else np.zeros(1, np.float32) for n in shape]
    z, y, x = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    c = rng.uniform(-1.0, 1.0, size=9).astype(np.float32)
    f = c[0] * x + c[1] * y + c[2] * z + c[3] * x * y + c[4] * y * z + c[5] * x * z + c[6] * x ** 2 + c[7] * y ** 2 + c[8] * z ** 2
    f = f - f.mean()
    f /= max(float(np.abs(f).max()), 1e-6)
    return 1.0 + amplitude * f


def _grid(shape: tuple[int, ...], spacing: tuple[float, float, float] | None) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"phantom shape must be 3 positive sizes (z, y, x), got {shape}")
    if spacing is None:
        nz, ny, nx = shape
        spacing = (FOV_MM[0] / nx, FOV_MM[1] / ny, FOV_MM[2] / nz if nz > 1 else 5.0)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"phantom spacing must be 3 positive sizes (x, y, z) in mm, got {spacing}")
    return shape, tuple(float(s) for s in spacing)


def _check_range(name: str, value: float, bounds: tuple[float, float]) -> None:
    if not (bounds[0] <= value <= bounds[1]):
        raise InputError(f"phantom factor {name}={value} is outside its range [{bounds[0]}, {bounds[1]}]")
