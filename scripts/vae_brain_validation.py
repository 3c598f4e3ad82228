"""The vae_brain ledger measure on its validation slabs, for choosing settings (never on the test slabs).

    python scripts/vae_brain_validation.py RUN [RUN ...]

Each RUN is a model path without suffix, trained with ``--set validation=true`` (as the vae_brain line
of ``scripts/train_models.sh``); prints ``benchmarks/quality.py``'s vae_brain rows for each, measured
on ``data.brain.VALIDATION_SLABS_MM`` (``vae_brain_inversion_rows(..., validation=True)``). The chosen
run is then measured once on the test slabs: ``python benchmarks/quality.py --only vae_brain --model
vae_brain=RUN``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import quality  # noqa: E402  (benchmarks/quality.py)


def main(runs: list[str]) -> int:
    if not runs:
        print(__doc__)
        return 2
    torch.set_num_threads(1)
    rows = []
    for run in runs:
        t0 = time.perf_counter()
        rows += quality.vae_brain_inversion_rows(f"vae_brain {Path(run).name}", Path(run), validation=True)
        print(f"{run}: measured in {time.perf_counter() - t0:.0f} s", flush=True)
    quality.print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
