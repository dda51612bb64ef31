import evaluate
import numpy as np
import pytest

from galspec_hf.evaluate_modules import module_path
from galspec_hf.metrics import (
    coverage,
    line_map_agreement,
    reduced_chi2,
    spectral_metrics,
    spectral_nll,
    stacked_line_map_agreement,
)


def _calibrated(n=200_000, seed=0):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=n)
    sigma_model = rng.uniform(0.5, 2.0, size=n)
    ivar = rng.uniform(0.5, 4.0, size=n)
    observed = mean + rng.normal(size=n) * np.sqrt(sigma_model**2 + 1 / ivar)
    return observed, ivar, mean, sigma_model


def test_calibrated_gaussian_gives_textbook_coverage():
    observed, ivar, mean, sigma = _calibrated()
    assert coverage(observed, ivar, mean, sigma, 1.0) == pytest.approx(0.6827, abs=0.005)
    assert coverage(observed, ivar, mean, sigma, 2.0) == pytest.approx(0.9545, abs=0.003)
    assert reduced_chi2(observed, ivar, mean, sigma) == pytest.approx(1.0, abs=0.01)
    # overconfident predictions (sigma too small, and no observational term) cover less
    assert coverage(observed, np.full_like(ivar, 1e12), mean, 0.5 * sigma, 1.0) < 0.5


def test_nll_matches_closed_form_and_ignores_bad_pixels():
    observed = np.array([1.0, 2.0, 100.0, np.nan])
    ivar = np.array([1.0, 4.0, 0.0, 1.0])
    mean = np.array([0.0, 2.0, 0.0, 0.0])
    sigma = np.array([0.0, 0.0, 1.0, 1.0])
    expected = np.mean([0.5 * (np.log(2 * np.pi * 1.0) + 1.0), 0.5 * np.log(2 * np.pi * 0.25)])
    assert spectral_nll(observed, ivar, mean, sigma) == pytest.approx(expected)
    assert spectral_metrics(observed, ivar, mean, sigma)["num_pixels"] == 2
    with pytest.raises(ValueError, match="same shape"):
        spectral_nll(observed, ivar[:2], mean, sigma)


def test_line_map_agreement_recovers_bias_and_scatter():
    rng = np.random.default_rng(1)
    truth = 10 ** rng.uniform(-1, 2, size=(60, 60))
    predicted = truth * 10 ** (0.2 + rng.normal(0, 0.1, size=truth.shape))
    result = line_map_agreement(predicted, truth)
    assert result["bias_dex"] == pytest.approx(0.2, abs=0.01)
    assert result["scatter_dex"] == pytest.approx(0.1, abs=0.01)
    assert result["pearson_r"] > 0.95 and result["num_spaxels"] == 3600
    # the S/N cut on the truth removes spaxels
    ivar = np.where(np.arange(3600).reshape(60, 60) < 1800, 1e6, 1e-6)
    assert line_map_agreement(predicted, truth, ivar)["num_spaxels"] == 1800
    stacked = stacked_line_map_agreement([predicted, predicted], [truth, truth])
    assert stacked["stacked"]["num_spaxels"] == 7200 and len(stacked["per_galaxy"]) == 2


def test_evaluate_modules_load_from_local_path_and_match_functions():
    observed, ivar, mean, sigma = (a.reshape(100, 50) for a in _calibrated(5000, seed=2))
    module = evaluate.load(module_path("spectral_calibration"))
    result = module.compute(predictions=list(mean), references=list(observed), sigmas=list(sigma), ivars=list(ivar))
    expected = spectral_metrics(observed, ivar, mean, sigma)
    for key in ("nll", "coverage_1sigma", "coverage_2sigma"):
        assert result[key] == pytest.approx(expected[key], rel=1e-5)
    lines = evaluate.load(module_path("line_map_agreement"))
    truth = np.linspace(1, 100, 50)
    ivar = np.where(truth > 50, 1e4, 1e-4)  # only the bright half has truth S/N > 3
    result = lines.compute(predictions=truth * 1.1, references=truth, reference_ivars=ivar)
    assert result["bias_dex"] == pytest.approx(np.log10(1.1), abs=1e-6)
    assert result["num_spaxels"] == int((truth > 50).sum())
    with pytest.raises(ValueError, match="`name`"):
        module_path("accuracy")


def test_zero_predictions_are_failures_not_dropped():
    """90 % of a perfect map set to 0: r over the 10 % still 1, but num_spaxels is the 10 % and 90 % failed."""
    truth = np.linspace(1.0, 100.0, 100)
    predicted = truth.copy()
    predicted[:90] = 0.0
    result = line_map_agreement(predicted, truth)
    assert result["num_spaxels"] == 10  # hand count: 100 - 90 zeros
    assert result["num_failed"] == 90 and result["failed_fraction"] == pytest.approx(0.9)
    assert result["num_selected"] == 100


def test_snr_cut_is_strict_and_uses_sqrt_ivar():
    """truth 6 with ivar 0.25 -> S/N 3 (excluded by > 3); ivar 0.3 -> 3.29 (kept); ivar 2 -> 8.5 (kept).
    With ivar instead of sqrt(ivar), 6 * 0.3 = 1.8 would drop the second; with >= the first would be kept."""
    truth = np.array([6.0, 6.0, 6.0, 6.0])
    ivar = np.array([0.25, 0.3, 2.0, 0.2])
    predicted = truth * np.array([1.0, 2.0, 4.0, 8.0])
    result = line_map_agreement(predicted, truth, ivar, min_snr=3.0)
    assert result["num_selected"] == 2
    stacked = stacked_line_map_agreement([predicted], [truth], [ivar])
    assert stacked["stacked"]["num_selected"] == 2


def test_stacked_applies_each_galaxys_own_ivar():
    """ivars [None, ivar]: the second galaxy's cut must still apply (brute-force count of truth*sqrt(ivar) > 3)."""
    rng = np.random.default_rng(4)
    truth_a, truth_b = 10 ** rng.uniform(0, 2, 50), 10 ** rng.uniform(0, 2, 50)
    ivar_b = rng.uniform(0.0, 0.2, 50)
    expected = 50 + sum(1 for t, i in zip(truth_b, ivar_b, strict=True) if t * i**0.5 > 3)
    stacked = stacked_line_map_agreement([truth_a, truth_b], [truth_a, truth_b], [None, ivar_b])
    assert stacked["stacked"]["num_spaxels"] == expected < 100
    reverse = stacked_line_map_agreement([truth_b, truth_a], [truth_b, truth_a], [ivar_b, None])
    assert reverse["stacked"]["num_spaxels"] == expected


def test_line_map_agreement_matches_scipy_pearson():
    from scipy.stats import pearsonr

    rng = np.random.default_rng(5)
    truth = 10 ** rng.uniform(0, 2, 200)
    predicted = truth * 10 ** rng.normal(0, 0.3, 200)
    predicted[:20] = -1.0
    result = line_map_agreement(predicted, truth)
    assert result["pearson_r"] == pytest.approx(pearsonr(np.log10(predicted[20:]), np.log10(truth[20:]))[0])
    assert result["bias_dex"] == pytest.approx(np.median(np.log10(predicted[20:] / truth[20:])))
