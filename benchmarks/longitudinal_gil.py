"""Which calls of the Longitudinal dock's computation hold Python's GIL (and so stall the viewer's Qt thread)?

Each call of the real-scan path (``tasks.followup.simulate_followups`` and ``data.lesion_change``) runs in
a worker thread on the heartbeat benchmark's case (phantom CT 512 x 512 x 100 at 0.75 x 0.75 x 2.5 mm,
15 mm tumour) while the main thread sleeps 5 ms in a loop: its longest gap is how long the call held
the GIL at a time (about 5-10 ms = never held for long). ``--plain-mcp``: the geodesic search as
skimage runs it (``MCP_Geometric.find_costs``, which holds the GIL for the whole search).

    OMP_NUM_THREADS=1 python benchmarks/longitudinal_gil.py [--plain-mcp] [--repeat 3]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage


def longest_gap(call: Callable[[], object]) -> tuple[float, float, float]:
    """(the main thread's longest gap, the call's CPU time, its wall time), ms, while a worker thread
    runs ``call`` (also used by tests/data/test_lesion_growth.py)."""
    done: list[float] = []

    def work() -> None:
        start = time.thread_time()
        call()
        done.append(time.thread_time() - start)

    worker = threading.Thread(target=work)
    ticks = [time.perf_counter()]
    worker.start()
    while not done:
        time.sleep(0.005)
        ticks.append(time.perf_counter())
    worker.join()
    return 1000 * float(np.diff(ticks).max()), 1000 * done[0], 1000 * (ticks[-1] - ticks[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plain-mcp", action="store_true", help="skimage's MCP_Geometric as it is (no Python goal_reached)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the search (its gap varies with the load)")
    args = ap.parse_args()
    from napari_medgen.data import lesion_change as lc
    from napari_medgen.data.body import body_mask
    from napari_medgen.data.phantom import make_phantom
    from napari_medgen.tasks import followup

    if args.plain_mcp:
        from skimage.graph import MCP_Geometric

        lc._yielding_mcp = lambda cost, sp: MCP_Geometric(cost, sampling=sp)
    image, labels = make_phantom(3_000_900, shape=(100, 512, 512), spacing=(0.75, 0.75, 2.5), style="ct",
                                 tumour_radius_mm=15.0)
    sp = tuple(float(s) for s in image.spacing[::-1])
    lab, img = np.asarray(labels.data), np.asarray(image.data, np.float32)
    value = followup.propose_tracked(labels)
    lesion = lab == value
    box = followup._crop(lesion, sp, followup.MARGIN_MM, 3.0)
    les_c, lab_c = lesion[box], lab[box]
    phi = lc.signed_distance(les_c, sp)
    cost = lc.growth_cost(body_mask(img)[box] | les_c, lab_c, value)
    calls: dict[str, Callable[[], object]] = {
        "label_values (whole map)": lambda: followup.label_values(labels),
        "body_mask (whole scan)": lambda: body_mask(img),
        "distance transform (crop)": lambda: ndimage.distance_transform_edt(~les_c, sampling=sp),
        "nearest-label indices (crop)": lambda: ndimage.distance_transform_edt(
            les_c, sampling=sp, return_distances=False, return_indices=True),
        "signed_distance (crop)": lambda: lc.signed_distance(les_c, sp),
        "normals (crop)": lambda: lc.normals(phi, sp),
        "level_set, growth (crop)": lambda: lc.level_set(phi, les_c, 2 * int(les_c.sum())),
        "Gaussian 32 mm (crop, texture_fill)": lambda: ndimage.gaussian_filter(phi, [32 / s for s in sp]),
        "growth_distance, MCP (crop)": lambda: lc.growth_distance(phi, les_c, cost, sp),
    }
    print(f"crop {tuple(int(s.stop - s.start) for s in box)}, load {open('/proc/loadavg').read().split()[0]}")
    print(f"{'call':<38} {'CPU ms':>7} {'longest main-thread gap ms':>27}")
    for name, call in (*calls.items(), *[item for item in calls.items() if "MCP" in item[0]] * (args.repeat - 1)):
        gap, cpu, _ = longest_gap(call)
        print(f"{name:<38} {cpu:>7.0f} {gap:>27.0f}", flush=True)


if __name__ == "__main__":
    main()
