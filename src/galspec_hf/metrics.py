"""Metrics for predicted spectra with uncertainties, as plain functions.

All take arrays of the same shape (any shape, e.g. (batch, L)): the observed flux and its inverse
variance, and the predicted mean and sigma_model. Pixels with ivar <= 0 (or non-finite values) are
ignored. The predictive variance of a pixel is sigma_model**2 + 1/ivar (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import math

import numpy as np


def _standardised(observed, ivar, mean, sigma):
    """Squared standardised residuals, predictive variances and the good-pixel mask, computed once.

    Returns (residual**2 / variance, variance, good), arrays of the common shape; only `good` entries
    are meaningful.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (observed, ivar, mean, sigma)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"observed, ivar, mean and sigma must have the same shape, got {[a.shape for a in arrays]}")
    observed, ivar, mean, sigma = arrays
    good = np.isfinite(observed) & np.isfinite(ivar) & (ivar > 0) & np.isfinite(mean) & np.isfinite(sigma)
    variance = np.where(good, sigma**2 + 1.0 / np.where(good, ivar, 1.0), 1.0)
    squared = np.where(good, observed - mean, 0.0) ** 2 / variance
    return squared, variance, good


def _nll(squared, variance):
    return 0.5 * (np.log(2 * math.pi * variance) + squared)


def _mean_over_good(values, good) -> float:
    return float(values[good].mean()) if good.any() else float("nan")


def spectral_nll(observed, ivar, mean, sigma) -> float:
    """Mean Gaussian negative log-likelihood per good pixel, with variance sigma**2 + 1/ivar."""
    squared, variance, good = _standardised(observed, ivar, mean, sigma)
    return _mean_over_good(_nll(squared, variance), good)


def reduced_chi2(observed, ivar, mean, sigma) -> float:
    """Mean of (observed - mean)**2 / (sigma**2 + 1/ivar) over good pixels (1 for calibrated errors)."""
    squared, _, good = _standardised(observed, ivar, mean, sigma)
    return _mean_over_good(squared, good)


def coverage_curve(observed, ivar, mean, sigma, n_sigmas) -> list[float]:
    """:func:`coverage` at each of `n_sigmas`, from one pass over the arrays."""
    squared, _, good = _standardised(observed, ivar, mean, sigma)
    return [_mean_over_good(squared <= k**2, good) for k in n_sigmas]


def coverage(observed, ivar, mean, sigma, n_sigma: float = 1.0) -> float:
    """Fraction of good pixels with |observed - mean| <= n_sigma * sqrt(sigma**2 + 1/ivar).

    A calibrated Gaussian prediction gives 0.683 at 1 sigma and 0.954 at 2 sigma.
    """
    return coverage_curve(observed, ivar, mean, sigma, [n_sigma])[0]


def spectral_metrics(observed, ivar, mean, sigma) -> dict[str, float]:
    """NLL, reduced chi-square and coverage at 1 and 2 sigma, in one dict (one pass over the arrays)."""
    squared, variance, good = _standardised(observed, ivar, mean, sigma)
    return {
        "nll": _mean_over_good(_nll(squared, variance), good),
        "reduced_chi2": _mean_over_good(squared, good),
        "coverage_1sigma": _mean_over_good(squared <= 1.0, good),
        "coverage_2sigma": _mean_over_good(squared <= 4.0, good),
        "num_pixels": int(good.sum()),
    }


# ----------------------------------------------------------------------------------------
# Line-map agreement
# ----------------------------------------------------------------------------------------
def _truth_selection(truth: np.ndarray, truth_ivar, min_snr: float) -> np.ndarray:
    """Spaxels with a finite, positive truth and, when `truth_ivar` is given, truth * sqrt(ivar) > min_snr."""
    good = np.isfinite(truth) & (truth > 0)
    if truth_ivar is not None:
        truth_ivar = np.asarray(truth_ivar, dtype=np.float64)
        if truth_ivar.shape != truth.shape:
            raise ValueError(f"`truth_ivar` {truth_ivar.shape} must have the shape of `truth` {truth.shape}")
        good &= np.isfinite(truth_ivar) & (truth * np.sqrt(np.clip(truth_ivar, 0, None)) > min_snr)
    return good


