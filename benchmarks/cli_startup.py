"""How fast does ``medgen`` answer? ``--help``, every sub-command's ``--help``, and ``medgen demo`` without a display.

Usage: ``python benchmarks/cli_startup.py [--repeats 5]``

Each command runs in a fresh process (``python -m napari_medgen ...``, as the ``medgen`` script
does) ``--repeats`` times; the table gives the median wall time against its bar (issue 20:
``medgen --help`` <= 1 s, a sub-command's ``--help`` <= 1.5 s, the display-less demo's message
<= 1.5 s), and as the baseline, in the same run, the bare interpreter and what building the
parser used to import (``import torch, monai``). The ratio column is each command's time over
that import's. Exit status 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = ["train", "demo", "info", "convert", "phantom", "deform", "directions", "evaluate", "experiment",
            "quantize", "anomaly", "sample", "synthesize", "longitudinal"]
HELP_BAR_S, SUB_HELP_BAR_S, DEMO_BAR_S = 1.0, 1.5, 1.5


def wall_time(argv: list[str], repeats: int, env: dict[str, str] | None = None) -> float:
    """Median wall time (s) of running ``argv`` in a fresh process."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, env=env, check=False, timeout=300)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    py, medgen = [sys.executable], [sys.executable, "-m", "napari_medgen"]
    no_display = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}

    old = wall_time([*py, "-c", "import torch, monai"], args.repeats)
    rows = [("python -c pass (interpreter)", wall_time([*py, "-c", "pass"], args.repeats), None),
            ("python -c 'import torch, monai' (before)", old, None),
            ("medgen --help", wall_time([*medgen, "--help"], args.repeats), HELP_BAR_S)]
    rows += [(f"medgen {c} --help", wall_time([*medgen, c, "--help"], args.repeats), SUB_HELP_BAR_S) for c in COMMANDS]
    rows.append(("medgen demo (no display: message)", wall_time([*medgen, "demo"], args.repeats, no_display),
                 DEMO_BAR_S))

    print(f"{'command':<44} {'median s':>9} {'bar s':>6} {'ratio vs import torch+monai':>28}  ok")
    missed = 0
    for name, seconds, bar in rows:
        ok = bar is None or seconds <= bar
        missed += not ok
        print(f"{name:<44} {seconds:>9.3f} {'' if bar is None else f'{bar:.1f}':>6} {seconds / old:>28.3f}  "
              f"{'' if bar is None else ('yes' if ok else 'NO')}")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.repeats} runs each")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
