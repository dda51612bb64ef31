"""Readers for the real survey file formats, built on astropy.

Every reader returns a small dataclass whose arrays are in the package conventions
(docs/ARCHITECTURE.md): flux density in 1e-17 erg/s/cm2/A, images in nanomaggies per pixel, wavelengths
in vacuum Angstrom in the observed frame, sky offsets in arcsec east (+RA) and north (+Dec).
Every error is a :class:`GalspecFormatError` that names the file, the HDU or column, and what
was expected.

Readers
-------
read_desi_coadd      DESI coadd-*.fits: b, r, z arms merged onto the 7781-pixel model grid
read_redrock         DESI redrock-*.fits: REDSHIFTS table
read_legacy_cutout   Legacy Surveys FITS cutout: (bands, H, W) image with its WCS
read_manga_cube      MaNGA DRP LOGCUBE: FLUX, IVAR, MASK, WAVE with a 3D WCS
read_manga_maps      MaNGA DAP MAPS: emission-line maps by channel name, velocities, sky coordinates
read_manga_spectra   the mangadap test file of spaxel spectra (WAVE, FLUX, IVAR, MASK, SRES, Z)
read_sdss_spec       SDSS spec-*.fits: COADD table (loglam, flux, ivar, and_mask)
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from .. import constants as C

__all__ = [
    "GalspecFormatError",
    "GalspecFormatWarning",
    "DesiCoadd",
    "RedrockCatalog",
    "LegacyCutout",
    "MangaCube",
    "MangaMaps",
    "MangaSpectra",
    "SdssSpectrum",
    "desi_wavelength_grid",
    "fiber_offset_arcsec",
    "parse_desi_healpix_name",
    "tangent_plane_offsets_arcsec",
    "tangent_plane_to_sky",
    "read_desi_coadd",
    "read_redrock",
    "read_legacy_cutout",
    "read_manga_cube",
    "read_manga_maps",
    "read_manga_spectra",
    "read_sdss_spec",
]

DESI_ARMS = ("b", "r", "z")
_ARCSEC_PER_DEG = 3600.0


class GalspecFormatError(ValueError):
    """A survey file is unreadable or not in the expected layout.

    The message always names the file, the HDU or column, and what was expected.
    """


class GalspecFormatWarning(UserWarning):
    """A survey file is readable but incomplete (e.g. a DESI coadd without FIBERMAP)."""


def desi_wavelength_grid() -> np.ndarray:
    """The merged DESI model grid: 3600-9824 A at 0.8 A, shape (7781,), vacuum Angstrom, float64."""
    return C.DESI_WAVELENGTH_MIN_A + C.DESI_WAVELENGTH_STEP_A * np.arange(C.DESI_NUM_PIXELS, dtype=np.float64)


# ----------------------------------------------------------------------------------------
# Small FITS helpers: every failure names the file and the HDU
# ----------------------------------------------------------------------------------------
def _open_fits(path: str | Path) -> fits.HDUList:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    except Exception as error:  # astropy raises OSError, ValueError, TypeError... for broken files
        raise GalspecFormatError(f"{path}: not a readable FITS file ({type(error).__name__}: {error})") from error
    truncated = [str(w.message) for w in caught if "truncated" in str(w.message).lower()]
    if truncated:
        hdul.close()
        raise GalspecFormatError(f"{path}: truncated FITS file ({truncated[0]})")
    for w in caught:  # re-emit anything else
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return hdul


def _hdu(hdul: fits.HDUList, path: Path, name: str, purpose: str) -> fits.hdu.base.ExtensionHDU:
    if name not in hdul:
        present = ", ".join(h.name for h in hdul)
        raise GalspecFormatError(f"{path}: missing HDU {name} (expected {purpose}); HDUs present: {present}")
    return hdul[name]


def _image(hdul: fits.HDUList, path: Path, name: str, ndim: int, purpose: str, dtype=np.float32) -> np.ndarray:
    hdu = _hdu(hdul, path, name, purpose)
    try:
        data = hdu.data
    except Exception as error:
        raise GalspecFormatError(
            f"{path}: HDU {name}: data unreadable, file truncated or corrupt ({error})"
        ) from error
    if data is None or np.ndim(data) != ndim:
        shape = None if data is None else np.shape(data)
        raise GalspecFormatError(f"{path}: HDU {name}: expected a {ndim}-D array ({purpose}), got shape {shape}")
    return np.asarray(data).astype(dtype)  # FITS is big-endian: convert to native


def _table(hdul: fits.HDUList, path: Path, name: str, columns: tuple[str, ...], purpose: str) -> fits.FITS_rec:
    hdu = _hdu(hdul, path, name, purpose)
    try:
        data = hdu.data
    except Exception as error:
        raise GalspecFormatError(
            f"{path}: HDU {name}: table unreadable, file truncated or corrupt ({error})"
        ) from error
    if data is None or not hasattr(data, "columns"):
        raise GalspecFormatError(f"{path}: HDU {name}: expected a binary table ({purpose})")
    names = {n.upper() for n in data.columns.names}
    for column in columns:
        if column.upper() not in names:
            raise GalspecFormatError(f"{path}: HDU {name}: missing column {column} (expected {purpose})")
    return data


def _strings(values) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object).astype(str)


# ----------------------------------------------------------------------------------------
# DESI coadd
# ----------------------------------------------------------------------------------------
@dataclass
class DesiCoadd:
    """Spectra of one DESI coadd file, merged onto the model grid.

    Attributes
    ----------
    path : Path
    targetid : ndarray, shape (N,), int64
    wavelength : ndarray, shape (7781,), float64
        Vacuum Angstrom, 3600-9824 A at 0.8 A.
    flux : ndarray, shape (N, 7781), float32
        1e-17 erg/s/cm2/A; the arms are merged by inverse-variance weighting where they overlap.
    ivar : ndarray, shape (N, 7781), float32
        Inverse variance of ``flux``; 0 where no arm has a good pixel.
    mask : ndarray, shape (N, 7781), int32
        DESI mask bits: 0 where at least one arm has a usable pixel (mask 0, finite flux, ivar > 0),
        else the bitwise OR of the masks of the arms covering the pixel.
    target_ra, target_dec, fiber_ra, fiber_dec : ndarray, shape (N,), float64
        Degrees; fiber position from FIBERMAP MEAN_FIBER_RA/DEC. NaN when the file has no FIBERMAP.
    fiber_offset_arcsec : ndarray, shape (N, 2), float64
        Fiber minus target, arcsec east and north:
        ((MEAN_FIBER_RA - TARGET_RA) cos(TARGET_DEC), MEAN_FIBER_DEC - TARGET_DEC) * 3600.
    coadd_fiberstatus : ndarray, shape (N,), int64
        FIBERMAP COADD_FIBERSTATUS (0 = good); -1 when the file has no FIBERMAP.
    psf_to_fiber : ndarray, shape (N,), float64
        FIBERMAP MEAN_PSF_TO_FIBER_SPECFLUX. DESI calibrates ``flux`` for point sources; ``flux *
        psf_to_fiber`` is desispec's fiber flux, the flux in a 1.5" fiber in 1" FWHM seeing (the Legacy
        Surveys FIBERFLUX definition; desispec.fiberfluxcorr.psf_to_fiber_flux_correction). NaN when the
        file has no FIBERMAP or no such column; not checked here (a data build refuses a spectrum whose
        factor is not finite and > 0).
    n_nonfinite_flux, n_negative_ivar : ndarray, shape (N,), int64
        Raw-arm pixels with NaN/inf flux or ivar < 0 (such pixels get ivar 0 in the merge); a data
        build uses these to reject broken spectra.
    fibermap : astropy.table.Table or None
        The FIBERMAP table as stored.
    survey, program : str
        From the primary header (SURVEY, PROGRAM) or the ``coadd-{survey}-{program}-{healpix}``
        file name; "" if unknown.
    healpix : int
        HPXPIXEL header keyword or file name; -1 if unknown.
    arms : dict or None
        With ``keep_arms=True``: ``{"b": {"wavelength", "flux", "ivar", "mask"}, ...}`` as stored.
    """

    path: Path
    targetid: np.ndarray
    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    target_ra: np.ndarray
    target_dec: np.ndarray
    fiber_ra: np.ndarray
    fiber_dec: np.ndarray
    fiber_offset_arcsec: np.ndarray
    coadd_fiberstatus: np.ndarray
    n_nonfinite_flux: np.ndarray
    n_negative_ivar: np.ndarray
    psf_to_fiber: np.ndarray | None = None
    fibermap: Table | None = None
    survey: str = ""
    program: str = ""
    healpix: int = -1
    arms: dict | None = None

    def __len__(self) -> int:
        return len(self.targetid)


_HEALPIX_NAME = re.compile(r"^(?:coadd|redrock)-(?P<survey>[a-z0-9]+)-(?P<program>[a-z0-9]+)-(?P<healpix>\d+)\.fits")


def parse_desi_healpix_name(path: str | Path) -> tuple[str, str, int] | None:
    """``coadd-main-dark-10032.fits`` -> ("main", "dark", 10032); None for other names (e.g. tile coadds)."""
    match = _HEALPIX_NAME.match(Path(path).name)
    if match is None:
        return None
    return match["survey"], match["program"], int(match["healpix"])


def fiber_offset_arcsec(target_ra, target_dec, fiber_ra, fiber_dec) -> np.ndarray:
    """Fiber position minus target position, arcsec east and north; shape (..., 2).

    ((fiber_ra - target_ra) cos(target_dec), fiber_dec - target_dec) * 3600, with the RA
    difference wrapped into [-180, 180) degrees.
    """
    d_ra = (np.asarray(fiber_ra, float) - np.asarray(target_ra, float) + 180.0) % 360.0 - 180.0
    east = d_ra * np.cos(np.deg2rad(np.asarray(target_dec, float)))
    north = np.asarray(fiber_dec, float) - np.asarray(target_dec, float)
    return np.stack([east, north], axis=-1) * _ARCSEC_PER_DEG


def tangent_plane_offsets_arcsec(ra, dec, ra0: float, dec0: float) -> np.ndarray:
    """Gnomonic (tangent-plane) offsets of (ra, dec) from (ra0, dec0), shape (..., 2), arcsec east/north.

    The standard coordinates (xi, eta) of the TAN projection centred on (ra0, dec0)
    (Calabretta & Greisen 2002, A&A 395, 1077); all angles in degrees.
    """
    ra, dec = np.deg2rad(np.asarray(ra, float)), np.deg2rad(np.asarray(dec, float))
    ra0, dec0 = np.deg2rad(ra0), np.deg2rad(dec0)
    d_ra = ra - ra0
    cos_c = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(d_ra)
    east = np.cos(dec) * np.sin(d_ra) / cos_c
    north = (np.cos(dec0) * np.sin(dec) - np.sin(dec0) * np.cos(dec) * np.cos(d_ra)) / cos_c
    return np.rad2deg(np.stack([east, north], axis=-1)) * _ARCSEC_PER_DEG


def tangent_plane_to_sky(offset_arcsec, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`tangent_plane_offsets_arcsec`: offsets (..., 2) arcsec -> (RA, Dec) in degrees."""
    offset = np.deg2rad(np.asarray(offset_arcsec, float) / _ARCSEC_PER_DEG)
    xi, eta = offset[..., 0], offset[..., 1]
    ra0, dec0 = np.deg2rad(ra0), np.deg2rad(dec0)
    denominator = np.cos(dec0) - eta * np.sin(dec0)
    ra = ra0 + np.arctan2(xi, denominator)
    dec = np.arctan2(np.sin(dec0) + eta * np.cos(dec0), np.hypot(xi, denominator))
    return np.rad2deg(ra) % 360.0, np.rad2deg(dec)


