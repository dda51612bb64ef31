"""MaNGA files: DRP LOGCUBEs, DAP MAPS, and the mangadap test file of spaxel spectra.

read_manga_cube    / write_manga_cube    LOGCUBE: FLUX, IVAR, MASK (with a 3-D WCS), WAVE, extra HDUs
read_manga_maps    / write_manga_maps    DAP MAPS: C01..Cnn channel maps with a celestial WCS
read_manga_spectra                       WAVE, FLUX, IVAR, MASK, SRES, Z (mangadap test-data layout)

Flux per spaxel in 1e-17 erg/s/cm2/A, line fluxes in 1e-17 erg/s/cm2, sky offsets in arcsec east (+RA) and north
(+Dec) (docs/ARCHITECTURE.md). The writers serve the simulator's IFU truth, predicted cubes (``galspec
predict-cube``), line maps (``LineMaps.to_fits``) and the test fakes; header conventions copied from
../shared/data/manga/manga-7815-3702-MAPS-*.fits.gz.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from ..errors import GalSpecFormatError
from ..sky import tangent_plane_offsets_arcsec
from ._fits import (
    ARCSEC_PER_DEG,
    _celestial_wcs,
    _channel_names,
    _image,
    _images,
    _open_fits,
    _same_shape,
    image_hdu,
    primary_hdu,
    set_cards,
    write_hdus,
)

__all__ = [
    "FLUX_UNIT_PER_SPAXEL",
    "IVAR_UNIT_PER_SPAXEL",
    "MANGA_DONOTUSE",
    "MangaCube",
    "MangaMaps",
    "MangaSpectra",
    "read_manga_cube",
    "read_manga_maps",
    "read_manga_spectra",
    "spaxel_wcs_header",
    "write_manga_cube",
    "write_manga_maps",
    "write_manga_spectra",
]

#: MANGA_DRP3PIXMASK bit 10, DONOTUSE (https://www.sdss4.org/dr17/algorithms/bitmasks/#MANGA_DRP3PIXMASK).
MANGA_DONOTUSE = 1 << 10
FLUX_UNIT_PER_SPAXEL = "1E-17 erg/s/cm^2/Ang/spaxel"
IVAR_UNIT_PER_SPAXEL = "1E+34 (erg/s/cm^2/Ang/spaxel)^-2"


# ----------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------
def _spaxel_offsets_arcsec(wcs: WCS, ny: int, nx: int, center: SkyCoord) -> np.ndarray:
    """Offsets of every spaxel from ``center``, shape (ny, nx, 2), arcsec east/north, through the WCS."""
    y, x = np.mgrid[0:ny, 0:nx]
    ra, dec = wcs.wcs_pix2world(x.astype(float), y.astype(float), 0)
    return tangent_plane_offsets_arcsec(ra, dec, center.ra.deg, center.dec.deg)


@dataclass
class MangaCube:
    """A MaNGA DRP LOGCUBE.

    Attributes
    ----------
    path : Path
    wavelength : ndarray, shape (n_wave,), float64
        Vacuum Angstrom (log-spaced, 1e-4 dex).
    flux : ndarray, shape (n_wave, ny, nx), float32
        1e-17 erg/s/cm2/A per spaxel (0.5 x 0.5 arcsec), the file's axis order.
    ivar : ndarray, shape (n_wave, ny, nx), float32
    mask : ndarray, shape (n_wave, ny, nx), int32
        MANGA_DRP3PIXMASK bits (0 = good).
    wcs : astropy.wcs.WCS
        Celestial WCS of the spaxel grid.
    center : SkyCoord
        Galaxy position (primary header OBJRA/OBJDEC, else the WCS reference point).
    spaxel_offset_arcsec : ndarray, shape (ny, nx, 2)
        Offset of each spaxel centre from ``center``, arcsec east/north, through the WCS.
    spaxel_arcsec : float
        Spaxel size from the WCS.
    """

    path: Path
    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    wcs: WCS
    center: SkyCoord
    spaxel_offset_arcsec: np.ndarray
    spaxel_arcsec: float
    header: fits.Header = field(repr=False, default=None)


def _center_from_header(header: fits.Header, wcs: WCS) -> SkyCoord:
    if "OBJRA" in header and "OBJDEC" in header:
        return SkyCoord(float(header["OBJRA"]) * u.deg, float(header["OBJDEC"]) * u.deg)
    ra, dec = wcs.wcs.crval[:2]
    return SkyCoord(ra * u.deg, dec * u.deg)


def _spectra_hdus(hdul: fits.HDUList, path: Path, ndim: int, layout: str) -> list[np.ndarray]:
    """WAVE (n_wave,), then FLUX, IVAR, MASK of ``ndim`` dimensions laid out as ``layout`` (DRP cubes, spectra)."""
    specs = (
        ("WAVE", 1, "vacuum wavelength (n_wave,)", np.float64),
        ("FLUX", ndim, f"flux {layout}"),
        ("IVAR", ndim, f"inverse variance {layout}"),
        ("MASK", ndim, f"mask {layout}", np.int32),
    )
    return _images(hdul, path, specs)


def read_manga_cube(path: str | Path) -> MangaCube:
    """Read a MaNGA DRP LOGCUBE (HDUs FLUX, IVAR, MASK, WAVE; 0.5 arcsec spaxels).

    Returns
    -------
    MangaCube
        ``flux``, ``ivar``, ``mask`` of shape (n_wave, ny, nx) and ``wavelength`` (n_wave,).
    """
    path = Path(path)
    with _open_fits(path) as hdul:
        wavelength, flux, ivar, mask = _spectra_hdus(hdul, path, 3, "(n_wave, ny, nx)")
        _same_shape(path, {"IVAR": ivar, "MASK": mask}, flux.shape, "FLUX")
        if wavelength.size != flux.shape[0]:
            raise GalSpecFormatError(
                f"{path}: HDU WAVE: expected {flux.shape[0]} wavelengths (FLUX axis 3), got {wavelength.size}"
            )
        header = hdul["FLUX"].header.copy()
        primary = hdul[0].header
        wcs = _celestial_wcs(header, path, "FLUX")
        center = _center_from_header(primary if "OBJRA" in primary else header, wcs)
    ny, nx = flux.shape[1:]
    scale = float(np.mean(proj_plane_pixel_scales(wcs)) * ARCSEC_PER_DEG)
    return MangaCube(
        path=path,
        wavelength=wavelength,
        flux=flux,
        ivar=ivar,
        mask=mask,
        wcs=wcs,
        center=center,
        spaxel_offset_arcsec=_spaxel_offsets_arcsec(wcs, ny, nx, center),
        spaxel_arcsec=scale,
        header=header,
    )


@dataclass
class MangaMaps:
    """Emission-line and kinematic maps of a MaNGA DAP MAPS file.

    Attributes
    ----------
    path : Path
    line_names : tuple of str
        Emission-line channel names from the EMLINE_GFLUX header (C01, C02, ...), e.g. "Ha-6564".
    emline_flux, emline_flux_ivar : ndarray, shape (n_lines, ny, nx), float32
        Gaussian-fit line flux, 1e-17 erg/s/cm2 per spaxel, and its inverse variance.
    emline_flux_mask : ndarray, shape (n_lines, ny, nx), int32
        MANGA_DAPPIXMASK bits (0 = good).
    gas_velocity, gas_velocity_mask : ndarray, shape (n_lines, ny, nx)
        EMLINE_GVEL, km/s relative to the input redshift, and its mask.
    stellar_velocity, stellar_velocity_mask : ndarray, shape (ny, nx)
        STELLAR_VEL, km/s, and its mask.
    spaxel_offset_arcsec : ndarray, shape (ny, nx, 2)
        SPX_SKYCOO: on-sky X (east) and Y (north) of each spaxel from the object centre, arcsec.
    wcs : astropy.wcs.WCS
    """

    path: Path
    line_names: tuple[str, ...]
    emline_flux: np.ndarray
    emline_flux_ivar: np.ndarray
    emline_flux_mask: np.ndarray
    gas_velocity: np.ndarray
    gas_velocity_mask: np.ndarray
    stellar_velocity: np.ndarray
    stellar_velocity_mask: np.ndarray
    spaxel_offset_arcsec: np.ndarray
    wcs: WCS
    header: fits.Header = field(repr=False, default=None)

    def line_index(self, name: str) -> int:
        """Channel index of a line name as in the header (case-insensitive), e.g. "Ha-6564"."""
        lowered = [n.lower() for n in self.line_names]
        if name.lower() not in lowered:
            raise KeyError(f"{self.path}: HDU EMLINE_GFLUX has no channel {name!r}; channels: {list(self.line_names)}")
        return lowered.index(name.lower())

    def line_map(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flux, ivar, mask) maps of one line, each shape (ny, nx)."""
        i = self.line_index(name)
        return self.emline_flux[i], self.emline_flux_ivar[i], self.emline_flux_mask[i]


