"""Survey data: readers for the real file formats and the DESI `datasets` builder.

Readers (astropy) return arrays in the package units (docs/ARCHITECTURE.md) and raise
:class:`GalspecFormatError` naming the file, the HDU or column, and what was expected.
:class:`DesiGalaxies` is a `datasets.GeneratorBasedBuilder` that pairs DESI spectra with Legacy
Surveys cutouts; :func:`build_desi_dataset` is the code behind ``galspec build-dataset``.
"""

from .readers import (
    DesiCoadd,
    GalspecFormatError,
    GalspecFormatWarning,
    LegacyCutout,
    MangaCube,
    MangaMaps,
    MangaSpectra,
    RedrockCatalog,
    SdssSpectrum,
    desi_wavelength_grid,
    fiber_offset_arcsec,
    read_desi_coadd,
    read_legacy_cutout,
    read_manga_cube,
    read_manga_maps,
    read_manga_spectra,
    read_redrock,
    read_sdss_spec,
)

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
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DesiCoadd",
    "DesiGalaxies",
    "DesiGalaxiesConfig",
    "GalspecFormatError",
    "GalspecFormatWarning",
    "LegacyCutout",
    "MangaCube",
    "MangaMaps",
    "MangaSpectra",
    "RedrockCatalog",
    "SdssSpectrum",
    "build_desi_dataset",
    "desi_wavelength_grid",
    "fiber_offset_arcsec",
    "fingerprint_inputs",
    "read_build_report",
    "read_desi_coadd",
    "read_legacy_cutout",
    "read_manga_cube",
    "read_manga_maps",
    "read_manga_spectra",
    "read_redrock",
    "read_sdss_spec",
    "report_path_for",
    "summarize_report",
]