def _arm_grid_index(wavelength: np.ndarray, path: Path, hdu_name: str) -> np.ndarray:
    """Indices of an arm's pixels on the merged grid; the arms share its 0.8 A lattice."""
    step, start = C.DESI_WAVELENGTH_STEP_A, C.DESI_WAVELENGTH_MIN_A
    index = np.rint((wavelength - start) / step).astype(np.int64)
    on_lattice = np.abs(start + step * index - wavelength) < 0.01 * step
    if not np.all(on_lattice) or index.min() < 0 or index.max() >= C.DESI_NUM_PIXELS:
        raise GalspecFormatError(
            f"{path}: HDU {hdu_name}: expected vacuum wavelengths on the {step} A lattice within "
            f"{start}-{C.DESI_WAVELENGTH_MAX_A} A, got {wavelength.min():.2f}-{wavelength.max():.2f} A"
        )
    return index


#: Coadd FIBERMAP column with the point-source fiber fraction (desispec coaddition: the mean over exposures of
#: the frames' PSF_TO_FIBER_SPECFLUX).
_PSF_TO_FIBER_COLUMN = "MEAN_PSF_TO_FIBER_SPECFLUX"


def read_desi_coadd(path: str | Path, *, require_fibermap: bool = False, keep_arms: bool = False) -> DesiCoadd:
    """Read a DESI coadd file and merge its b, r, z arms onto the 7781-pixel model grid.

    Parameters
    ----------
    path : str or Path
        A ``coadd-*.fits`` file (HDUs FIBERMAP, {B,R,Z}_WAVELENGTH, _FLUX, _IVAR, _MASK, ...).
    require_fibermap : bool
        If True a file without FIBERMAP is refused; otherwise it is read with a
        :class:`GalspecFormatWarning` and NaN fiber positions.
    keep_arms : bool
        Also return the per-arm arrays as stored (``DesiCoadd.arms``).

    Returns
    -------
    DesiCoadd
        ``flux``, ``ivar``, ``mask`` of shape (N, 7781). Where arms overlap, the merged flux is
        sum(ivar_arm * flux_arm) / sum(ivar_arm) over pixels with mask 0, finite flux and ivar > 0,
        and the merged ivar is sum(ivar_arm). The flux is the file's, calibrated for point sources;
        ``psf_to_fiber`` (FIBERMAP MEAN_PSF_TO_FIBER_SPECFLUX) converts it to the fiber flux.

    Raises
    ------
    GalspecFormatError
        Unreadable file, missing HDU or column, arrays of inconsistent shape, wavelengths off the grid.
    """
    path = Path(path)
    with _open_fits(path) as hdul:
        n_pix = C.DESI_NUM_PIXELS
        sum_ivar = sum_flux = mask_or = None
        n_nonfinite = n_negative = None
        arms: dict = {}
        n_spec = None
        for arm in DESI_ARMS:
            name = arm.upper()
            wavelength = _image(hdul, path, f"{name}_WAVELENGTH", 1, f"the {arm} arm wavelength", np.float64)
            flux = _image(hdul, path, f"{name}_FLUX", 2, f"the {arm} arm flux (N, n_wavelength)")
            ivar = _image(hdul, path, f"{name}_IVAR", 2, f"the {arm} arm inverse variance (N, n_wavelength)")
            if f"{name}_MASK" in hdul:
                mask = _image(hdul, path, f"{name}_MASK", 2, f"the {arm} arm mask (N, n_wavelength)", np.int32)
            else:
                mask = np.zeros(flux.shape, np.int32)
            for hdu_name, array in ((f"{name}_FLUX", flux), (f"{name}_IVAR", ivar), (f"{name}_MASK", mask)):
                if array.shape[1] != wavelength.size or (n_spec is not None and array.shape[0] != n_spec):
                    raise GalspecFormatError(
                        f"{path}: HDU {hdu_name}: expected shape ({n_spec or 'N'}, {wavelength.size}) "
                        f"to match {name}_WAVELENGTH and the other arms, got {array.shape}"
                    )
            n_spec = flux.shape[0]
            index = _arm_grid_index(wavelength, path, f"{name}_WAVELENGTH")
            if sum_ivar is None:
                sum_ivar = np.zeros((n_spec, n_pix), np.float64)
                sum_flux = np.zeros((n_spec, n_pix), np.float64)
                mask_or = np.zeros((n_spec, n_pix), np.int32)
                n_nonfinite = np.zeros(n_spec, np.int64)
                n_negative = np.zeros(n_spec, np.int64)
            finite = np.isfinite(flux) & np.isfinite(ivar)
            n_nonfinite += (~np.isfinite(flux)).sum(axis=1)
            n_negative += (ivar < 0).sum(axis=1)
            weight = np.where(finite & (mask == 0) & (ivar > 0), ivar, 0.0)
            sum_ivar[:, index] += weight
            sum_flux[:, index] += weight * np.where(finite, flux, 0.0)
            mask_or[:, index] |= mask
            if keep_arms:
                arms[arm] = {"wavelength": wavelength, "flux": flux, "ivar": ivar, "mask": mask}

        with np.errstate(invalid="ignore", divide="ignore"):
            merged_flux = np.where(sum_ivar > 0, sum_flux / sum_ivar, 0.0).astype(np.float32)
        merged_mask = np.where(sum_ivar > 0, 0, mask_or).astype(np.int32)
        merged_ivar = sum_ivar.astype(np.float32)

        fibermap = None
        if "FIBERMAP" in hdul:
            columns = ("TARGETID", "TARGET_RA", "TARGET_DEC", "MEAN_FIBER_RA", "MEAN_FIBER_DEC")
            data = _table(hdul, path, "FIBERMAP", columns, "one row per spectrum with target and fiber positions")
            if len(data) != n_spec:
                raise GalspecFormatError(
                    f"{path}: HDU FIBERMAP: expected {n_spec} rows (one per spectrum), got {len(data)}"
                )
            fibermap = Table(data)
            targetid = np.asarray(data["TARGETID"], np.int64)
            target_ra = np.asarray(data["TARGET_RA"], np.float64)
            target_dec = np.asarray(data["TARGET_DEC"], np.float64)
            fiber_ra = np.asarray(data["MEAN_FIBER_RA"], np.float64)
            fiber_dec = np.asarray(data["MEAN_FIBER_DEC"], np.float64)
            names = {n.upper() for n in data.columns.names}
            status = (
                np.asarray(data["COADD_FIBERSTATUS"], np.int64)
                if "COADD_FIBERSTATUS" in names
                else np.zeros(n_spec, np.int64)
            )
            psf_to_fiber = (
                np.asarray(data[_PSF_TO_FIBER_COLUMN], np.float64)
                if _PSF_TO_FIBER_COLUMN in names
                else np.full(n_spec, np.nan)
            )
        else:
            if require_fibermap:
                raise GalspecFormatError(f"{path}: missing HDU FIBERMAP (expected target IDs and fiber positions)")
            warnings.warn(
                f"{path}: no FIBERMAP HDU; spectra read without target IDs or fiber positions",
                GalspecFormatWarning,
                stacklevel=2,
            )
            targetid = np.full(n_spec, -1, np.int64)
            if "SCORES" in hdul and "TARGETID" in hdul["SCORES"].columns.names:
                targetid = np.asarray(hdul["SCORES"].data["TARGETID"], np.int64)
            target_ra = target_dec = fiber_ra = fiber_dec = np.full(n_spec, np.nan)
            status = np.full(n_spec, -1, np.int64)
            psf_to_fiber = np.full(n_spec, np.nan)

        header = hdul[0].header
        survey, program, healpix = str(header.get("SURVEY", "")), str(header.get("PROGRAM", "")), -1
        if "HPXPIXEL" in header:
            healpix = int(header["HPXPIXEL"])
        parsed = parse_desi_healpix_name(path)
        if parsed is not None:
            survey, program, healpix = (
                survey or parsed[0],
                program or parsed[1],
                healpix if healpix >= 0 else parsed[2],
            )

    return DesiCoadd(
        path=path,
        targetid=targetid,
        wavelength=desi_wavelength_grid(),
        flux=merged_flux,
        ivar=merged_ivar,
        mask=merged_mask,
        target_ra=target_ra,
        target_dec=target_dec,
        fiber_ra=fiber_ra,
        fiber_dec=fiber_dec,
        fiber_offset_arcsec=fiber_offset_arcsec(target_ra, target_dec, fiber_ra, fiber_dec),
        coadd_fiberstatus=status,
        n_nonfinite_flux=n_nonfinite,
        n_negative_ivar=n_negative,
        psf_to_fiber=psf_to_fiber,
        fibermap=fibermap,
        survey=survey,
        program=program,
        healpix=healpix,
        arms=arms if keep_arms else None,
    )


