"""Spectral physics shared by the simulator, the line fitter, the data code and the processor.

The one home (docs/ARCHITECTURE.md, conventions) of: pixel edges of a wavelength grid, flux-conserving
rebinning, the instrumental line-spread functions (LSF) of MaNGA and DESI, and AB photometry (nanomaggies,
AB magnitudes and flux densities). Wavelengths are vacuum Angstrom, flux densities 1e-17 erg/s/cm2/A unless
a name says ``cgs`` (erg/s/cm2/A) or ``f_nu`` (erg/s/cm2/Hz).

The Hub-shipped processor (``models/galspec/processing_galspec.py``) must stay self-contained and keeps its own
copies of :func:`pixel_edges` and :func:`nanomaggies_to_flux_density`; tests/test_spectral.py checks that the
copies equal these functions.
"""

from __future__ import annotations

import numpy as np

from . import constants as C

__all__ = [
    "ab_mag_to_f_nu",
    "desi_sigma_kms",
    "desi_sigma_pix",
    "f_nu_to_nanomaggies",
    "manga_resolution",
    "manga_sigma_kms",
    "nanomaggies_to_flux_density",
    "pixel_edges",
    "rebin_flux_conserving",
    "resolution_to_sigma_kms",
]

#: The AB zero point as a flux density, erg/s/cm2/Hz.
_AB_ZEROPOINT_F_NU = C.AB_ZEROPOINT_JY * C.JANSKY_ERG_S_CM2_HZ
#: One nanomaggy (AB magnitude 22.5) as a flux density, erg/s/cm2/Hz: 3.631e-29.
_NANOMAGGY_F_NU = _AB_ZEROPOINT_F_NU * 10 ** (-0.4 * C.NANOMAGGY_AB_ZEROPOINT)


# ----------------------------------------------------------------------------------------
# Grids
# ----------------------------------------------------------------------------------------
def pixel_edges(wavelength: np.ndarray) -> np.ndarray:
    """Pixel edges (L + 1,) of a grid of pixel centres (L,): midpoints between centres, the end pixels mirrored.

    On a logarithmic grid pass ``log10(wavelength)`` and take ``10 **`` of the result for geometric edges.
    """
    wavelength = np.asarray(wavelength)
    mid = 0.5 * (wavelength[1:] + wavelength[:-1])
    first = wavelength[0] - (mid[0] - wavelength[0])
    last = wavelength[-1] + (wavelength[-1] - mid[-1])
    return np.concatenate([[first], mid, [last]])


def rebin_flux_conserving(
    wavelength_in: np.ndarray, flux_in: np.ndarray, edges_out: np.ndarray, keep_all: bool = False
) -> np.ndarray:
    """Average a sampled flux density over output bins, conserving flux, through its cumulative integral.

    The input is treated as samples of a piecewise-linear function (trapezoidal integral); for binned spectra
    with an inverse variance use :func:`galspec_hf.models.galspec.processing_galspec.resample_spectrum`.

    Parameters
    ----------
    wavelength_in : (N,) array, increasing.
    flux_in : (..., N) array, flux density on ``wavelength_in``.
    edges_out : (M + 1,) array of output bin edges, inside the input range.
    keep_all : return the cumulative integral at ``edges_out`` instead (edges may then be several
        concatenated increasing grids; the caller differences each).

    Returns
    -------
    (..., M) array: mean flux density in each output bin (or (..., M + 1) cumulative integrals).
    """
    widths = np.diff(wavelength_in)
    mid = 0.5 * (flux_in[..., 1:] + flux_in[..., :-1]) * widths
    cumulative = np.concatenate([np.zeros(flux_in.shape[:-1] + (1,)), np.cumsum(mid, axis=-1)], axis=-1)
    if cumulative.ndim == 1:
        at_edges = np.interp(edges_out, wavelength_in, cumulative)
    else:
        at_edges = np.stack([np.interp(edges_out, wavelength_in, row) for row in cumulative])
    if keep_all:
        return at_edges
    return np.diff(at_edges, axis=-1) / np.diff(edges_out)


# ----------------------------------------------------------------------------------------
# Line-spread functions (Gaussian sigma)
# ----------------------------------------------------------------------------------------
def resolution_to_sigma_kms(resolution) -> np.ndarray:
    """Gaussian sigma in km/s of a spectral resolution R = lambda / FWHM: c / (R * 2 sqrt(2 ln 2))."""
    return C.SPEED_OF_LIGHT_KMS / (np.asarray(resolution, float) * C.FWHM_PER_SIGMA)


