"""The ``galspec`` command line.

Each subcommand lives in its own module in :mod:`galspec_hf.commands` and exposes

``register(subparsers) -> argparse.ArgumentParser``
    add its parser to ``subparsers`` and ``set_defaults(func=run)``, where
    ``run(args) -> int`` does the work and returns the exit code.

Subcommand modules are discovered automatically (modules whose name starts with ``_`` are skipped),
so adding a command means adding a file. User errors (bad paths, bad values, a survey file that is
not the expected kind of FITS, a failed download) are the subclasses of
:class:`~galspec_hf.errors.GalSpecUserError`; they are printed as one line with exit code 2, never as a
traceback. Any other exception, ``ValueError`` included, is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import CLIError, GalSpecUserError

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="galspec",
        description="galspec-hf: IFU spectroscopy with one fiber (predict galaxy spectra from images).",
        epilog="Run it from the project's virtual environment (`source .venv/bin/activate`, or call "
        ".venv/bin/galspec). `galspec COMMAND --help` describes each command.",
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
    except GalSpecUserError as error:
        return _user_error(args.command, error)


def _user_error(command: str, error: Exception) -> int:
    """Print a user error as one line on stderr; the exit code 2."""
    message = " ".join(str(error).split())
    print(f"galspec {command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
