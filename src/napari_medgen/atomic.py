"""Write files and result folders so that a crash never leaves a half result under the final name.

A file goes to a temporary file in the same folder (``.NAME.part-PID-XXXX``), is flushed and
fsync'ed, then renamed over the target (atomic on POSIX and Windows), and the folder is fsync'ed
where the OS allows it. A result folder is written whole into a temporary folder next to it and
then swapped in (:func:`replaced_folder`), so an older run's files never mix with the new ones.
Temporary files and folders of a killed process (its pid no longer runs) are removed by the next
write into the same folder. A write that fails for a full or read-only disk raises a WriteError
saying so in plain words and naming the path.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import WriteError

MARKER = ".medgen-result"  # in every folder replaced_folder wrote: --overwrite replaces only such folders
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>part|old)-(?P<pid>\d+)-")
_FULL_BELOW_BYTES = 1 << 20  # a write that failed with less free space than this ran out of disk


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is fsync'ed and renamed onto it.

    suffix: extension for the temporary file (libraries such as nibabel or SimpleITK pick the
    format from it); defaults to the target's full suffix, e.g. ``.nii.gz``.
    """
    target = Path(target)
    _make_folder(target)
    suffix = suffix if suffix is not None else "".join(target.suffixes)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(target, "part"), suffix=suffix, dir=target.parent)
    except OSError as exc:
        raise _write_error(target, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; a saved file gets the usual mode
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except (OSError, RuntimeError) as exc:  # RuntimeError: torch's zip writer on a full disk ("unexpected pos")
        reason = write_failure(exc, target.parent)
        if reason is None:
            raise
        raise WriteError(target, reason) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_figure(target: str | Path, fig: Any) -> None:
    """Write a matplotlib figure to ``target`` as PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(target, buf.getvalue())


def atomic_write_with(target: str | Path, write: Callable[[Path], None], suffix: str | None = None) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target, suffix) as tmp:
        write(tmp)


def check_output_file(target: str | Path, overwrite: bool, option: str = "--out") -> None:
    """Refuse (WriteError) an output file that is a folder, or that exists when ``overwrite`` is not set."""
    target = Path(target)
    if target.is_dir():
        raise WriteError(target, f"it is a folder; {option} needs a file name")
    if target.exists() and not overwrite:
        raise WriteError(target, f"it exists; add --overwrite to replace it (or give another {option})")


def check_output_folder(target: str | Path, overwrite: bool, option: str = "--out") -> None:
    """Refuse (WriteError) an output folder that is a file, or that holds files: unless ``overwrite`` is set
    and it is a result folder medgen wrote (it holds :data:`MARKER`), which is then replaced as a whole."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise WriteError(target, f"it is a file; {option} needs a folder")
    if not target.is_dir() or not any(target.iterdir()):
        return
    if not (target / MARKER).is_file():
        raise WriteError(target, f"it holds files that are not a result medgen wrote (it has no {MARKER} file), "
                                 f"and --overwrite never deletes those; give a new or empty folder for {option}")
    if not overwrite:
        raise WriteError(target, f"it holds an earlier result; add --overwrite to replace it as a whole "
                                 f"(or give another {option})")


@contextlib.contextmanager
def staging_folder(target: str | Path) -> Iterator[Path]:
    """Yield a new temporary folder next to ``target`` (``.NAME.part-PID-XXXX``), removed after the block
    whatever happens; OS errors in the block (a full or read-only disk) become WriteErrors naming ``target``.
    Move results out of it onto their final names to publish them."""
    target = Path(target)
    _make_folder(target)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target, "part"), dir=target.parent))
    except OSError as exc:
        raise _write_error(target, exc) from None
    try:
        yield tmp
    except OSError as exc:
        raise _write_error(target, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def replaced_folder(target: str | Path, *, overwrite: bool, note: str = "") -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; write the whole result into it. When the block
    succeeds, that folder becomes ``target`` (an earlier result there is removed, never mixed with the
    new files) with a :data:`MARKER` file holding ``note`` (e.g. the command); when it fails, it is
    removed and ``target`` is untouched. See :func:`check_output_folder` for what may be replaced."""
    target = Path(target)
    check_output_folder(target, overwrite)
    with staging_folder(target) as tmp:
        yield tmp
        stamp = {"note": note, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        atomic_write_bytes(tmp / MARKER, (json.dumps(stamp) + "\n").encode())
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target, "old"), dir=target.parent))
            os.replace(target, old / "result")
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def replaced_files(targets: list[Path], *, overwrite: bool, option: str = "--out") -> Iterator[Path]:
    """Yield a temporary folder next to ``targets`` (files of one result, in one folder); write each file
    there under its target's name. When the block succeeds, every existing target is removed and the new
    files moved in, in the order of ``targets`` (put the file that completes the set last, e.g. a model's
    card): an older result's files never mix with the new ones. Refused (WriteError) before anything is
    written when a target exists and ``overwrite`` is not set."""
    targets = [Path(t) for t in targets]
    for target in targets:
        check_output_file(target, overwrite, option)
    with staging_folder(targets[0]) as tmp:
        yield tmp
        for target in targets:
            check_output_file(target, overwrite, option)  # something may have appeared meanwhile
        for target in targets:
            target.unlink(missing_ok=True)
        for target in targets:
            if (tmp / target.name).exists():
                os.replace(tmp / target.name, target)
        _fsync_dir(targets[0].parent)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files and folders that killed processes left in ``folder`` (names
    ``.NAME.part-PID-*`` / ``.NAME.old-PID-*`` whose PID no longer runs); an earlier result moved aside
    just before its replacement arrived is moved back. Returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for path in Path(folder).iterdir():
            m = _TEMPORARY.match(path.name)
            if m is None or process_alive(int(m["pid"])):
                continue
            if m["kind"] == "old" and (path / "result").exists() and not (path.parent / m["name"]).exists():
                os.replace(path / "result", path.parent / m["name"])
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    except OSError:  # Windows: no such process
        return False
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def write_failure(exc: BaseException, folder: str | Path) -> str | None:
    """Plain words for a write that failed because of the disk ("the disk is full ...", "... read-only"),
    naming ``folder``; None when the failure has another cause."""
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"the disk is full (no space left in '{folder}'); free some space or write elsewhere"
    if code == errno.EROFS:
        return f"the disk is read-only ('{folder}' cannot be written); write elsewhere"
    if code in (errno.EACCES, errno.EPERM):
        return f"no permission to write in '{folder}'; write elsewhere"
    if code in (errno.ENOTDIR, errno.EEXIST) and isinstance(exc, OSError):
        return f"a part of '{folder}' is a file, not a folder"
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    if free < _FULL_BELOW_BYTES:
        return f"the disk is full ({free // 1024} KiB left in '{folder}'); free some space or write elsewhere"
    return None


def _write_error(target: Path, exc: OSError) -> WriteError:
    return WriteError(target, write_failure(exc, target.parent) or exc.strerror or str(exc))


def _temporary_prefix(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-{os.getpid()}-"


def _make_folder(target: Path) -> None:
    """Create ``target``'s parent folder and remove the temporaries killed processes left there."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(target, exc) from None
    remove_stale_temporaries(target.parent)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide and not thread-safe


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