# ----------------------------------------------------------------------------------------
# DESI redrock
# ----------------------------------------------------------------------------------------
@dataclass
class RedrockCatalog:
    """The REDSHIFTS table of a redrock file.

    Attributes
    ----------
    path : Path
    targetid : ndarray, shape (N,), int64
    z, zerr : ndarray, shape (N,), float64
    zwarn : ndarray, shape (N,), int64
        DESI convention: 0 = no warning (MultimodalUniverse stores the inverse as a bool).
    spectype : ndarray, shape (N,), str
        "GALAXY", "QSO" or "STAR".
    deltachi2 : ndarray, shape (N,), float64
    """

    path: Path
    targetid: np.ndarray
    z: np.ndarray
    zerr: np.ndarray
    zwarn: np.ndarray
    spectype: np.ndarray
    deltachi2: np.ndarray

    def __len__(self) -> int:
        return len(self.targetid)


def read_redrock(path: str | Path) -> RedrockCatalog:
    """Read the REDSHIFTS table of a DESI redrock file (TARGETID, Z, ZERR, ZWARN, SPECTYPE, DELTACHI2)."""
    path = Path(path)
    columns = ("TARGETID", "Z", "ZERR", "ZWARN", "SPECTYPE", "DELTACHI2")
    with _open_fits(path) as hdul:
        data = _table(hdul, path, "REDSHIFTS", columns, "redrock redshifts")
        return RedrockCatalog(
            path=path,
            targetid=np.asarray(data["TARGETID"], np.int64),
            z=np.asarray(data["Z"], np.float64),
            zerr=np.asarray(data["ZERR"], np.float64),
            zwarn=np.asarray(data["ZWARN"], np.int64),
            spectype=np.char.strip(_strings(data["SPECTYPE"])),
            deltachi2=np.asarray(data["DELTACHI2"], np.float64),
        )


