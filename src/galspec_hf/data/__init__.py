"""Survey data: the readers of the real file formats (re-exported from :mod:`galspec_hf.io`, their home) and the
DESI `datasets` builder.

Readers (astropy) return arrays in the package units (docs/ARCHITECTURE.md) and raise
:class:`GalSpecFormatError` naming the file, the HDU or column, and what was expected.
:class:`DesiGalaxies` is a `datasets.GeneratorBasedBuilder` that pairs DESI spectra with Legacy
Surveys cutouts; :func:`build_desi_dataset` is the code behind ``galspec build-dataset``.
"""

import importlib

from .. import io as _io
from ..errors import GalSpecFormatError as GalSpecFormatError
from ..errors import GalSpecFormatWarning as GalSpecFormatWarning
from ..sky import fiber_offset_arcsec as fiber_offset_arcsec

# The readers live in galspec_hf.io (one module per format, with its writer); they are re-exported here,
# where users of the data look for them.
_READERS = tuple(name for name in _io.__all__ if not name.startswith("write_"))

# The builder pulls in `datasets` (slow to import): load it only when asked for.
_LAZY = {
    "build_desi_dataset": "build",
    "report_path_for": "build",
    "summarize_report": "build",
    "DesiGalaxies": "desi_builder",
    "DesiGalaxiesConfig": "desi_builder",
    "fingerprint_inputs": "desi_builder",
    "read_build_report": "desi_builder",
}


def __getattr__(name: str):
    if name in _READERS:
        return getattr(_io, name)
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = sorted([*_READERS, *_LAZY, "GalSpecFormatError", "GalSpecFormatWarning", "fiber_offset_arcsec"])
