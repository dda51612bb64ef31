"""Calzetti et al. (2000, ApJ 533, 682) starburst attenuation law."""

from __future__ import annotations

import numpy as np

from ..constants import CALZETTI_BLUE_COEFFS, CALZETTI_RED_COEFFS, CALZETTI_RV


def calzetti_k(wavelength_rest: np.ndarray) -> np.ndarray:
    """Calzetti (2000) k'(lambda) = A(lambda) / E_s(B-V), eq. 4.

    Parameters
    ----------
    wavelength_rest : (...,) array, rest-frame vacuum Angstrom. Outside 0.12-2.2 micron the
        polynomials are extrapolated linearly in 1/lambda (a smooth continuation; the law is not
        defined there) and k' is floored at 0.

    Returns
    -------
    (...,) array of k'(lambda), dimensionless.
    """
    wavelength_rest = np.asarray(wavelength_rest, dtype=np.float64)
    if np.any(wavelength_rest <= 0):
        raise ValueError("wavelength_rest must be positive (Angstrom)")
    x = 1e4 / wavelength_rest  # inverse micron
    c0, c1, c2, c3 = CALZETTI_BLUE_COEFFS
    blue = 2.659 * (c0 + c1 * x + c2 * x**2 + c3 * x**3) + CALZETTI_RV
    d0, d1 = CALZETTI_RED_COEFFS
    red = 2.659 * (d0 + d1 * x) + CALZETTI_RV
    # below 0.12 micron continue the blue branch linearly from its value and slope at 0.12 micron
    x_uv = 1.0 / 0.12
    k_uv = 2.659 * (c0 + c1 * x_uv + c2 * x_uv**2 + c3 * x_uv**3) + CALZETTI_RV
    slope_uv = 2.659 * (c1 + 2 * c2 * x_uv + 3 * c3 * x_uv**2)
    uv = k_uv + slope_uv * (x - x_uv)
    k = np.where(wavelength_rest >= 6300.0, red, np.where(wavelength_rest >= 1200.0, blue, uv))
    return np.maximum(k, 0.0)


def calzetti_transmission(wavelength_rest: np.ndarray, ebv: float | np.ndarray) -> np.ndarray:
    """Fraction of light transmitted, 10**(-0.4 k'(lambda) E(B-V)).

    Parameters
    ----------
    wavelength_rest : (N,) rest-frame vacuum Angstrom.
    ebv : scalar or (...,) colour excess E_s(B-V) >= 0 in magnitudes; broadcast as ebv[..., None].

    Returns
    -------
    (..., N) array in [0, 1].
    """
    ebv = np.asarray(ebv, dtype=np.float64)
    if np.any(ebv < 0) or not np.all(np.isfinite(ebv)):
        raise ValueError("ebv must be finite and >= 0")
    return 10.0 ** (-0.4 * calzetti_k(wavelength_rest) * ebv[..., None])