# ----------------------------------------------------------------------------------------
# Legacy Surveys cutout
# ----------------------------------------------------------------------------------------
@dataclass
class LegacyCutout:
    """A Legacy Surveys FITS cutout.

    Attributes
    ----------
    path : Path
    image : ndarray, shape (n_bands, H, W), float32
        Nanomaggies per pixel.
    bands : tuple of str
        Band of each image plane, from the header (BANDS or BAND0, BAND1, ...).
    wcs : astropy.wcs.WCS
        The celestial (2-D) WCS of the image.
    pixel_scale_arcsec : float
        Mean pixel size on the sky, from the WCS.

    Sky offsets are tangent-plane offsets in arcsec, east (+RA) and north (+Dec), from the
    cutout centre (the sky position of the central pixel through the WCS), never from array
    orientation.
    """

    path: Path
    image: np.ndarray
    bands: tuple[str, ...]
    wcs: WCS
    pixel_scale_arcsec: float
    header: fits.Header = field(repr=False, default=None)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return self.image.shape[-2], self.image.shape[-1]

    @cached_property
    def center_radec(self) -> tuple[float, float]:
        """(RA, Dec) in degrees of the central pixel, (W-1)/2, (H-1)/2 in 0-based pixels, through the WCS."""
        height, width = self.shape
        ra, dec = self.wcs.wcs_pix2world([[(width - 1) / 2.0, (height - 1) / 2.0]], 0)[0]
        return float(ra), float(dec)

    @property
    def center(self) -> SkyCoord:
        """The cutout centre as a SkyCoord (see :attr:`center_radec`)."""
        return SkyCoord(*self.center_radec, unit="deg")

    def sky_to_offset_arcsec(self, ra, dec) -> np.ndarray:
        """(RA, Dec) in degrees, each shape (...) -> offsets from the centre, shape (..., 2), arcsec east/north."""
        return tangent_plane_offsets_arcsec(ra, dec, *self.center_radec)

    def offset_arcsec_to_sky(self, offset_arcsec) -> tuple[np.ndarray, np.ndarray]:
        """Offsets from the centre, shape (..., 2) arcsec east/north -> (RA, Dec) in degrees, each shape (...)."""
        return tangent_plane_to_sky(offset_arcsec, *self.center_radec)

    def pixel_to_offset_arcsec(self, x, y) -> np.ndarray:
        """0-based pixel coordinates (x = column, y = row) -> offsets from the centre, shape (..., 2), arcsec."""
        ra, dec = self.wcs.wcs_pix2world(np.asarray(x, float), np.asarray(y, float), 0)
        return self.sky_to_offset_arcsec(ra, dec)

    def crop_center(self, size: int) -> LegacyCutout:
        """A (n_bands, size, size) cutout with the same centre; the WCS is sliced to match.

        Raises GalspecFormatError when the image is smaller than ``size`` or when ``H - size`` or
        ``W - size`` is odd (the centre would move by half a pixel).
        """
        height, width = self.shape
        if height < size or width < size or (height - size) % 2 or (width - size) % 2:
            raise GalspecFormatError(
                f"{self.path}: HDU PRIMARY: image is {height}x{width} pixels, expected {size}x{size} "
                f"or larger by an even number of pixels (for a centred crop)"
            )
        y0, x0 = (height - size) // 2, (width - size) // 2
        wcs = self.wcs.deepcopy()
        wcs.wcs.crpix = wcs.wcs.crpix - np.array([x0, y0], float)  # pixel (x0, y0) becomes pixel (0, 0)
        wcs.pixel_shape = (size, size)
        return LegacyCutout(
            path=self.path,
            image=np.ascontiguousarray(self.image[:, y0 : y0 + size, x0 : x0 + size]),
            bands=self.bands,
            wcs=wcs,
            pixel_scale_arcsec=self.pixel_scale_arcsec,
            header=self.header,
        )

    def offset_arcsec_to_pixel(self, offset_arcsec) -> tuple[np.ndarray, np.ndarray]:
        """Offsets from the centre, shape (..., 2) arcsec -> 0-based pixel coordinates (x, y)."""
        ra, dec = self.offset_arcsec_to_sky(offset_arcsec)
        x, y = self.wcs.wcs_world2pix(ra, dec, 0)
        return np.asarray(x), np.asarray(y)


