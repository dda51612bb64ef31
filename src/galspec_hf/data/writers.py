"""Writers for the real file formats that galspec-hf produces (not only reads).

``write_logcube`` writes a MaNGA DRP-like LOGCUBE (PRIMARY, FLUX, IVAR, MASK, WAVE, with the spaxel
WCS on every cube HDU), the layout ``read_manga_cube`` reads. It serves the synthetic IFU truth
(:mod:`galspec_hf.simulate.ifu`) and predicted cubes (``galspec predict-cube``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.io import fits

#: MANGA_DRP3PIXMASK bit 10, DONOTUSE (https://www.sdss4.org/dr17/algorithms/bitmasks/#MANGA_DRP3PIXMASK).
MANGA_DONOTUSE = 1 << 10
FLUX_UNIT_PER_SPAXEL = "1E-17 erg/s/cm^2/Ang/spaxel"
IVAR_UNIT_PER_SPAXEL = "1E+34 (erg/s/cm^2/Ang/spaxel)^-2"


def spaxel_wcs_header(
    header: fits.Header, ra_deg: float, dec_deg: float, n_x: int, n_y: int, spaxel_arcsec: float, matrix: str = "cd"
):
    """Add a RA---TAN / DEC--TAN WCS centred on (ra_deg, dec_deg), east to the left, to `header`.

    ``matrix="cd"`` writes CD1_1 < 0 and CD2_2 (DRP cubes); ``"pc"`` writes PC1_1, PC2_2 in degrees
    with CDELT = 1 (the DAP MAPS convention).
    """
    header["CRPIX1"] = (n_x / 2 + 0.5, "Pixel coordinate of reference point")
    header["CRPIX2"] = (n_y / 2 + 0.5, "Pixel coordinate of reference point")
    header["CTYPE1"] = ("RA---TAN", "Right ascension, gnomonic projection")
    header["CTYPE2"] = ("DEC--TAN", "Declination, gnomonic projection")
    header["CRVAL1"] = (float(ra_deg), "[deg] Coordinate value at reference point")
    header["CRVAL2"] = (float(dec_deg), "[deg] Coordinate value at reference point")
    header["CUNIT1"] = "deg"
    header["CUNIT2"] = "deg"
    if matrix == "cd":
        header["CD1_1"] = -spaxel_arcsec / 3600.0
        header["CD2_2"] = spaxel_arcsec / 3600.0
    elif matrix == "pc":
        header["PC1_1"] = (-spaxel_arcsec / 3600.0, "Coordinate transformation matrix element")
        header["PC2_2"] = (spaxel_arcsec / 3600.0, "Coordinate transformation matrix element")
        header["CDELT1"] = (1.0, "[deg] Coordinate increment at reference point")
        header["CDELT2"] = (1.0, "[deg] Coordinate increment at reference point")
    else:
        raise ValueError(f"spaxel_wcs_header: `matrix` must be 'cd' or 'pc', got {matrix!r}")
    return header


def _wavelength_wcs(header: fits.Header, wavelength: np.ndarray) -> None:
    """Spectral WCS: WAVE-LOG for a log-uniform grid (MaNGA), WAVE for a linear one (DESI)."""
    steps = np.diff(wavelength)
    log_steps = np.diff(np.log10(wavelength))
    header["CRPIX3"] = 1.0
    header["CRVAL3"] = float(wavelength[0])
    header["CUNIT3"] = "Angstrom"
    if np.allclose(log_steps, log_steps[0], rtol=1e-4):
        header["CTYPE3"] = "WAVE-LOG"
        header["CD3_3"] = float(wavelength[0] * math.log(10) * log_steps[0])
    elif np.allclose(steps, steps[0], rtol=1e-4):
        header["CTYPE3"] = "WAVE"
        header["CD3_3"] = float(steps[0])


def write_logcube(
    path: str | Path,
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    ra_deg: float,
    dec_deg: float,
    spaxel_arcsec: float,
    primary_header: fits.Header | None = None,
    extra_hdus: list | tuple = (),
) -> Path:
    """Write a MaNGA DRP-like LOGCUBE; gzipped when `path` ends in .gz.

    Parameters
    ----------
    wavelength : (L,) vacuum Angstrom
    flux, ivar : (L, ny, nx), 1e-17 erg/s/cm2/A per spaxel and its inverse variance
    mask : (L, ny, nx) int, MANGA_DRP3PIXMASK bits (0 = good); default all good
    ra_deg, dec_deg : sky position of the cube centre; spaxel_arcsec : spaxel side
    """
    wavelength = np.asarray(wavelength, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float32)
    if flux.ndim != 3 or flux.shape[0] != wavelength.shape[0]:
        raise ValueError(f"write_logcube: `flux` must be (L={wavelength.shape[0]}, ny, nx), got {flux.shape}")
    if np.shape(ivar) != flux.shape:
        raise ValueError(f"write_logcube: `ivar` must have the shape of `flux` {flux.shape}, got {np.shape(ivar)}")
    mask = np.zeros(flux.shape, np.int32) if mask is None else np.asarray(mask, dtype=np.int32)
    if mask.shape != flux.shape:
        raise ValueError(f"write_logcube: `mask` must have the shape of `flux` {flux.shape}, got {mask.shape}")
    _, n_y, n_x = flux.shape
    hdus = [fits.PrimaryHDU(header=primary_header.copy() if primary_header is not None else fits.Header())]
    for name, data, unit in (
        ("FLUX", flux, FLUX_UNIT_PER_SPAXEL),
        ("IVAR", np.asarray(ivar, dtype=np.float32), IVAR_UNIT_PER_SPAXEL),
        ("MASK", mask, None),
    ):
        hdu = fits.ImageHDU(data, name=name)
        spaxel_wcs_header(hdu.header, ra_deg, dec_deg, n_x, n_y, spaxel_arcsec)
        _wavelength_wcs(hdu.header, wavelength)
        if unit:
            hdu.header["BUNIT"] = unit
        hdu.header["HDUCLASS"] = "SDSS"
        hdus.append(hdu)
    hdus.append(fits.ImageHDU(wavelength, name="WAVE"))
    hdus.extend(extra_hdus)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return Path(path)
