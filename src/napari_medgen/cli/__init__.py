"""``medgen``: the command-line face of every widget, on the same task code.

Each sub-command lives in a module of this package that defines ``register(subparsers)``;
list the module in ``_COMMAND_MODULES``. A command module imports only light modules at its top
(argparse and :mod:`.options`): its run function imports the task, so that building the parser
imports no torch, MONAI or napari (``medgen --help`` in well under a second; see
``benchmarks/cli_startup.py``). Before a command runs, its outputs are checked (see
:func:`.options.output`) and torch's CPU threads are chosen (:func:`napari_medgen.device.configure_threads`).
Errors of the project's own types, and OS errors (a full disk, a missing permission), are printed
as one plain line and exit with status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..atomic import write_failure
from ..device import configure_threads
from ..errors import Cancelled, MedgenError
from .options import Parser, check_outputs, integer

_COMMAND_MODULES = [
    "deform",
    "demo",
    "directions",
    "evaluate",
    "info",
    "longitudinal",
    "phantom",
    "sample",
    "synthesize",
    "train",
    "usefulness",
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="medgen", description="Generative models for medical images (napari-medgen).")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=integer(1, 1024), help="torch CPU threads (default: $OMP_NUM_THREADS if "
                        "set, else the physical cores that other programs leave free)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the exact command, for model cards
    try:
        check_outputs(args)
        configure_threads(args.threads)
        return int(args.func(args) or 0)
    except Cancelled:
        print("medgen: cancelled", file=sys.stderr)
        return 130
    except MedgenError as exc:
        print(f"medgen: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's, not the code's: a full disk, a missing permission, a vanished file
        where = f"'{exc.filename}': " if exc.filename else ""
        print(f"medgen: error: {where}{write_failure(exc, exc.filename or '.') or exc.strerror or exc}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
