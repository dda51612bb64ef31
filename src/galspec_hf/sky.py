"""Sky offsets: positions on the sky as offsets in arcsec east (+RA) and north (+Dec) of a centre.

The one home of the package's sky-offset geometry (docs/ARCHITECTURE.md, conventions): the fiber offset
of a DESI spectrum from its target, and the gnomonic (tangent-plane, TAN) projection between (RA, Dec)
and offsets from a centre, with the flat-sky inverse of the fiber offset; and the arithmetic of centred
crops of images, which keep the image centre (the origin of every offset) on the same sky position.
All angles in degrees, offsets in arcsec.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "centred_crop",
    "centred_crop_corner",
    "fiber_offset_arcsec",
    "fiber_sky_position",
    "tangent_plane_offsets_arcsec",
    "tangent_plane_to_sky",
]

_ARCSEC_PER_DEG = 3600.0


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


def fiber_sky_position(target_ra, target_dec, east_arcsec, north_arcsec) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`fiber_offset_arcsec`: (RA, Dec) in degrees of a point offset east and north (arcsec) of a
    target, in the same flat-sky (small-angle) approximation: (ra + east / cos(dec) / 3600, dec + north / 3600)."""
    dec = np.asarray(target_dec, float)
    ra = np.asarray(target_ra, float) + np.asarray(east_arcsec, float) / _ARCSEC_PER_DEG / np.cos(np.deg2rad(dec))
    return ra, dec + np.asarray(north_arcsec, float) / _ARCSEC_PER_DEG


# ----------------------------------------------------------------------------------------
# Centred crops
# ----------------------------------------------------------------------------------------
def centred_crop_corner(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left): first row and column of the size x size window centred in a height x width image.

    ``((height - size) // 2, (width - size) // 2)``; when ``height - size`` (or ``width - size``) is odd the
    window's centre sits half a pixel from the image centre, towards row (column) 0.
    """
    return (height - size) // 2, (width - size) // 2


def centred_crop(image, size: int):
    """The central size x size pixels of an (..., H, W) array (numpy or torch), a view (see
    :func:`centred_crop_corner`); raises ValueError when the image is smaller than ``size``."""
    height, width = image.shape[-2:]
    if height < size or width < size:
        raise ValueError(f"centred_crop: image is {height}x{width} pixels, smaller than {size}x{size}")
    top, left = centred_crop_corner(height, width, size)
    return image[..., top : top + size, left : left + size]
