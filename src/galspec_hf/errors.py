"""Exceptions shared across galspec-hf."""


class CLIError(Exception):
    """A user error at the command line: ``galspec`` prints it as one line and exits with code 2."""