def _cutout_bands(header: fits.Header, n_planes: int, path: Path, hdu_name: str) -> tuple[str, ...]:
    bands = [str(header[f"BAND{i}"]).strip() for i in range(n_planes) if f"BAND{i}" in header]
    if len(bands) != n_planes and "BANDS" in header:
        bands = list(str(header["BANDS"]).strip())
    if len(bands) != n_planes:
        raise GalspecFormatError(
            f"{path}: HDU {hdu_name}: header keywords BANDS / BAND0..BAND{n_planes - 1} name "
            f"{len(bands)} bands, expected one per image plane ({n_planes})"
        )
    return tuple(bands)


def read_legacy_cutout(path: str | Path, *, bands: tuple[str, ...] | None = None, hdu: int | str = 0) -> LegacyCutout:
    """Read a Legacy Surveys FITS cutout (``fits-cutout`` service, ``bands=grz``).

    Parameters
    ----------
    path : str or Path
    bands : tuple of str, optional
        Bands required, in this order (e.g. ``("g", "r", "z")``); the planes are reordered to
        match and a missing band raises :class:`GalspecFormatError`.
    hdu : int or str
        HDU holding the image; the service writes it in the primary HDU.

    Returns
    -------
    LegacyCutout
        ``image`` (n_bands, H, W) float32 in nanomaggies; a single-band 2-D image becomes (1, H, W).
    """
    path = Path(path)
    with _open_fits(path) as hdul:
        if (isinstance(hdu, int) and hdu >= len(hdul)) or (isinstance(hdu, str) and hdu not in hdul):
            raise GalspecFormatError(f"{path}: missing HDU {hdu} (expected the cutout image)")
        hdu_name = hdul[hdu].name
        header = hdul[hdu].header.copy()
        try:
            data = hdul[hdu].data
        except Exception as error:
            raise GalspecFormatError(
                f"{path}: HDU {hdu_name}: image unreadable, truncated or corrupt ({error})"
            ) from error
    if data is None or data.ndim not in (2, 3):
        shape = None if data is None else data.shape
        raise GalspecFormatError(f"{path}: HDU {hdu_name}: expected an image of shape (bands, H, W), got {shape}")
    image = np.asarray(data, np.float32)
    if image.ndim == 2:
        image = image[None]
    file_bands = _cutout_bands(header, image.shape[0], path, hdu_name)
    unit = str(header.get("BUNIT", "nanomaggy")).strip().lower()
    if "nanomagg" not in unit:
        raise GalspecFormatError(f"{path}: HDU {hdu_name}: BUNIT is {unit!r}, expected nanomaggies")
    if bands is not None:
        missing = [b for b in bands if b not in file_bands]
        if missing:
            raise GalspecFormatError(
                f"{path}: HDU {hdu_name}: missing band(s) {missing}; "
                f"header names {list(file_bands)}, expected {list(bands)}"
            )
        image = image[[file_bands.index(b) for b in bands]]
        file_bands = tuple(bands)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FITSFixedWarning on DATE-OBS etc.
            wcs = WCS(header, naxis=2)
    except Exception as error:
        raise GalspecFormatError(f"{path}: HDU {hdu_name}: invalid WCS ({error})") from error
    if not wcs.has_celestial or not wcs.is_celestial:
        raise GalspecFormatError(f"{path}: HDU {hdu_name}: expected a celestial WCS (CTYPE1/2 RA---TAN, DEC--TAN)")
    scale = float(np.mean(proj_plane_pixel_scales(wcs)) * _ARCSEC_PER_DEG)
    return LegacyCutout(path=path, image=image, bands=file_bands, wcs=wcs, pixel_scale_arcsec=scale, header=header)


