"""Wall time of the default phantom usefulness experiment (``medgen usefulness``) against its 15 min budget.

    python benchmarks/usefulness.py [--threads 2]              # the full default experiment, timed
    python benchmarks/usefulness.py --extrapolate [--threads 2] # 1 seed at 2 short step counts, fitted

Prints wall and CPU seconds and their ratio to the budget (900 s on 2 cores). On a shared machine the
wall time is inflated by other programs: the CPU time divided by the threads (``cpu / threads``) is
what 2 free cores would need at best, and the load average says how shared the machine was.
``--extrapolate`` runs all default arms for one seed at ``--short`` and 2 x ``--short`` steps and
fits time = setup + per-step x steps (per seed), then predicts seeds x that at the default steps.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch

BUDGET_S = 900.0


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(**overrides: object) -> tuple[float, float]:
    """(wall s, CPU s) of one experiment with the default settings plus ``overrides``."""
    from napari_medgen.progress import run_to_completion
    from napari_medgen.tasks.domain_shift import ShiftSettings, experiment

    w0, c0 = time.perf_counter(), _cpu_s()
    run_to_completion(experiment(ShiftSettings(**overrides)))
    return time.perf_counter() - w0, _cpu_s() - c0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--extrapolate", action="store_true")
    p.add_argument("--short", type=int, default=30, help="steps of the first extrapolation run")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from napari_medgen.tasks.domain_shift import ShiftSettings

    default = ShiftSettings()
    load0 = os.getloadavg()[0]
    if args.extrapolate:
        (w1, c1), (w2, c2) = (timed(seeds=1, steps=args.short), timed(seeds=1, steps=2 * args.short))
        per_step_w, per_step_c = (w2 - w1) / args.short, (c2 - c1) / args.short
        wall = default.seeds * (w1 + per_step_w * (default.steps - args.short))
        cpu = default.seeds * (c1 + per_step_c * (default.steps - args.short))
        how = (f"extrapolated from 1 seed at {args.short} and {2 * args.short} steps "
               f"({w1:.0f} s, {w2:.0f} s wall)")
    else:
        wall, cpu = timed()
        how = "measured"
    print(f"default experiment: {default.seeds} seeds x {len(default.arms)} arms x {default.steps} steps, "
          f"{len(default.tests)} test domains; torch threads {args.threads}; {os.cpu_count()} CPUs; "
          f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'':18s} {'seconds':>8s} {'/ budget 900 s':>15s}")
    for name, value in (("wall", wall), ("cpu / threads", cpu / args.threads)):
        print(f"{name:18s} {value:8.0f} {value / BUDGET_S:15.2f}")
    print(f"({how})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
