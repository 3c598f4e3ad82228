"""Crash safety: scripts/crash_test.py kills training with SIGKILL (half the kills aimed at a checkpoint
write) and checks every resume; here with fewer kills than the script's default 12."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "crash_test.py"


def test_sigkill_at_random_moments_and_during_writes_always_resumes_cleanly():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--kills", "6", "--steps", "300", "--seed", "5"],
                          check=False, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["kills"] == 6 and summary["kills_during_checkpoint_write"] >= 1
    assert summary["max_steps_lost"] <= summary["checkpoint_every"]
    assert summary["final_weights_match_uninterrupted"] is True
