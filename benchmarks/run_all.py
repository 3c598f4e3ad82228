"""Run every benchmark in this folder and print one combined table of their measured ratios.

Usage: ``python benchmarks/run_all.py [--timeout 900] [--only NAME ...] [--skip NAME ...]``

Each ``benchmarks/*.py`` (except this one) runs in its own process with its default arguments,
under Xvfb (``xvfb-run``) when there is no display, with OMP_NUM_THREADS=1 and a timeout. Every
benchmark prints its own table comparing the project with its baseline measured in the same run;
the combined table lists, per benchmark, its status, wall time and the lines of its table that
state a ratio (a line naming a ratio, or an "A / B" or "A/B" column), and then each full output.
A benchmark that fails or times out is a row with its status, not a crash of this script.
Exit status: 0 when every benchmark ran and exited 0, else 1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")  # a number on its own (not the 99 of "p99")
RATIO = re.compile(r"ratio|\w\s?/\s?\w|speed-?up|\bvs\.?\b|\bx\s*faster", re.IGNORECASE)


@dataclass
class Outcome:
    name: str
    status: str  # "ok", "exit N", "timeout", "error: ..."
    seconds: float
    output: str

    def ratio_lines(self, limit: int = 12) -> list[str]:
        """Lines naming a ratio; a header naming one (no numbers) brings its table's rows up to a blank line."""
        out: list[str] = []
        in_table = False
        for line in self.output.splitlines():
            if not line.strip() or "Warning" in line:
                in_table = False
                continue
            if RATIO.search(line):
                in_table = not NUMBER.search(line)
                out.append(line.rstrip())
            elif in_table:
                out.append(line.rstrip())
        return out[:limit]


def benchmarks() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))


def command(script: Path) -> list[str]:
    cmd = [sys.executable, str(script)]
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", *cmd]
    return cmd


def run_one(script: Path, timeout: float) -> Outcome:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(command(script), check=False, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=HERE.parent)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Outcome(script.stem, "timeout", time.perf_counter() - t0, out)
    except OSError as exc:
        return Outcome(script.stem, f"error: {exc}", time.perf_counter() - t0, "")
    status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
    output = proc.stdout if proc.returncode == 0 else proc.stdout + "\n[stderr tail]\n" + proc.stderr[-1500:]
    return Outcome(script.stem, status, time.perf_counter() - t0, output)


def print_table(outcomes: list[Outcome]) -> None:
    print(f"\n{'benchmark':20s} {'status':10s} {'seconds':>8s}  ratio lines of its table")
    print("-" * 100)
    for o in outcomes:
        lines = o.ratio_lines() or ["(no ratio line printed)"]
        print(f"{o.name:20s} {o.status:10s} {o.seconds:8.0f}  {lines[0]}")
        for line in lines[1:]:
            print(f"{'':41s}{line}")
    for o in outcomes:
        print(f"\n===== {o.name} ({o.status}, {o.seconds:.0f} s) =====\n{o.output.rstrip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=900, help="seconds per benchmark (default 900)")
    parser.add_argument("--only", nargs="*", default=[], help="run only these (file names without .py)")
    parser.add_argument("--skip", nargs="*", default=[], help="leave these out")
    args = parser.parse_args(argv)
    scripts = [s for s in benchmarks() if (not args.only or s.stem in args.only) and s.stem not in args.skip]
    outcomes = []
    for script in scripts:
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        outcomes.append(run_one(script, args.timeout))
    print_table(outcomes)
    return 0 if outcomes and all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