# ----------------------------------------------------------------------------------------
# MaNGA
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


def _celestial_wcs(header: fits.Header, path: Path, hdu_name: str) -> WCS:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header)
    except Exception as error:
        raise GalspecFormatError(f"{path}: HDU {hdu_name}: invalid WCS ({error})") from error
    if not wcs.has_celestial:
        raise GalspecFormatError(f"{path}: HDU {hdu_name}: expected a celestial WCS (RA---TAN, DEC--TAN)")
    return wcs.celestial


def read_manga_cube(path: str | Path) -> MangaCube:
    """Read a MaNGA DRP LOGCUBE (HDUs FLUX, IVAR, MASK, WAVE; 0.5 arcsec spaxels).

    Returns
    -------
    MangaCube
        ``flux``, ``ivar``, ``mask`` of shape (n_wave, ny, nx) and ``wavelength`` (n_wave,).
    """
    path = Path(path)
    with _open_fits(path) as hdul:
        flux = _image(hdul, path, "FLUX", 3, "flux cube (n_wave, ny, nx)")
        ivar = _image(hdul, path, "IVAR", 3, "inverse-variance cube (n_wave, ny, nx)")
        mask = _image(hdul, path, "MASK", 3, "mask cube (n_wave, ny, nx)", np.int32)
        wavelength = _image(hdul, path, "WAVE", 1, "vacuum wavelength (n_wave,)", np.float64)
        for name, array in (("IVAR", ivar), ("MASK", mask)):
            if array.shape != flux.shape:
                raise GalspecFormatError(
                    f"{path}: HDU {name}: expected shape {flux.shape} like FLUX, got {array.shape}"
                )
        if wavelength.size != flux.shape[0]:
            raise GalspecFormatError(
                f"{path}: HDU WAVE: expected {flux.shape[0]} wavelengths (FLUX axis 3), got {wavelength.size}"
            )
        header = hdul["FLUX"].header.copy()
        primary = hdul[0].header
        wcs = _celestial_wcs(header, path, "FLUX")
        center = _center_from_header(primary if "OBJRA" in primary else header, wcs)
    ny, nx = flux.shape[1:]
    scale = float(np.mean(proj_plane_pixel_scales(wcs)) * _ARCSEC_PER_DEG)
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


