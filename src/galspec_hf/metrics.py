"""Metrics for predicted spectra with uncertainties, as plain functions.

All take arrays of the same shape (any shape, e.g. (batch, L)): the observed flux and its inverse
variance, and the predicted mean and sigma_model. Pixels with ivar <= 0 (or non-finite values) are
ignored. The predictive variance of a pixel is sigma_model**2 + 1/ivar (DESIGN.md).
"""

from __future__ import annotations

import math

import numpy as np


def _as_arrays(observed, ivar, mean, sigma):
    arrays = [np.asarray(a, dtype=np.float64) for a in (observed, ivar, mean, sigma)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"observed, ivar, mean and sigma must have the same shape, got {[a.shape for a in arrays]}")
    observed, ivar, mean, sigma = arrays
    good = np.isfinite(observed) & np.isfinite(ivar) & (ivar > 0) & np.isfinite(mean) & np.isfinite(sigma)
    variance = np.where(good, sigma**2 + 1.0 / np.where(good, ivar, 1.0), 1.0)
    return observed, mean, variance, good


def spectral_nll(observed, ivar, mean, sigma) -> float:
    """Mean Gaussian negative log-likelihood per good pixel, with variance sigma**2 + 1/ivar."""
    observed, mean, variance, good = _as_arrays(observed, ivar, mean, sigma)
    if not good.any():
        return float("nan")
    nll = 0.5 * (np.log(2 * math.pi * variance) + (observed - mean) ** 2 / variance)
    return float(nll[good].mean())


def reduced_chi2(observed, ivar, mean, sigma) -> float:
    """Mean of (observed - mean)**2 / (sigma**2 + 1/ivar) over good pixels (1 for calibrated errors)."""
    observed, mean, variance, good = _as_arrays(observed, ivar, mean, sigma)
    if not good.any():
        return float("nan")
    return float(((observed - mean) ** 2 / variance)[good].mean())


def coverage(observed, ivar, mean, sigma, n_sigma: float = 1.0) -> float:
    """Fraction of good pixels with |observed - mean| <= n_sigma * sqrt(sigma**2 + 1/ivar).

    A calibrated Gaussian prediction gives 0.683 at 1 sigma and 0.954 at 2 sigma.
    """
    observed, mean, variance, good = _as_arrays(observed, ivar, mean, sigma)
    if not good.any():
        return float("nan")
    inside = np.abs(observed - mean) <= n_sigma * np.sqrt(variance)
    return float(inside[good].mean())


def spectral_metrics(observed, ivar, mean, sigma) -> dict[str, float]:
    """NLL, reduced chi-square and coverage at 1 and 2 sigma, in one dict."""
    return {
        "nll": spectral_nll(observed, ivar, mean, sigma),
        "reduced_chi2": reduced_chi2(observed, ivar, mean, sigma),
        "coverage_1sigma": coverage(observed, ivar, mean, sigma, 1.0),
        "coverage_2sigma": coverage(observed, ivar, mean, sigma, 2.0),
        "num_pixels": int(_as_arrays(observed, ivar, mean, sigma)[3].sum()),
    }
