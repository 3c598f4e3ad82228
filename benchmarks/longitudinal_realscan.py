"""Real-scan follow-ups (no model): the issue's bars, printed side by side with two baselines.

Part 1, phantom (truth known): ``--subjects`` seeds from PHANTOM_SEED_START (never used to train or
tune anything), each rendered as MR in every style and as CT, 3D, 2 x 2 x 2.5 mm. Truth: the phantom's
tumour-regression protocol (radius x 0.822 per follow-up from 16 mm), follow-ups 3 months apart. The
volume law given to the method is that protocol's (halving time 3.5 months): this measures how the
law is realised in the images (shape, change contrast, what stays fixed), not whether a law predicts
a patient. Methods: ``followup`` (tasks/followup.py), ``copy`` (the baseline copied), ``concentric``
(the same volume-matched level-set mask, the vacated voxels set to the 3-10 mm shell's mean).

Part 2, real-scan checks on a phantom CT at clinical geometry (stand-in for a real CT): 512 x 512 x 100,
0.75 x 0.75 x 2.5 mm, tumour of 1.4 ml and of 14 ml, label values 1 (mask only) and 200 (with the body),
flipped/oblique direction cosines; 5 follow-ups every 3 months at the default regression law. Prints
the checks and the wall time of the 5 follow-ups (bar: <= 60 s on 2 CPU cores).

    OMP_NUM_THREADS=2 python benchmarks/longitudinal_realscan.py --subjects 20
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from napari_medgen.data import lesion_change as lc
from napari_medgen.data import phantom
from napari_medgen.data.progression import Progression
from napari_medgen.io.volume import Volume
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.followup import FollowUps, simulate_followups
from napari_medgen.tasks.followup_quality import scan_checks, truth_scores

PHANTOM_SEED_START = 3_000_000  # above the temporal trainer's held-out start (2,000,000); nothing uses these
STYLES = ("mr_vendor_a", "mr_vendor_b", "mr_vendor_c", "ct")
Q = (6 / 16) ** (1 / 5)  # the phantom protocol's radius ratio per follow-up
MONTHS = [3.0, 6.0, 9.0]
HALVING = float(np.log(2) / (-3 * np.log(Q)) * 3)
SPACING = (2.0, 2.0, 2.5)
MARGIN_MM = 10.0
BARS = {"dice": 0.9, "volume_error": 0.10, "contrast": 0.70, "outside_change": 0.005}


def concentric(baseline: Volume, labels: Volume, tracked: int, law: Progression, months: list[float]) -> FollowUps:
    """Baseline: the volume-matched level-set mask, vacated voxels set to the 3-10 mm shell's mean (flat fill)."""
    from scipy import ndimage

    sp = baseline.spacing[::-1]
    lesion = labels.data == tracked
    phi = lc.signed_distance(lesion, sp)
    dist = ndimage.distance_transform_edt(~lesion, sampling=sp)
    shell_mean = float(baseline.data[(dist >= 3) & (dist <= 10)].mean())
    n0 = int(lesion.sum())
    imgs, labs = [baseline.data.astype(np.float32)], [labels.data]
    for m in months:
        mask, _ = lc.level_set(phi, lesion, round(n0 * law.ratio(m)))
        img, lab = imgs[0].copy(), labels.data.copy()
        img[lesion & ~mask] = shell_mean
        lab[lesion & ~mask] = np.asarray(labels.data)[(dist > 0) & (dist < 3)].max(initial=0)
        imgs.append(img)
        labs.append(lab)
    ml = float(np.prod(sp)) / 1000
    return FollowUps(baseline.with_data(np.stack(imgs)), labels.with_data(np.stack(labs)),
                     [float((f == tracked).sum() * ml) for f in labs], [0.0, *months], [], [], tracked)


def copy(baseline: Volume, labels: Volume, tracked: int, law: Progression, months: list[float]) -> FollowUps:
    """Baseline: every follow-up is the baseline."""
    n = len(months) + 1
    ml = float((labels.data == tracked).sum() * np.prod(baseline.spacing)) / 1000
    return FollowUps(baseline.with_data(np.repeat(baseline.data[None].astype(np.float32), n, 0)),
                     labels.with_data(np.repeat(labels.data[None], n, 0)), [ml] * n, [0.0, *months], [], [], tracked)


def followup(baseline: Volume, labels: Volume, tracked: int, law: Progression, months: list[float]) -> FollowUps:
    return run_to_completion(simulate_followups(baseline, labels, tracked, months, law, margin_mm=MARGIN_MM))


METHODS = {"followup": followup, "concentric": concentric, "copy": copy}


