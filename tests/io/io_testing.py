"""Shared by the tests of :mod:`galspec_hf.io`: the real files' names and a line-position check."""

from __future__ import annotations

import numpy as np

DESI_COADD = "desi/coadd-4-80613-thru20210324.fits"
DESI_REDROCK = "desi/redrock-4-80613-thru20210324.fits"
LEGACY_CUTOUT = "legacysurvey/legacysurvey-dr9-grz-357.9087-54.8817.fits"
MANGA_MAPS = "manga/manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz"
MANGA_SPECTRA = "manga/MaNGA_test_spectra.fits.gz"


def line_peak_wavelength(wavelength, flux, expected, half_window=40.0):
    """Wavelength of the highest continuum-subtracted pixel within +-half_window A of ``expected``."""
    window = np.abs(wavelength - expected) < half_window
    continuum = np.median(flux[window])
    return wavelength[window][np.argmax(flux[window] - continuum)]
