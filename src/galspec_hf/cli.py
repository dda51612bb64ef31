"""The ``galspec`` command line.

Each subcommand lives in its own module in :mod:`galspec_hf.commands` and exposes

``register(subparsers) -> argparse.ArgumentParser``
    add its parser to ``subparsers`` and ``set_defaults(func=run)``, where
    ``run(args) -> int`` does the work and returns the exit code.

Subcommand modules are discovered automatically, so adding a command means adding a file.
User errors (bad paths, bad values) are raised as :class:`CLIError` and printed as one line
with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import CLIError

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="galspec", description="galspec-hf: IFU spectroscopy with one fiber (predict galaxy spectra from images)."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as error:
        print(f"galspec {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as error:
        print(f"galspec {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
