"""The project's error types: every failure a user can cause ends in one of these.

Each carries a plain-words message that names the file (when there is one) and what is wrong,
so that the CLI prints it and the widgets show it as a notification, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class MedgenError(Exception):
    """Base class of all errors the project raises on purpose."""

    def headline(self) -> str:
        """The message with what is wrong first, for a notification or status line that may cut its end."""
        return str(self)


class ReadError(MedgenError):
    """A file or folder could not be read as a medical volume."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot read '{self.path}': {reason}")

    def headline(self) -> str:
        return f"{self.reason[:1].upper()}{self.reason[1:]} (cannot read '{self.path}')"


class WriteError(MedgenError):
    """A volume could not be written."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot write '{self.path}': {reason}")

    def headline(self) -> str:
        return f"{self.reason[:1].upper()}{self.reason[1:]} (cannot write '{self.path}')"


class ModelError(MedgenError):
    """A model file or card is missing, malformed or unsafe, or does not fit the input."""


class InputError(MedgenError):
    """Input data do not fit what a task needs (wrong classes, dtype, shape, spacing...)."""


class DeviceError(MedgenError):
    """The requested compute device is not available."""


class TrainingError(MedgenError):
    """Training stopped because it cannot go on (e.g. a NaN/Inf loss)."""


class Cancelled(MedgenError):
    """A task was cancelled by the user between two steps."""
