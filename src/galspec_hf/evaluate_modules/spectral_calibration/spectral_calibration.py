"""Spectral NLL, reduced chi-square and coverage at 1 and 2 sigma of predicted spectra with uncertainties."""

import datasets
import evaluate

from galspec_hf.metrics import spectral_metrics

_DESCRIPTION = """
Calibration of predicted spectra: for observed flux with inverse variance ivar, and a prediction with
mean and sigma_model per pixel, the predictive variance is sigma_model**2 + 1/ivar. Reports the mean
Gaussian negative log-likelihood per pixel, the reduced chi-square, and the fraction of pixels within 1
and 2 sigma (0.683 and 0.954 when calibrated). Pixels with ivar <= 0 are ignored.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted mean spectra, list of float lists (one per spectrum), 1e-17 erg/s/cm2/A.
    references: observed spectra, same shape.
    sigmas: predicted sigma_model, same shape.
    ivars: inverse variance of the observed spectra, same shape.
Returns:
    nll, reduced_chi2, coverage_1sigma, coverage_2sigma, num_pixels.
"""


class SpectralCalibration(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="arXiv:2606.10197",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                    "sigmas": datasets.Sequence(datasets.Value("float32")),
                    "ivars": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references, sigmas, ivars):
        import numpy as np

        return spectral_metrics(
            np.concatenate([np.asarray(r) for r in references]),
            np.concatenate([np.asarray(i) for i in ivars]),
            np.concatenate([np.asarray(p) for p in predictions]),
            np.concatenate([np.asarray(s) for s in sigmas]),
        )
