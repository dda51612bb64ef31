"""Agreement of predicted emission-line maps with truth maps: Pearson r, bias and scatter in dex."""

import datasets
import evaluate

from galspec_hf.metrics import line_map_agreement

_DESCRIPTION = """
Compares predicted emission-line flux maps with truth maps over spaxels where the truth has S/N > min_snr
(default 3): Pearson r of the log fluxes, median log10(predicted/truth) (bias, dex) and its robust
scatter (dex). Each example is one spaxel; stack several galaxies by adding all their spaxels.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted line flux per spaxel.
    references: true line flux per spaxel.
    reference_ivars: inverse variance of the truth (spaxels with truth S/N <= min_snr are left out).
    min_snr: S/N threshold of the truth (default 3).
Returns:
    pearson_r, bias_dex, scatter_dex over the compared spaxels; num_spaxels (compared: truth S/N > min_snr and
    a finite, positive prediction), num_selected, num_failed (non-positive or non-finite predictions on selected
    spaxels) and failed_fraction.
"""


class LineMapAgreement(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="arXiv:2606.10197",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("float32"),
                    "references": datasets.Value("float32"),
                    "reference_ivars": datasets.Value("float32"),
                }
            ),
        )

    def _compute(self, predictions, references, reference_ivars, min_snr=3.0):
        return line_map_agreement(predictions, references, reference_ivars, min_snr=min_snr)
