"""A training work folder serves one writer at a time (``lock``) and one run (``run.json``).

``lock`` holds the training process's pid, host and start time; a second training in the folder
is refused while that process runs, and a lock left by a process that no longer runs is taken
over with a note. ``run.json`` records what the checkpoints were trained for (the *run key*:
family, data, network and training options): a run with other values refuses to resume and
names each difference, instead of silently continuing another model on other data.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes, process_alive
from ..errors import TrainingError

LOCK = "lock"
RUN = "run.json"
_UNREADABLE_LOCK_GRACE_S = 10.0  # a lock file still empty this long after it was made is stale


@contextlib.contextmanager
def locked(workdir: str | Path) -> Iterator[list[str]]:
    """Hold ``workdir``'s lock for the block; yields notes (a stale lock taken over).

    Raises TrainingError naming the holder when another running process holds it."""
    path = Path(workdir) / LOCK
    notes: list[str] = []
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None:  # gone meanwhile, or stale: try once more
                notes.append(f"Took over the lock of work folder '{workdir}' from a training that no longer runs.")
                path.unlink(missing_ok=True)
                continue
            raise TrainingError(f"Work folder '{workdir}' is in use by another training ({holder}); wait for it to "
                                f"finish or use another work folder (--workdir). If it no longer runs, delete '{path}'.") from None
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": datetime.datetime.now().isoformat(timespec="seconds")}, f)
        break
    else:
        raise TrainingError(f"Could not take the lock of work folder '{workdir}': another training took it first.")
    try:
        yield notes
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


def _holder(path: Path) -> str | None:
    """Who holds the lock at ``path`` ("process 123 on host, since ..."), or None when nobody does."""
    try:
        info = json.loads(path.read_text())
        pid, host = int(info["pid"]), str(info["host"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):  # being written right now, or garbage
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime < _UNREADABLE_LOCK_GRACE_S:
                return "a process that is starting"
        return None
    if host == socket.gethostname() and not process_alive(pid):
        return None
    return f"process {pid} on {host}, since {info.get('started', '?')}"


def check_run(workdir: str | Path, key: dict[str, Any]) -> None:
    """Refuse (TrainingError) to resume checkpoints in ``workdir`` that were trained for another run key,
    naming every difference; also when the folder has no record of its run (an older version's)."""
    recorded = read_run(workdir)
    advice = ("Resume with the same options, use another work folder (--workdir), or start over there without "
              "resuming (--no-resume, or the dock's Start; this deletes its checkpoints).")
    if recorded is None:
        raise TrainingError(f"Work folder '{workdir}' has checkpoints but no record of what they were trained "
                            f"on ({RUN} is missing), so they cannot be resumed safely. {advice}")
    diffs = [f"{name} {_show(recorded.get(name))} there, {_show(key.get(name))} now"
             for name in sorted(set(recorded) | set(key)) if recorded.get(name) != key.get(name)]
    if diffs:
        raise TrainingError(f"Work folder '{workdir}' holds checkpoints of another run: {'; '.join(diffs)}. {advice}")


def read_run(workdir: str | Path) -> dict[str, Any] | None:
    """The run key recorded in ``workdir`` (None when there is none or it is unreadable)."""
    try:
        recorded = json.loads((Path(workdir) / RUN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def write_run(workdir: str | Path, key: dict[str, Any]) -> None:
    """Record ``key`` (JSON values only) as the run the folder's checkpoints belong to."""
    atomic_write_bytes(Path(workdir) / RUN, (json.dumps(key, indent=1, sort_keys=True) + "\n").encode())


def _show(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value)
