"""``medgen``: the command-line face of every widget, on the same task code.

Each sub-command lives in a module of this package that defines ``register(subparsers)``;
list the module in ``_COMMAND_MODULES``. Errors of the project's own types are printed as one
plain line and exit with status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import Cancelled, MedgenError

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
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgen", description="Generative models for medical images (napari-medgen).")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
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
        return int(args.func(args) or 0)
    except Cancelled:
        print("medgen: cancelled", file=sys.stderr)
        return 130
    except MedgenError as exc:
        print(f"medgen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
