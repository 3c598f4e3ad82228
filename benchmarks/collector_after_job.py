"""The full garbage collections that follow a job: the collector now against the earlier design.

    python benchmarks/collector_after_job.py [--objects 300000]

Each design runs in a fresh child process with torch, MONAI and napari imported (the heap of a
napari session with napari-medgen). A job holds the collector (``widgets.collector.hold``) while it
makes long-lived objects until CPython runs a full collection (which then walks only the objects
made since the freeze), and releases it. Then the session goes on: ``--objects`` long-lived objects
are made in small batches (what a viewer's use leaves: layers, events, caches), and every full
(generation 2) collection is timed with ``gc.callbacks``: each holds the GIL, so the viewer waits
for it. Last, the next job's ``hold`` is timed (now: it collects the objects made since the freeze). The earlier design unfroze everything when the last job ended (``gc.unfreeze``); CPython's
count of long-lived objects then held only the job's, so its rule (a full collection when they have
grown by a quarter) fired soon and walked the whole heap. For reference, the same without any
collector (nothing set aside, as napari alone).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import gc, json, sys, time
import torch, monai, napari  # noqa: F401  (the heap of a napari-medgen session)
from napari_medgen.widgets import collector
design, objects = sys.argv[1], int(sys.argv[2])
gc.collect()
durations, start = [], [0.0]
def timed(phase, info):
    if info["generation"] == 2:
        if phase == "start":
            start[0] = time.perf_counter()
        else:
            durations.append(1000 * (time.perf_counter() - start[0]))
gc.callbacks.append(timed)
keep = []
if design != "none":
    collector.hold()
while not durations:  # the job: long-lived objects until a full collection falls inside it
    keep.append([[i] for i in range(100)])
if design != "none":
    collector.release()
if design == "earlier":
    gc.unfreeze()
    collector._set_aside = False  # as the earlier collector left it: its next hold only froze
in_job = list(durations)
durations.clear()
session = []
for k in range(objects // 100):
    session.append([[i] for i in range(100)])
after = list(durations)
start_next = time.perf_counter()
if design != "none":
    collector.hold()  # the next job's start (the Qt thread): now it first collects what was made since the freeze
next_ms = 1000 * (time.perf_counter() - start_next)
print(json.dumps({"tracked": len(gc.get_objects()) + gc.get_freeze_count(), "in_job": in_job,
                  "after": after, "next_job_ms": next_ms}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objects", type=int, default=300_000, help="long-lived objects made after the job")
    args = ap.parse_args()
    out = {}
    for design in ("none", "earlier", "now"):
        run = subprocess.run([sys.executable, "-c", CHILD, design, str(args.objects)], capture_output=True,
                             text=True, check=True)
        out[design] = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"objects tracked: {out['now']['tracked']:,}; after the job, {args.objects:,} long-lived objects made")
    print(f"{'design':<44} {'full collections':>16} {'longest ms':>11} {'total ms':>9} {'next hold ms':>13}")
    for design, label in (("none", "no collector (nothing set aside)"),
                          ("earlier", "earlier (unfreeze when the last job ends)"), ("now", "now (stay set aside)")):
        d = out[design]["after"]
        print(f"{label:<44} {len(d):>16} {max(d, default=0):>11.1f} {sum(d):>9.1f} "
              f"{out[design]['next_job_ms']:>13.1f}")
    worst = max(out["earlier"]["after"], default=0.0), max(out["now"]["after"], default=0.0)
    print(f"longest full collection after the job, earlier / now: {worst[0] / max(worst[1], 1e-3):.1f}x")


if __name__ == "__main__":
    main()
