"""SDSS/BOSS single spectra: ``spec-PLATE-MJD-FIBER.fits`` (COADD table, SPECOBJ catalogue row).

read_sdss_spec / write_sdss_spec; flux in 1e-17 erg/s/cm2/A, vacuum Angstrom (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from ._fits import _open_fits, _table, primary_hdu, table_hdu, write_hdus

__all__ = ["COADD_COLUMNS", "SPECOBJ_COLUMNS", "SdssSpectrum", "read_sdss_spec", "write_sdss_spec"]

#: COADD columns of a spec file (SDSS DR17 data model, spec: HDU 1), names and formats.
COADD_COLUMNS = (
    ("flux", "E"), ("loglam", "E"), ("ivar", "E"), ("and_mask", "J"), ("or_mask", "J"), ("wdisp", "E"), ("sky", "E"),
    ("model", "E"),
)  # fmt: skip
#: SPECOBJ columns written (a subset of the data model's HDU 2), names and formats.
SPECOBJ_COLUMNS = (
    ("PLATE", "J"), ("MJD", "J"), ("FIBERID", "J"), ("Z", "E"), ("PLUG_RA", "D"), ("PLUG_DEC", "D"), ("CLASS", "6A"),
)  # fmt: skip


# ----------------------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------------------
@dataclass
class SdssSpectrum:
    """One SDSS/BOSS spec-*.fits spectrum.

    Attributes
    ----------
    wavelength : ndarray, shape (n_wave,), float64
        Vacuum Angstrom, 10**loglam.
    flux, ivar : ndarray, shape (n_wave,), float32
        1e-17 erg/s/cm2/A and its inverse variance.
    and_mask : ndarray, shape (n_wave,), int32
    redshift : float
        SPECOBJ Z (NaN without a SPECOBJ HDU).
    ra, dec : float
        SPECOBJ PLUG_RA/PLUG_DEC, degrees (NaN without a SPECOBJ HDU).
    """

    path: Path
    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    and_mask: np.ndarray
    redshift: float = float("nan")
    ra: float = float("nan")
    dec: float = float("nan")


def read_sdss_spec(path: str | Path) -> SdssSpectrum:
    """Read an SDSS spec-PLATE-MJD-FIBER.fits file (HDU COADD: loglam, flux, ivar, and_mask; SPECOBJ: Z)."""
    path = Path(path)
    with _open_fits(path) as hdul:
        data = _table(hdul, path, "COADD", ("loglam", "flux", "ivar", "and_mask"), "the coadded spectrum")
        spectrum = SdssSpectrum(
            path=path,
            wavelength=10.0 ** np.asarray(data["loglam"], np.float64),
            flux=np.asarray(data["flux"], np.float32),
            ivar=np.asarray(data["ivar"], np.float32),
            and_mask=np.asarray(data["and_mask"], np.int32),
        )
        if "SPECOBJ" in hdul:
            specobj = _table(hdul, path, "SPECOBJ", ("Z",), "the spectroscopic catalogue row")
            spectrum.redshift = float(specobj["Z"][0])
            names = {n.upper() for n in specobj.columns.names}
            if {"PLUG_RA", "PLUG_DEC"} <= names:
                spectrum.ra, spectrum.dec = float(specobj["PLUG_RA"][0]), float(specobj["PLUG_DEC"][0])
    return spectrum


# ----------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------
def write_sdss_spec(
    path: str | Path,
    coadd: Mapping[str, np.ndarray],
    specobj: Mapping[str, object] | None = None,
    *,
    header: Mapping | fits.Header | None = None,
) -> Path:
    """Write an SDSS spec file: PRIMARY (``header`` cards), COADD and, when given, SPECOBJ.

    ``coadd`` maps the columns of :data:`COADD_COLUMNS` (loglam, flux, ivar, and_mask, ...) to per-pixel values;
    ``specobj`` maps those of :data:`SPECOBJ_COLUMNS` (Z, PLUG_RA, PLUG_DEC, ...) to one-row values.
    """
    hdus = [primary_hdu(header), table_hdu("COADD", COADD_COLUMNS, coadd)]
    if specobj is not None:
        hdus.append(table_hdu("SPECOBJ", SPECOBJ_COLUMNS, specobj))
    return write_hdus(path, hdus)