def read_manga_maps(path: str | Path) -> MangaMaps:
    """Read a MaNGA DAP MAPS file: emission-line flux maps by channel name, velocities, sky coordinates.

    Channel names come from the EMLINE_GFLUX header (C01..Cnn), never from hard-coded positions.
    """
    path = Path(path)
    with _open_fits(path) as hdul:
        flux = _image(hdul, path, "EMLINE_GFLUX", 3, "emission-line flux maps (n_lines, ny, nx)")
        names = _channel_names(hdul["EMLINE_GFLUX"].header, flux.shape[0], path, "EMLINE_GFLUX")
        ivar = _image(hdul, path, "EMLINE_GFLUX_IVAR", 3, "line-flux inverse variance (n_lines, ny, nx)")
        mask = _image(hdul, path, "EMLINE_GFLUX_MASK", 3, "line-flux mask (n_lines, ny, nx)", np.int32)
        gvel = _image(hdul, path, "EMLINE_GVEL", 3, "gas velocity maps (n_lines, ny, nx)")
        gvel_mask = _image(hdul, path, "EMLINE_GVEL_MASK", 3, "gas velocity mask", np.int32)
        svel = _image(hdul, path, "STELLAR_VEL", 2, "stellar velocity map (ny, nx)")
        svel_mask = _image(hdul, path, "STELLAR_VEL_MASK", 2, "stellar velocity mask (ny, nx)", np.int32)
        skycoo = _image(hdul, path, "SPX_SKYCOO", 3, "spaxel on-sky X/Y offsets (2, ny, nx)", np.float64)
        arrays = {
            "EMLINE_GFLUX_IVAR": ivar,
            "EMLINE_GFLUX_MASK": mask,
            "EMLINE_GVEL": gvel,
            "EMLINE_GVEL_MASK": gvel_mask,
        }
        _same_shape(path, arrays, flux.shape, "EMLINE_GFLUX")
        if skycoo.shape[0] != 2 or skycoo.shape[1:] != flux.shape[1:]:
            raise GalSpecFormatError(f"{path}: HDU SPX_SKYCOO: expected shape (2, {flux.shape[1]}, {flux.shape[2]})")
        header = hdul["EMLINE_GFLUX"].header.copy()
        wcs = _celestial_wcs(header, path, "EMLINE_GFLUX")
    return MangaMaps(
        path=path,
        line_names=names,
        emline_flux=flux,
        emline_flux_ivar=ivar,
        emline_flux_mask=mask,
        gas_velocity=gvel,
        gas_velocity_mask=gvel_mask,
        stellar_velocity=svel,
        stellar_velocity_mask=svel_mask,
        spaxel_offset_arcsec=np.moveaxis(skycoo, 0, -1),
        wcs=wcs,
        header=header,
    )


