"""Torch CPU threads on a busy machine: the project's default (``device.configure_threads``) vs all cores.

Usage: ``python benchmarks/threads_under_load.py [--busy 1] [--repeats 3]``

A convolution stack (4 x Conv2d 32->32, batch 4 x 64 x 64, 20 forward passes) runs in a fresh
process per setting while ``--busy`` other processes spin on the CPU (each a busy loop, as other
programs on a shared workstation). Settings: torch's own default (every physical core, OpenMP
threads spinning while they wait), one thread, and the project's default (the physical cores
the load average leaves free, idle threads sleeping: ``OMP_WAIT_POLICY=PASSIVE``). Prints the
median time of each and its ratio to torch's default measured in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

WORK = """
import sys, time
{setup}
import torch
net = torch.nn.Sequential(*[torch.nn.Conv2d(32, 32, 3, padding=1) for _ in range(4)])
x = torch.randn(4, 32, 64, 64)
with torch.no_grad():
    net(x)
    t0 = time.perf_counter()
    for _ in range(20):
        net(x)
print(time.perf_counter() - t0, torch.get_num_threads())
"""

SETTINGS = {
    "torch default (all cores, spinning)": ("", {}),
    "1 thread": ("import torch; torch.set_num_threads(1)", {}),
    "project default (configure_threads)": ("from napari_medgen.device import configure_threads; configure_threads()",
                                            {}),
}


def spin() -> None:
    while True:
        pass


def measure(setup: str, repeats: int) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", WORK.format(setup=setup)], capture_output=True, text=True,
                             env=env, check=True, timeout=600).stdout.split()
        runs.append((float(out[0]), int(out[1])))
    return statistics.median(r[0] for r in runs), runs[0][1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=1, help="busy-looping processes running meanwhile")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    hogs = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for h in hogs:
        h.start()
    time.sleep(1.0)
    try:
        results = {name: measure(setup, args.repeats) for name, (setup, _) in SETTINGS.items()}
    finally:
        for h in hogs:
            h.terminate()
            h.join()
    base = results["torch default (all cores, spinning)"][0]
    print(f"{'setting':<40} {'threads':>7} {'median s':>9} {'ratio vs torch default':>23}")
    for name, (seconds, threads) in results.items():
        print(f"{name:<40} {threads:>7} {seconds:>9.2f} {seconds / base:>23.2f}")
    print(f"{args.busy} busy process(es); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