def phantom_part(subjects: int) -> None:
    law = Progression("regression", HALVING)
    print(f"Part 1: phantom, {subjects} subjects (seeds {PHANTOM_SEED_START}..), law {law.describe()}, "
          f"follow-ups at {MONTHS} months; per t = 1..3: mean (worst subject)")
    print(f"{'style':<12} {'method':<11} {'Dice':>22} {'|vol err| %':>22} {'contrast %':>22} "
          f"{'outside % range':>20} {'texture':>8}")
    for style in STYLES:
        rows: dict[str, dict[str, list]] = {m: {} for m in METHODS}
        for i in range(subjects):
            img, lab = phantom.tumour_regression_series(PHANTOM_SEED_START + i, n=4, shape=(64, 128, 128),
                                                        spacing=SPACING, style=style, start_radius_mm=16.0,
                                                        end_radius_mm=16.0 * Q ** 3)
            base, labels = img.frame(0), lab.frame(0)
            for name, method in METHODS.items():
                r = method(base, labels, 7, law, MONTHS)
                s = truth_scores(r.image.data, r.labels.data, img.data, lab.data, 7, SPACING[::-1], MARGIN_MM)
                for k, v in s.items():
                    rows[name].setdefault(k, []).append(v)
        for name in METHODS:
            a = {k: np.stack(v) for k, v in rows[name].items()}  # (subjects, 3)
            dice, verr = a["dice"], np.abs(a["volume_error"]) * 100
            con, out = a["contrast"] * 100, a["outside_change"] * 100
            print(f"{style:<12} {name:<11} {_fmt(dice.mean(0), dice.min(0), 3):>22} "
                  f"{_fmt(verr.mean(0), verr.max(0), 1):>22} {_fmt(con.mean(0), con.min(0), 0):>22} "
                  f"{out.mean():>9.4f} ({out.max():.4f}) {np.nanmean(a['texture'][:, -1]):>8.2f}")
    print("bars: Dice >= 0.9, |vol err| <= 10 %, contrast >= 70 %, outside <= 0.5 % of range; texture (t = 3): std "
          "of the fine grain where the tumour left, over the truth's (1 = same grain, 0 = flat)")


def _fmt(mean: np.ndarray, worst: np.ndarray, digits: int) -> str:
    """Per-t means and, in brackets, per-t worst subjects: "0.98/0.97/0.96 (0.95/0.94/0.93)"."""
    return "/".join(f"{m:.{digits}f}" for m in mean) + " (" + "/".join(f"{w:.{digits}f}" for w in worst) + ")"


def _oblique_flipped() -> np.ndarray:
    a, b = np.deg2rad(15), np.deg2rad(-25)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx @ np.diag([-1.0, 1.0, 1.0])


def scan_part(seed: int) -> None:
    print("\nPart 2: real-scan checks on a phantom CT at clinical geometry, 5 follow-ups every 3 months, "
          f"default law ({Progression().describe()})")
    print(f"{'case':<44} {'geometry':>9} {'monotone':>8} {'changed within':>14} {'vacated moved':>13} "
          f"{'std ratio':>9} {'wall s':>7} {'cpu s':>6}")
    for radius, value, with_body, direction in ((7.0, 1, False, np.eye(3)), (15.0, 200, True, _oblique_flipped())):
        t0 = time.perf_counter()
        img, lab = phantom.make_phantom(seed, shape=(100, 512, 512), spacing=(0.75, 0.75, 2.5), style="ct",
                                        tumour_radius_mm=radius)
        render_s = time.perf_counter() - t0
        tumour = lab.data == 7
        data = np.where(tumour, value, (lab.data > 0) if with_body else 0).astype(np.uint8)
        base = Volume(img.data.astype(np.int16), img.spacing, img.origin, direction)  # as a CT file stores HU
        labels = Volume(data, img.spacing, img.origin, direction, True)
        t0, c0 = time.perf_counter(), time.process_time()
        r = run_to_completion(simulate_followups(base, labels, value, [3.0 * (k + 1) for k in range(5)]))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        c = scan_checks(r, base, labels)
        case = (f"{r.tracked_ml[0]:.1f} ml, label {value}{' + body 1' if with_body else ''}, "
                f"{'oblique/flipped' if with_body else 'identity'}")
        print(f"{case:<44} {c['geometry_error']:>9.1e} {c['monotone']:>8.0f} {c['changed_within_mm']:>11.1f} mm "
              f"{c['vacated_moved']:>13.2f} {c['std_ratio']:>9.2f} {wall:>7.1f} {cpu:>6.1f}")
        print(f"{'':<44} volumes (ml): {', '.join(f'{v:.2f}' for v in r.tracked_ml)}; phantom rendering {render_s:.0f} s")
    print("bars: geometry <= 1e-5, monotone, changed voxels (> 5 % of range) within 15 mm, vacated moved >= 0.5, "
          "std ratio within 1/1.5..1.5, wall <= 60 s (cpu s: this process's CPU time, all its threads; the wall time "
          "includes waiting for a busy machine: see os.getloadavg below)")
    print(f"load average (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())}, CPUs: {os.cpu_count()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--skip-phantom", action="store_true")
    ap.add_argument("--skip-scan", action="store_true")
    args = ap.parse_args()
    if not args.skip_phantom:
        phantom_part(args.subjects)
    if not args.skip_scan:
        scan_part(PHANTOM_SEED_START + 999)


if __name__ == "__main__":
    main()