def log_ratio_statistics(predicted, truth) -> dict[str, float]:
    """Pearson r of log10 fluxes, median and robust scatter of log10(predicted / truth), over given spaxels.

    Both inputs are 1-D arrays of positive fluxes (the caller selects the spaxels). With fewer than 3
    spaxels every statistic is NaN. ``scatter_dex`` is 1.4826 x the median absolute deviation (a robust
    standard deviation).
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if predicted.size < 3:
        return {"pearson_r": float("nan"), "bias_dex": float("nan"), "scatter_dex": float("nan")}
    log_predicted, log_truth = np.log10(predicted), np.log10(truth)
    log_ratio = log_predicted - log_truth
    with np.errstate(invalid="ignore", divide="ignore"):
        r = float(np.corrcoef(log_predicted, log_truth)[0, 1])
    return {
        "pearson_r": r,
        "bias_dex": float(np.median(log_ratio)),
        "scatter_dex": float(1.4826 * np.median(np.abs(log_ratio - np.median(log_ratio)))),
    }


def line_map_agreement(predicted, truth, truth_ivar=None, min_snr: float = 3.0) -> dict[str, float]:
    """Agreement of a predicted emission-line map with a truth map, over spaxels where the truth has S/N > min_snr.

    Parameters
    ----------
    predicted, truth : arrays of the same shape (e.g. (ny, nx)), line flux (any common unit)
    truth_ivar : array like `truth`, optional
        Inverse variance of the truth; without it every spaxel with truth > 0 is used.
    min_snr : float
        Spaxels with truth * sqrt(truth_ivar) <= min_snr are left out.

    Returns
    -------
    dict
        ``num_selected`` (spaxels passing the truth cut), ``num_failed`` (of those, the ones where the
        prediction is not finite and positive: a failure, not dropped silently), ``failed_fraction``,
        ``num_spaxels`` (the spaxels actually compared: num_selected - num_failed), and over those
        ``pearson_r`` (of the log10 fluxes), ``bias_dex`` (median of log10(predicted / truth)) and
        ``scatter_dex`` (1.4826 x median absolute deviation of that log ratio). NaN with < 3 compared spaxels.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if predicted.shape != truth.shape:
        raise ValueError(f"`predicted` {predicted.shape} and `truth` {truth.shape} must have the same shape")
    good = _truth_selection(truth, truth_ivar, min_snr)
    with np.errstate(invalid="ignore"):
        both = good & np.isfinite(predicted) & (predicted > 0)
    num_selected, num_compared = int(good.sum()), int(both.sum())
    result = log_ratio_statistics(predicted[both], truth[both])
    result.update(
        num_spaxels=num_compared,
        num_selected=num_selected,
        num_failed=num_selected - num_compared,
        failed_fraction=(num_selected - num_compared) / num_selected if num_selected else float("nan"),
    )
    return result


def stacked_line_map_agreement(predicted_maps, truth_maps, truth_ivar_maps=None, min_snr: float = 3.0) -> dict:
    """:func:`line_map_agreement` per galaxy and over all galaxies' spaxels stacked.

    Each galaxy's truth cut uses its own ivar map (a galaxy whose entry in `truth_ivar_maps` is None is cut
    on truth > 0 only), so the stacked spaxels are exactly the union of the per-galaxy selections.

    Returns ``{"per_galaxy": [dict, ...], "stacked": dict}``.
    """
    if truth_ivar_maps is None:
        truth_ivar_maps = [None] * len(truth_maps)
    per_galaxy, predicted_selected, truth_selected = [], [], []
    for p, t, i in zip(predicted_maps, truth_maps, truth_ivar_maps, strict=True):
        per_galaxy.append(line_map_agreement(p, t, i, min_snr))
        t = np.asarray(t, dtype=np.float64)
        good = _truth_selection(t, i, min_snr)
        predicted_selected.append(np.asarray(p, dtype=np.float64)[good])
        truth_selected.append(t[good])
    if not per_galaxy:
        raise ValueError("`predicted_maps` must hold at least one map")
    stacked = line_map_agreement(np.concatenate(predicted_selected), np.concatenate(truth_selected), None, min_snr)
    return {"per_galaxy": per_galaxy, "stacked": stacked}
