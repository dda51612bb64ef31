"""Legacy Surveys image cutouts (the ``fits-cutout`` service): a (bands, H, W) image in nanomaggies with a TAN WCS.

read_legacy_cutout / write_legacy_cutout. Sky offsets are tangent-plane offsets in arcsec east (+RA) and north
(+Dec) from the cutout centre (docs/ARCHITECTURE.md); the header layout is the one of the real cutout
../shared/data/legacysurvey/legacysurvey-dr9-grz-357.9087-54.8817.fits.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from .. import constants as C
from ..errors import GalSpecFormatError
from ..sky import centred_crop, centred_crop_corner, tangent_plane_offsets_arcsec, tangent_plane_to_sky
from ._fits import ARCSEC_PER_DEG, _open_fits, primary_hdu, set_cards

__all__ = ["LegacyCutout", "cutout_header", "read_legacy_cutout", "write_legacy_cutout"]


# ----------------------------------------------------------------------------------------
# Reader
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

        Raises GalSpecFormatError when the image is smaller than ``size`` or when ``H - size`` or
        ``W - size`` is odd (the centre would move by half a pixel).
        """
        height, width = self.shape
        if height < size or width < size or (height - size) % 2 or (width - size) % 2:
            raise GalSpecFormatError(
                f"{self.path}: HDU PRIMARY: image is {height}x{width} pixels, expected {size}x{size} "
                f"or larger by an even number of pixels (for a centred crop)"
            )
        y0, x0 = centred_crop_corner(height, width, size)
        wcs = self.wcs.deepcopy()
        wcs.wcs.crpix = wcs.wcs.crpix - np.array([x0, y0], float)  # pixel (x0, y0) becomes pixel (0, 0)
        wcs.pixel_shape = (size, size)
        return LegacyCutout(
            path=self.path,
            image=np.ascontiguousarray(centred_crop(self.image, size)),
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
        raise GalSpecFormatError(
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
        match and a missing band raises :class:`GalSpecFormatError`.
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
            raise GalSpecFormatError(f"{path}: missing HDU {hdu} (expected the cutout image)")
        hdu_name = hdul[hdu].name
        header = hdul[hdu].header.copy()
        try:
            data = hdul[hdu].data
        except Exception as error:
            raise GalSpecFormatError(
                f"{path}: HDU {hdu_name}: image unreadable, truncated or corrupt ({error})"
            ) from error
    if data is None or data.ndim not in (2, 3):
        shape = None if data is None else data.shape
        raise GalSpecFormatError(f"{path}: HDU {hdu_name}: expected an image of shape (bands, H, W), got {shape}")
    image = np.asarray(data, np.float32)
    if image.ndim == 2:
        image = image[None]
    file_bands = _cutout_bands(header, image.shape[0], path, hdu_name)
    unit = str(header.get("BUNIT", "nanomaggy")).strip().lower()
    if "nanomagg" not in unit:
        raise GalSpecFormatError(f"{path}: HDU {hdu_name}: BUNIT is {unit!r}, expected nanomaggies")
    if bands is not None:
        missing = [b for b in bands if b not in file_bands]
        if missing:
            raise GalSpecFormatError(
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
        raise GalSpecFormatError(f"{path}: HDU {hdu_name}: invalid WCS ({error})") from error
    if not wcs.has_celestial or not wcs.is_celestial:
        raise GalSpecFormatError(f"{path}: HDU {hdu_name}: expected a celestial WCS (CTYPE1/2 RA---TAN, DEC--TAN)")
    scale = float(np.mean(proj_plane_pixel_scales(wcs)) * ARCSEC_PER_DEG)
    return LegacyCutout(path=path, image=image, bands=file_bands, wcs=wcs, pixel_scale_arcsec=scale, header=header)


# ----------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------
def cutout_header(
    ra_deg: float,
    dec_deg: float,
    height: int,
    width: int,
    *,
    bands: str = "".join(C.LEGACY_BANDS),
    pixel_scale_arcsec: float = C.LEGACY_PIXEL_SCALE_ARCSEC,
    east_left: bool = True,
    cards: Mapping | fits.Header | None = None,
) -> fits.Header:
    """Header of a Legacy Surveys cutout of ``height`` x ``width`` pixels centred on (ra_deg, dec_deg).

    The keywords and comments of the real DR9 cutout: SURVEY, VERSION, IMAGETYP, BANDS, BAND0.., a TAN WCS with
    CRPIX at the array centre and a CD matrix (CD1_1 < 0 when ``east_left``, the service's orientation; False
    flips it), IMAGEW, IMAGEH; then ``cards`` (keyword -> value or (value, comment)), which may replace any of them.
    """
    scale = pixel_scale_arcsec / ARCSEC_PER_DEG
    header = fits.Header()
    header["SURVEY"] = "LegacySurvey"
    header["VERSION"] = "DR9"
    header["IMAGETYP"] = ("IMAGE", "None")
    header["BANDS"] = bands
    for i, band in enumerate(bands):
        header[f"BAND{i}"] = band
    header["CTYPE1"] = ("RA---TAN", "TANgent plane")
    header["CTYPE2"] = ("DEC--TAN", "TANgent plane")
    header["CRVAL1"] = (float(ra_deg), "Reference RA")
    header["CRVAL2"] = (float(dec_deg), "Reference Dec")
    header["CRPIX1"] = (width / 2 + 0.5, "Reference x")
    header["CRPIX2"] = (height / 2 + 0.5, "Reference y")
    header["CD1_1"] = (-scale if east_left else scale, "CD matrix")
    header["CD1_2"] = (0.0, "CD matrix")
    header["CD2_1"] = (0.0, "CD matrix")
    header["CD2_2"] = (scale, "CD matrix")
    header["IMAGEW"] = (float(width), "Image width")
    header["IMAGEH"] = (float(height), "Image height")
    return set_cards(header, cards)


def write_legacy_cutout(path: str | Path, image: np.ndarray, *, ra_deg: float, dec_deg: float, **options) -> Path:
    """Write a (len(bands), H, W) image in nanomaggies per pixel as a Legacy Surveys cutout (primary HDU only).

    The header is :func:`cutout_header` centred on (ra_deg, dec_deg), with its keyword ``options`` (``bands``,
    default "grz"; ``pixel_scale_arcsec``; ``east_left``; ``cards``); the image is stored as float32.
    """
    image = np.asarray(image, np.float32)
    bands = options.get("bands", "".join(C.LEGACY_BANDS))
    if image.ndim != 3 or image.shape[0] != len(bands):
        raise ValueError(
            f"write_legacy_cutout: image must be ({len(bands)}, H, W) for bands {bands!r}, got {image.shape}"
        )
    if not (np.isfinite(ra_deg) and np.isfinite(dec_deg)):
        raise ValueError(f"write_legacy_cutout: ra_deg and dec_deg must be finite, got {ra_deg}, {dec_deg}")
    primary_hdu(cutout_header(ra_deg, dec_deg, *image.shape[1:], **options), image).writeto(path, overwrite=True)
    return Path(path)
