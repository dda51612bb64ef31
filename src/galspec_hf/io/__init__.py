"""Survey file formats: one module per format, each with its reader(s) and writer(s) (docs/ARCHITECTURE.md).

desi      DESI healpix coadds and redrock catalogues
legacy    Legacy Surveys image cutouts
manga     MaNGA DRP LOGCUBEs, DAP MAPS, the mangadap test spectra
sdss      SDSS/BOSS spec files

Readers return arrays in the package conventions and raise :class:`~galspec_hf.errors.GalSpecFormatError`
naming the file, the HDU or column, and what was expected; writers take arrays and header values and write
the real HDU layouts (the simulator, the test fakes, predicted cubes and line maps all write through them).
"""

from .desi import (
    DesiCoadd,
    RedrockCatalog,
    desi_wavelength_grid,
    read_desi_coadd,
    read_redrock,
    write_desi_coadd,
    write_redrock,
)
from .legacy import LegacyCutout, read_legacy_cutout, write_legacy_cutout
from .manga import (
    MangaCube,
    MangaMaps,
    MangaSpectra,
    read_manga_cube,
    read_manga_maps,
    read_manga_spectra,
    write_manga_cube,
    write_manga_maps,
    write_manga_spectra,
)
from .sdss import SdssSpectrum, read_sdss_spec, write_sdss_spec

__all__ = [
    "DesiCoadd",
    "LegacyCutout",
    "MangaCube",
    "MangaMaps",
    "MangaSpectra",
    "RedrockCatalog",
    "SdssSpectrum",
    "desi_wavelength_grid",
    "read_desi_coadd",
    "read_legacy_cutout",
    "read_manga_cube",
    "read_manga_maps",
    "read_manga_spectra",
    "read_redrock",
    "read_sdss_spec",
    "write_desi_coadd",
    "write_legacy_cutout",
    "write_manga_cube",
    "write_manga_maps",
    "write_manga_spectra",
    "write_redrock",
    "write_sdss_spec",
]
