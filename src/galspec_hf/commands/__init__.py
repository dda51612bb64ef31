"""Subcommands of the ``galspec`` command line, one module each (see :mod:`galspec_hf.cli`)."""
