"""Kill a training job with SIGKILL at random moments and check that it always resumes cleanly.

Usage: ``python scripts/crash_test.py [--kills 12] [--steps 600] [--every 20] [--seed 0]``

A forked child trains the tiny MLP of the loop's tests (tests/training/mlp_trainer.py, slowed
to ~10 ms a step while it is being killed) with ``training.loop.train`` in one work folder, reporting every finished step through a
pipe. Its checkpoint writes are slowed (the file is written in 16 chunks, 2 ms apart) so that
kills land inside a write. The parent kills it with SIGKILL, alternating random moments with
moments aimed at a write (as soon as a temporary ``.ckpt-*.part`` file appears), and after
every kill checks:

- every ``ckpt-*.pt`` in the folder loads completely (a partial file never has a final name)
  and ``latest.json`` names one of them (it may lag one checkpoint behind: it is written after);
- the next run resumes from the newest checkpoint, i.e. loses at most one checkpoint interval
  of the steps the killed run had reported;
- finally, the run finishes with exactly the weights and the loss history (steps 1..N once) of
  an uninterrupted run.

Prints one JSON summary line; exits 1 (with the reason) when any check fails.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch._dynamo  # torch.optim imports it lazily: seconds in every forked child otherwise)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.training.mlp_trainer

from napari_medgen.training import checkpoint as ckpt
from napari_medgen.training.loop import train
from tests.training.mlp_trainer import MLPTrainer

STEP_DELAY_S = 0.01


def slow_save(obj: object, f: str | Path) -> None:
    """torch.save written in 16 chunks, 2 ms apart: a test hook that widens the window for a kill."""
    buf = io.BytesIO()
    _real_save(obj, buf)
    data = buf.getvalue()
    chunk = max(1, len(data) // 16)
    with open(f, "wb") as out:
        for i in range(0, len(data), chunk):
            out.write(data[i:i + chunk])
            out.flush()
            time.sleep(0.002)


_real_save = torch.save


def child(workdir: str, steps: int, every: int, delay_s: float, conn) -> None:
    """Train (resuming) and send ("start", step), ("step", n) ..., ("done", weights). delay_s: sleep per step."""
    torch.set_num_threads(1)
    if delay_s:  # the runs that get killed
        torch.save = slow_save
    ckpt.seed_everything(0)
    trainer = MLPTrainer(seed=0, step_delay_s=delay_s)
    task = train(trainer, steps, workdir, checkpoint_every=every)
    conn.send(("start", next(task).step))
    for p in task:
        conn.send(("step", p.step))
    conn.send(("done", [float(v) for w in trainer.weights() for v in w.flatten()]))


def check_folder(workdir: Path) -> int:
    """Every ckpt-*.pt loads, latest.json names one; returns the newest checkpoint's step (0 if none)."""
    found = ckpt.list_checkpoints(workdir)
    for step, path in found:
        ckpt.load_checkpoint(path)  # raises ValueError on a partial or damaged file
    pointer = workdir / ckpt.LATEST
    if pointer.exists():  # it is written after its checkpoint: a kill in between leaves it one behind
        named = json.loads(pointer.read_text())["file"]
        if named not in {p.name for _, p in found}:
            raise AssertionError(f"latest.json names '{named}', which is not a complete checkpoint")
    elif len(found) > 1:
        raise AssertionError("latest.json is missing although several checkpoints were written")
    return found[0][0] if found else 0


def run_child(ctx, workdir: Path, steps: int, every: int, delay_s: float = 0.0):
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child, args=(str(workdir), steps, every, delay_s, child_end), daemon=True)
    proc.start()
    child_end.close()
    return proc, parent_end


def receive(conn, timeout: float):
    """The child's next message, or None (none within ``timeout`` s, or the child is gone)."""
    try:
        return conn.recv() if conn.poll(timeout) else None
    except EOFError:
        return None


def crash_test(kills: int, steps: int, every: int, seed: int) -> dict:
    """Run the kills in a temporary folder (removed afterwards) and return the summary."""
    with tempfile.TemporaryDirectory(prefix="medgen-crash-") as root:
        return _crash_test(Path(root), kills, steps, every, seed)


def _crash_test(root: Path, kills: int, steps: int, every: int, seed: int) -> dict:
    ctx = mp.get_context("fork")
    rnd = random.Random(seed)
    workdir = root / "run"
    workdir.mkdir()
    reported, write_kills, lost = 0, 0, []
    for k in range(kills):
        newest = check_folder(workdir)
        proc, conn = run_child(ctx, workdir, steps, every, STEP_DELAY_S)
        kind, start = receive(conn, 120)
        if kind != "start" or start != newest:
            raise AssertionError(f"kill {k}: resumed at step {start}, newest complete checkpoint is {newest}")
        if k and reported - start > every:
            raise AssertionError(f"kill {k}: lost {reported - start} steps (> one interval of {every})")
        lost.append(max(0, reported - start))
        aim_at_write = k % 2 == 1
        deadline = time.monotonic() + (30 if aim_at_write else rnd.uniform(0.05, 0.5))
        while time.monotonic() < deadline:
            if aim_at_write and any(workdir.glob(".ckpt-*.part*")):
                break
            msg = receive(conn, 0.001)
            if msg is not None and msg[0] == "step":
                reported = msg[1]
            if msg is not None and msg[0] == "done":
                raise AssertionError(f"kill {k}: the run finished before it was killed; use more --steps")
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        while (msg := receive(conn, 0)) is not None:  # steps reported before the kill
            reported = msg[1] if msg[0] == "step" else reported
        write_kills += any(workdir.glob(".ckpt-*.part*"))
    check_folder(workdir)
    proc, conn = run_child(ctx, workdir, steps, every)
    msgs = []
    while (msg := receive(conn, 300)) is not None and msg[0] != "done":
        msgs.append(msg)
    resumed_weights = msg[1]
    proc.join()
    history = [json.loads(line)["step"] for line in (workdir / "history.jsonl").read_text().splitlines()]
    if history != list(range(1, steps + 1)):
        raise AssertionError("the loss history does not hold each step exactly once")
    ref_dir = root / "reference"
    ref_dir.mkdir()
    proc, conn = run_child(ctx, ref_dir, steps, every)
    while (msg := receive(conn, 300)) is not None and msg[0] != "done":
        pass
    proc.join()
    if max(abs(a - b) for a, b in zip(resumed_weights, msg[1], strict=True)) > 1e-6:
        raise AssertionError("after the kills the final weights differ from an uninterrupted run")
    return {"kills": kills, "kills_during_checkpoint_write": write_kills, "max_steps_lost": max(lost),
            "checkpoint_every": every, "steps": steps, "final_weights_match_uninterrupted": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--steps", type=int, default=600, help="must outlast the kills (10 ms a step while killed)")
    parser.add_argument("--every", type=int, default=20, help="checkpoint interval (steps)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        summary = crash_test(args.kills, args.steps, args.every, args.seed)
    except (AssertionError, ValueError) as exc:
        print(f"crash test FAILED: {exc}")
        return 1
    print(json.dumps({**summary, "wall_s": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
