"""Run :func:`.train.train_model` in a child process: how the Train dock trains.

In a thread of the viewer's process, training shares the viewer's GIL, which PyTorch re-takes
between operators, so the Qt thread waits for it. :func:`train_in_child` keeps the contract of
``train_model`` (a generator of Progress returning a TrainOutcome) but runs the loop in a
``multiprocessing`` *spawn* child, at ``CHILD_NICE`` below the viewer's OS priority with one torch
thread. The child sends every Progress (previews and metrics included), then the TrainOutcome or
the error, through a one-way Pipe; the parent waits on the pipe (no GIL held while it waits) and
forwards its CancelToken to the child through a multiprocessing Event.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Generator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..device import configure_threads
from ..errors import InputError, MedgenError, TrainingError
from ..progress import CancelToken, Progress
from .train import TrainJob, TrainOutcome, train_model

POLL_S = 0.05  # the parent checks its CancelToken and the child's health this often while waiting
STOP_GRACE_S = 30.0  # on close, the child gets this long to save its checkpoint before it is terminated
CHILD_NICE = 10  # the child runs this much below the viewer's OS priority


class _EventToken(CancelToken):
    """A CancelToken that reads a multiprocessing Event set by the parent process."""

    def __init__(self, event: Any) -> None:
        self._event = event


@dataclass
class _Failure:
    """An exception raised in the child, in a form that always pickles (e.g. ReadError's does not)."""

    module: str
    name: str
    message: str
    trace: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: BaseException) -> _Failure:
        attrs = {k: v for k, v in vars(exc).items() if _pickles(v)}
        return cls(type(exc).__module__, type(exc).__qualname__, str(exc),
                   "".join(traceback.format_exception(exc)), attrs)

    def rebuild(self, family: str) -> MedgenError:
        """The project error again (same class, message and attributes); any other exception becomes
        a TrainingError naming it. The child's traceback is attached as a note."""
        kind = getattr(sys.modules.get(self.module), self.name, None)
        if isinstance(kind, type) and issubclass(kind, MedgenError):
            error = kind.__new__(kind)
            error.args = (self.message,)
            error.__dict__.update(self.attrs)
        else:
            error = TrainingError(f"Training '{family}' failed in its process with {self.name}: {self.message}")
        error.add_note(f"Raised in the training process:\n{self.trace}")
        return error


def _pickles(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001  (anything unpicklable is simply left out)
        return False
    return True


def train_in_child(job: TrainJob, cancel: CancelToken | None = None) -> Generator[Progress, None, TrainOutcome]:
    """``train_model(job, cancel)`` run in a spawned child process; yields its Progress, returns its outcome.

    Raises what the child raised (project errors keep their class; others become TrainingError),
    or TrainingError naming the work folder when the child dies. Closing the generator stops the
    child (cancel, then terminate after STOP_GRACE_S) and reaps it.
    """
    payload = _payload(job)
    yield Progress(0, job.config.steps, f"starting the training process for {job.family}")
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    stop = context.Event()
    process = context.Process(target=_child_main, args=(payload, sender, stop, _own_nice() + CHILD_NICE),
                              name=f"medgen-train-{job.family}", daemon=True)
    process.start()
    sender.close()  # the child holds the only sending end: its death reads as end-of-file
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                stop.set()
            message = _receive(receiver, process, job)
            if message is None:
                continue
            kind, value = message
            if kind == "progress":
                yield value
            elif kind == "outcome":
                return value
            else:
                raise value.rebuild(job.family)
    finally:
        _shut_down(process, receiver, stop)


def _payload(job: TrainJob) -> bytes:
    """The job and its family's registered TrainerSpec, pickled (families registered at run time,
    e.g. by a plugin, reach the child too); InputError when the trainer cannot be sent."""
    from ..training.registry import trainers

    spec = trainers().get(job.family)
    try:
        return pickle.dumps((job, spec))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise InputError(f"The trainer of family '{job.family}' cannot be sent to a training process ({exc}); "
                         f"register a module-level function as its factory.") from None


def _own_nice() -> int:
    """The OS nice value of this process's main thread (the viewer's; 0 where there is none)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, os.getpid())
    except (AttributeError, OSError):
        return 0


def _receive(receiver: Connection, process: Any, job: TrainJob) -> tuple[str, Any] | None:
    """The child's next message, or None after POLL_S without one; TrainingError when the child died."""
    try:
        if receiver.poll(POLL_S):
            return receiver.recv()
        if process.is_alive() or receiver.poll(0):
            return None
    except EOFError:
        pass
    process.join(5)
    code = process.exitcode
    how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
    raise TrainingError(f"The training process for '{job.family}' ended unexpectedly ({how}). The checkpoints "
                        f"in '{job.workdir}' are kept: Resume continues from the last one.")


def _shut_down(process: Any, receiver: Connection, stop: Any) -> None:
    """Ask the child to stop (it saves a checkpoint), reading the pipe so that it never blocks on a full
    one; terminate it after STOP_GRACE_S, then kill; always reap it (no zombie)."""
    stop.set()
    deadline = time.monotonic() + STOP_GRACE_S
    while process.is_alive() and time.monotonic() < deadline:
        try:
            while receiver.poll(POLL_S):
                receiver.recv()
        except (EOFError, OSError):
            process.join(POLL_S)
    for end in (process.terminate, process.kill):
        if process.is_alive():
            end()
            process.join(5)
    process.join()
    receiver.close()


def _child_main(payload: bytes, sender: Connection, stop: Any, nice: int) -> None:
    """The child: one torch thread, lower priority, then train and send every message (see module doc)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the viewer's terminal is the parent's to handle
    with contextlib.suppress(AttributeError, OSError):
        os.nice(max(0, nice - os.nice(0)))
    configure_threads(1)  # the viewer keeps the other cores
    import torch

    with contextlib.suppress(RuntimeError):  # already set by the parent's main module
        torch.set_num_interop_threads(1)
    try:
        job, spec = pickle.loads(payload)
        if spec is not None:
            from ..training.registry import register_trainer, trainers

            trainers()  # built-in families first, so that the parent's spec wins for its name
            register_trainer(spec.family, spec.make, spec.help)
        outcome = _send_progress(sender, train_model(job, _EventToken(stop)))
        sender.send(("outcome", outcome))
    except Exception as exc:  # noqa: BLE001  (every failure is reported to the parent)
        sender.send(("error", _Failure.of(exc)))
    finally:
        sender.close()


def _send_progress(sender: Connection, task: Generator[Progress, None, TrainOutcome]) -> TrainOutcome:
    """Drive ``task``, sending each Progress as ("progress", p); returns its result."""
    while True:
        try:
            progress = next(task)
        except StopIteration as stop:
            return stop.value
        sender.send(("progress", progress))