def manga_resolution(wavelength_a: np.ndarray) -> np.ndarray:
    """MaNGA spectral resolution R = lambda / FWHM at observed vacuum wavelengths (Angstrom), any shape.

    Linear interpolation in :data:`galspec_hf.constants.MANGA_RESOLUTION_TABLE` (the median SRES of real MaNGA
    spaxels; R ~ 1450-2420), constant beyond its ends.
    """
    table = np.asarray(C.MANGA_RESOLUTION_TABLE, float)
    return np.interp(np.asarray(wavelength_a, float), table[:, 0], table[:, 1])


def manga_sigma_kms(wavelength_a: np.ndarray) -> np.ndarray:
    """MaNGA instrumental Gaussian sigma, km/s, at observed vacuum wavelengths (Angstrom): the one MaNGA LSF of the
    simulator's cubes and of the line fitter's default (:func:`manga_resolution`)."""
    return resolution_to_sigma_kms(manga_resolution(wavelength_a))


def desi_sigma_pix(arm: str, wavelength_a: np.ndarray) -> np.ndarray:
    """Line-spread Gaussian sigma (0.8 A pixels) of one DESI arm, linear in wavelength, fit to the real coadd's
    RESOLUTION (:data:`galspec_hf.constants.DESI_RESOLUTION_SIGMA_PIX`)."""
    if arm not in C.DESI_RESOLUTION_SIGMA_PIX:
        raise ValueError(f"arm must be one of {tuple(C.DESI_RESOLUTION_SIGMA_PIX)}, got {arm!r}")
    a, b = C.DESI_RESOLUTION_SIGMA_PIX[arm]
    return a + b * wavelength_a


def desi_sigma_kms(wavelength_a: np.ndarray) -> np.ndarray:
    """DESI instrumental Gaussian sigma in km/s at observed vacuum wavelengths (Angstrom), any shape.

    :func:`desi_sigma_pix` of the arm that covers each wavelength; where two arms overlap the mean of the two,
    outside all arms the nearest arm's formula.
    """
    wavelength_a = np.asarray(wavelength_a, float)
    total = np.zeros_like(wavelength_a)
    count = np.zeros_like(wavelength_a)
    for arm, (lo, hi) in C.DESI_ARMS_A.items():
        inside = (wavelength_a >= lo) & (wavelength_a <= hi)
        total += np.where(inside, desi_sigma_pix(arm, wavelength_a), 0.0)
        count += inside
    outside = np.where(
        wavelength_a < C.DESI_ARMS_A["b"][0], desi_sigma_pix("b", wavelength_a), desi_sigma_pix("z", wavelength_a)
    )
    sigma_pix = np.where(count > 0, total / np.maximum(count, 1), outside)
    return sigma_pix * C.DESI_WAVELENGTH_STEP_A / wavelength_a * C.SPEED_OF_LIGHT_KMS


# ----------------------------------------------------------------------------------------
# AB photometry
# ----------------------------------------------------------------------------------------
def f_nu_to_nanomaggies(f_nu):
    """A flux density f_nu in erg/s/cm2/Hz as nanomaggies (1 nanomaggy = AB magnitude 22.5 = 3.631e-29 cgs)."""
    return f_nu / _AB_ZEROPOINT_F_NU * 1e9


def ab_mag_to_f_nu(magnitude):
    """An AB magnitude as a flux density f_nu, erg/s/cm2/Hz: 3631 Jy x 10**(-0.4 m) (Oke & Gunn 1983)."""
    return _AB_ZEROPOINT_F_NU * 10 ** (-0.4 * np.asarray(magnitude, float))


def nanomaggies_to_flux_density(flux_nanomaggies, wavelength_a):
    """A flux in nanomaggies as a mean flux density in 1e-17 erg/s/cm2/A at ``wavelength_a`` (Angstrom).

    f_lambda = f_nu c / lambda**2 with f_nu = flux_nanomaggies x 3.631e-29 erg/s/cm2/Hz; numbers, numpy arrays
    or torch tensors.
    """
    return flux_nanomaggies * (_NANOMAGGY_F_NU * C.SPEED_OF_LIGHT_A_PER_S / wavelength_a**2 / C.FLUX_UNIT_ERG_S_CM2_A)