def _channel_names(header: fits.Header, n_channels: int, path: Path, hdu_name: str) -> tuple[str, ...]:
    names = []
    for i in range(1, n_channels + 1):
        for key in (f"C{i:02d}", f"C{i}"):
            if key in header:
                names.append(str(header[key]).strip())
                break
        else:
            raise GalspecFormatError(f"{path}: HDU {hdu_name}: missing header keyword C{i:02d} (name of channel {i})")
    return tuple(names)


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
        for name, array in (("EMLINE_GFLUX_IVAR", ivar), ("EMLINE_GFLUX_MASK", mask), ("EMLINE_GVEL", gvel)):
            if array.shape != flux.shape:
                raise GalspecFormatError(f"{path}: HDU {name}: expected shape {flux.shape}, got {array.shape}")
        for name, array in (("EMLINE_GVEL_MASK", gvel_mask),):
            if array.shape != flux.shape:
                raise GalspecFormatError(f"{path}: HDU {name}: expected shape {flux.shape}, got {array.shape}")
        if skycoo.shape[0] != 2 or skycoo.shape[1:] != flux.shape[1:]:
            raise GalspecFormatError(f"{path}: HDU SPX_SKYCOO: expected shape (2, {flux.shape[1]}, {flux.shape[2]})")
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
        wavelength = _image(hdul, path, "WAVE", 1, "vacuum wavelength (n_wave,)", np.float64)
        flux = _image(hdul, path, "FLUX", 2, "flux (N, n_wave)")
        ivar = _image(hdul, path, "IVAR", 2, "inverse variance (N, n_wave)")
        mask = _image(hdul, path, "MASK", 2, "mask (N, n_wave)", np.int32)
        sres = _image(hdul, path, "SRES", 2, "spectral resolution (N, n_wave)", np.float64)
        redshift = _image(hdul, path, "Z", 1, "redshift per spectrum (N,)", np.float64)
    for name, array in (("FLUX", flux), ("IVAR", ivar), ("MASK", mask), ("SRES", sres)):
        if array.shape != (redshift.size, wavelength.size):
            raise GalspecFormatError(
                f"{path}: HDU {name}: expected shape ({redshift.size}, {wavelength.size}) "
                f"from Z and WAVE, got {array.shape}"
            )
    return MangaSpectra(path, wavelength, flux, ivar, mask, sres, redshift)


# ----------------------------------------------------------------------------------------
# SDSS
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