@dataclass
class MangaSpectra:
    """Spaxel spectra in the layout of mangadap's test file (WAVE, FLUX, IVAR, MASK, SRES, Z).

    Attributes
    ----------
    wavelength : ndarray, shape (n_wave,), float64, vacuum Angstrom
    flux, ivar : ndarray, shape (N, n_wave), float32; flux in 1e-17 erg/s/cm2/A per spaxel
    mask : ndarray, shape (N, n_wave), int32
    spectral_resolution : ndarray, shape (N, n_wave), float64; R = lambda / delta-lambda
    redshift : ndarray, shape (N,), float64
    """

    path: Path
    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    spectral_resolution: np.ndarray
    redshift: np.ndarray


def read_manga_spectra(path: str | Path) -> MangaSpectra:
    """Read spaxel spectra stored as HDUs WAVE, FLUX, IVAR, MASK, SRES, Z (mangadap test-data layout)."""
    path = Path(path)
    with _open_fits(path) as hdul:
        wavelength, flux, ivar, mask = _spectra_hdus(hdul, path, 2, "(N, n_wave)")
        sres = _image(hdul, path, "SRES", 2, "spectral resolution (N, n_wave)", np.float64)
        redshift = _image(hdul, path, "Z", 1, "redshift per spectrum (N,)", np.float64)
    arrays = {"FLUX": flux, "IVAR": ivar, "MASK": mask, "SRES": sres}
    _same_shape(path, arrays, (redshift.size, wavelength.size), "Z and WAVE")
    return MangaSpectra(path, wavelength, flux, ivar, mask, sres, redshift)


