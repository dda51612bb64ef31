"""Subcommands of the ``galspec`` command line, one module each (see :mod:`galspec_hf.cli`).

A subcommand module imports only the standard library at the top: the heavy imports (astropy, datasets,
torch) happen inside its ``run``, so that ``galspec --help`` starts at once and the commands that do not need
the model (simulate, build-dataset, line-maps) never import torch.
"""

from __future__ import annotations

import argparse


def add_command(subparsers, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` with a one-line ``help`` and a verbatim ``description`` (examples keep
    their line breaks)."""
    return subparsers.add_parser(
        name, help=help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
