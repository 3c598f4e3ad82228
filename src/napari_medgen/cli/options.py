"""Value types, choice lists and output options for ``medgen``'s parser, with no heavy import.

Building the parser must stay fast (``medgen --help`` imports no torch, MONAI or napari): a
sub-command's module defines its arguments with these helpers and imports its task only inside
its run function. A bad value ends in one line naming the option, never a traceback.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

SEED_MAX = 2**32 - 1  # numpy's legacy seeding, used by some trainers, takes 32-bit seeds


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block): ``medgen train: error: ...``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """Argument type: an integer in [low, high] (either bound may be None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None
        return _in_range(value, low, high, text)

    return parse


def number(low: float | None = None, high: float | None = None, *, above: float | None = None) -> Callable[[str], float]:
    """Argument type: a finite float in [low, high]; ``above``: strictly greater than this."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text[:40]!r}")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"must be greater than {above:g}, got {text[:40]!r}")
        return _in_range(value, low, high, text)

    return parse


def _in_range(value: Any, low: float | None, high: float | None, text: str) -> Any:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {_show(low)} and {_show(high)}" if low is not None and high is not None else (
            f"at least {_show(low)}" if low is not None else f"at most {_show(high)}")
        raise argparse.ArgumentTypeError(f"must be {bounds}, got {text[:40]!r}")
    return value


def _show(bound: float | None) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


seed = integer(0, SEED_MAX)


def names(module: str, constant: str) -> tuple[str, ...]:
    """The names ``module.constant`` holds (a tuple or list of strings), read from the module's source
    without importing it (task modules import torch); imported when the value is not a literal."""
    spec = importlib.util.find_spec(module)
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))  # type: ignore[union-attr, arg-type]
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == constant for t in targets) and node.value is not None:
                return tuple(ast.literal_eval(node.value))
    except (AttributeError, TypeError, OSError, SyntaxError, ValueError):
        pass
    return tuple(getattr(importlib.import_module(module), constant))


OutputKind = Literal["file", "folder"]


def output(p: argparse.ArgumentParser, kind: OutputKind, help: str, flag: str = "--out", *,
           required: bool = True, **kw: Any) -> None:
    """Add an output option (a Path; ``flag`` may be a positional name) and ``--overwrite``: :func:`check_outputs`
    refuses, before any work, an existing output unless ``--overwrite`` is given (a folder: see
    ``atomic.check_output_folder``)."""
    if flag.startswith("-"):
        kw["required"] = required
    p.add_argument(flag, type=Path, help=help, **kw)
    outputs = p.get_default("outputs") or []
    if not outputs:
        p.add_argument("--overwrite", action="store_true", help="replace existing output (as a whole)")
    dest = kw.get("dest") or flag.lstrip("-").replace("-", "_")
    p.set_defaults(outputs=[*outputs, (dest, flag, kind)])


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse (WriteError) the outputs declared with :func:`output` that must not be written."""
    from ..atomic import check_output_file, check_output_folder

    for dest, flag, kind in getattr(args, "outputs", None) or []:
        path = getattr(args, dest, None)
        if path is not None:
            check = check_output_folder if kind == "folder" else check_output_file
            check(path, args.overwrite, flag)