# ----------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------
def write_manga_spectra(path: str | Path, wavelength, flux, ivar, redshift, spectral_resolution, mask=None) -> Path:
    """Write spectra as HDUs WAVE (L,), FLUX, IVAR, MASK, SRES (N, L) and Z (N,): the mangadap test-data layout that
    :func:`read_manga_spectra` reads (and the MaNGA DAP's test runs on). `spectral_resolution`: R = lambda / FWHM,
    (L,) or (N, L); `mask`: MANGA_DRP3PIXMASK bits, default 0."""
    wavelength = np.asarray(wavelength, np.float64)
    flux = np.atleast_2d(np.asarray(flux, np.float64))
    shape = (flux.shape[0], wavelength.size)
    if flux.shape != shape:
        raise ValueError(f"write_manga_spectra: `flux` must be (N, {wavelength.size}), got {flux.shape}")
    arrays = {"FLUX": flux, "IVAR": ivar, "SRES": spectral_resolution, "MASK": 0 if mask is None else mask}
    columns = {}
    for name, value in arrays.items():
        try:
            columns[name] = np.broadcast_to(np.asarray(value), shape)
        except ValueError:
            raise ValueError(f"write_manga_spectra: {name} must broadcast to {shape}, got {np.shape(value)}") from None
    redshift = np.asarray(redshift, np.float64).reshape(-1)
    if redshift.size != shape[0]:
        raise ValueError(f"write_manga_spectra: `redshift` must have {shape[0]} values, got {redshift.size}")
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(wavelength, name="WAVE")]
    hdus += [fits.ImageHDU(columns["FLUX"].astype(np.float64), name="FLUX"),
             fits.ImageHDU(columns["IVAR"].astype(np.float64), name="IVAR"),
             fits.ImageHDU(columns["MASK"].astype(np.int32), name="MASK"),
             fits.ImageHDU(columns["SRES"].astype(np.float64), name="SRES"),
             fits.ImageHDU(redshift, name="Z")]  # fmt: skip
    path = Path(path)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def spaxel_wcs_header(
    header: fits.Header, ra_deg: float, dec_deg: float, n_x: int, n_y: int, spaxel_arcsec: float, matrix: str = "cd"
) -> fits.Header:
    """Add a RA---TAN / DEC--TAN WCS centred on (ra_deg, dec_deg), east to the left, to ``header``; return it.

    ``matrix="cd"`` writes CD1_1 < 0 and CD2_2 (DRP cubes); ``"pc"`` writes PC1_1, PC2_2 in degrees
    with CDELT = 1 (the DAP MAPS convention). The reference pixel is the array centre.
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
        header["CD1_1"] = -spaxel_arcsec / ARCSEC_PER_DEG
        header["CD2_2"] = spaxel_arcsec / ARCSEC_PER_DEG
    elif matrix == "pc":
        header["PC1_1"] = (-spaxel_arcsec / ARCSEC_PER_DEG, "Coordinate transformation matrix element")
        header["PC2_2"] = (spaxel_arcsec / ARCSEC_PER_DEG, "Coordinate transformation matrix element")
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


def write_manga_cube(
    path: str | Path,
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    ra_deg: float,
    dec_deg: float,
    spaxel_arcsec: float,
    primary_header: Mapping | fits.Header | None = None,
    cube_hdus: Mapping[str, tuple[np.ndarray, str | None]] | None = None,
    extra_hdus: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a MaNGA DRP-like LOGCUBE; gzipped when ``path`` ends in .gz.

    HDUs: PRIMARY (``primary_header`` cards, e.g. OBJRA, OBJDEC, PLATEIFU), FLUX, IVAR, MASK, then ``cube_hdus``
    (name -> (array (L, ny, nx), BUNIT or None), e.g. LSFPOST), each with the spaxel WCS (:func:`spaxel_wcs_header`,
    centred on (ra_deg, dec_deg)) and the spectral WCS; then WAVE and ``extra_hdus`` (name -> array, e.g. SPECRES),
    the layout :func:`read_manga_cube` reads.

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
        raise ValueError(f"write_manga_cube: `flux` must be (L={wavelength.shape[0]}, ny, nx), got {flux.shape}")
    mask = np.zeros(flux.shape, np.int32) if mask is None else np.asarray(mask, dtype=np.int32)
    cubes = {"FLUX": (flux, FLUX_UNIT_PER_SPAXEL), "IVAR": (np.asarray(ivar, np.float32), IVAR_UNIT_PER_SPAXEL)}
    cubes["MASK"] = (mask, None)
    cubes.update(cube_hdus or {})
    for name, (data, _) in cubes.items():
        if np.shape(data) != flux.shape:
            raise ValueError(
                f"write_manga_cube: `{name.lower()}` must have the shape of `flux` {flux.shape}, got {np.shape(data)}"
            )
    _, n_y, n_x = flux.shape
    hdus = [primary_hdu(primary_header)]
    for name, (data, unit) in cubes.items():
        hdu = image_hdu(name, data)
        spaxel_wcs_header(hdu.header, ra_deg, dec_deg, n_x, n_y, spaxel_arcsec)
        _wavelength_wcs(hdu.header, wavelength)
        if unit:
            hdu.header["BUNIT"] = unit
        hdu.header["HDUCLASS"] = "SDSS"
        hdus.append(hdu)
    hdus.append(image_hdu("WAVE", wavelength))
    hdus += [image_hdu(name, data) for name, data in (extra_hdus or {}).items()]
    return write_hdus(path, hdus)


def _maps_class(name: str, names: Sequence[str]) -> dict:
    """HDUCLAS2 of a MAPS HDU from its name (X_IVAR: ERROR, X_MASK: QUALITY, else DATA) and, for data, the
    ERRDATA / QUALDATA links to the X_IVAR / X_MASK HDUs present."""
    if name.endswith("_IVAR"):
        return {"HDUCLAS2": "ERROR"}
    if name.endswith("_MASK"):
        return {"HDUCLAS2": "QUALITY"}
    cards = {"HDUCLAS2": "DATA"}
    if f"{name}_IVAR" in names:
        cards["ERRDATA"] = (f"{name}_IVAR", "Associated inv. variance extension")
    if f"{name}_MASK" in names:
        cards["QUALDATA"] = (f"{name}_MASK", "Associated quality extension")
    return cards


def write_manga_maps(
    path: str | Path,
    maps: Mapping[str, tuple[np.ndarray, str | None, Sequence[str] | None]],
    *,
    wcs_header: Mapping | fits.Header | None,
    primary_header: Mapping | fits.Header | None = None,
    extra_hdus: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a MaNGA DAP-MAPS-like file; gzipped when ``path`` ends in .gz.

    Parameters
    ----------
    maps : mapping
        HDU name -> (data, BUNIT or None, channel names or None), in the order written (e.g. "EMLINE_GFLUX" ->
        (flux (n_lines, ny, nx), "1E-17 erg/s/cm^2/spaxel", ("Ha-6564", ...))). Data are written as given. Every
        HDU gets the ``wcs_header`` cards (e.g. :func:`spaxel_wcs_header` with ``matrix="pc"``), MASKNAME
        MANGA_DAPPIXMASK, C01..Cnn channel names, BUNIT, HDUCLASS SDSS, HDUCLAS1 CUBE and HDUCLAS2 from the name:
        ERROR for X_IVAR, QUALITY for X_MASK, else DATA with ERRDATA / QUALDATA naming X_IVAR / X_MASK when given.
    wcs_header : mapping or Header or None
        The celestial WCS cards of the maps; None writes none (maps that are not images).
    primary_header : mapping or Header, optional
        Primary header cards (keyword -> value or (value, comment)).
    extra_hdus : mapping, optional
        Name -> array, written after the maps without header cards (e.g. REDSHIFT).
    """
    names = list(maps)
    hdus = [primary_hdu(primary_header)]
    for name, (data, bunit, channels) in maps.items():
        hdu = image_hdu(name, data, wcs_header)
        header = hdu.header
        header["MASKNAME"] = "MANGA_DAPPIXMASK"
        for k, channel in enumerate(channels or ()):
            header[f"C{k + 1:02d}"] = (channel, f"Data in channel {k + 1}")
        if bunit:
            header["BUNIT"] = (bunit, "Unit of pixel value")
        header["HDUCLASS"] = ("SDSS", "SDSS format class")
        header["HDUCLAS1"] = ("CUBE", "Data format")
        set_cards(header, _maps_class(name, names))
        hdus.append(hdu)
    hdus += [image_hdu(name, data) for name, data in (extra_hdus or {}).items()]
    return write_hdus(path, hdus)
