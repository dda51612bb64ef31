"""Every exception galspec-hf raises on purpose, in one place.

``GalSpecUserError`` marks the errors that come from the user's input (a bad path or value at the command
line, a survey file that is not in the expected layout, a download that failed, a bad Hub export input).
The ``galspec`` command prints those as one line and exits with code 2; any other exception is a bug and
keeps its traceback. This module imports nothing heavy, so the command line can use it before torch loads.
"""


class GalSpecError(Exception):
    """Base class of the exceptions galspec-hf raises on purpose."""


class GalSpecUserError(GalSpecError):
    """An error in the user's input; ``galspec`` prints it as one line and exits with code 2."""


class CLIError(GalSpecUserError):
    """A user error at the command line (a bad path, a bad value, a missing option)."""


class GalSpecFormatError(GalSpecUserError, ValueError):
    """A survey file is unreadable or not in the expected layout.

    The message always names the file, the HDU or column, and what was expected.
    """


class GalSpecFormatWarning(UserWarning):
    """A survey file is readable but incomplete (e.g. a DESI coadd without FIBERMAP)."""


class DownloadError(GalSpecUserError, OSError):
    """A download failed or its size did not verify; the partial file is kept for a resumed attempt."""


class HubExportError(GalSpecUserError, ValueError):
    """A problem with the inputs of :func:`galspec_hf.hub.export_hub_folder` (a missing file, a bad field,
    a bad repo id)."""


class GalSpecTrainingError(GalSpecError, RuntimeError):
    """A training run that must stop (a non-finite loss, a data set that gives no batch).

    Not a user error: the arguments were valid, the run itself failed. ``galspec_hf.training.loop.main``
    prints it as one line and exits with code 1.
    """


__all__ = [
    "CLIError",
    "DownloadError",
    "GalSpecError",
    "GalSpecFormatError",
    "GalSpecFormatWarning",
    "GalSpecTrainingError",
    "GalSpecUserError",
    "HubExportError",
]
