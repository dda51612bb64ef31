"""The training command line's model options reach the configuration."""

import json

import pytest

from galspec_hf.training.args import build_parser
from galspec_hf.training.loop import build_config


def _args(*extra):
    return build_parser().parse_args(["--dataset", "d", "--output_dir", "o", "--preset", "tiny", *extra])


def test_defaults_keep_the_preset_and_the_plain_likelihood():
    config = build_config(_args())
    assert (config.spectrum_loss, config.sigma_penalty_weight, config.line_window_weight) == ("gaussian", 0.0, 1.0)
    assert config.mask_mode_probabilities == [0.4, 0.3, 0.3]
    assert config.readout_modulation is False and config.readout_colours is False
    assert config.decoder_image_summary is False and config.decoder_photometry is False
    assert config.image_size == 32


def test_masking_and_loss_options_override_preset_and_config_file(tmp_path):
    extra = ("--mask_mode_probabilities", "0.2", "0.2", "0.6", "--spectrum_loss", "beta_nll", "--beta_nll_beta",
             "0.25", "--sigma_penalty_weight", "0.1", "--line_window_weight", "3", "--readout_modulation",
             "--readout_colours", "--decoder_image_summary", "--decoder_photometry")  # fmt: skip
    config = build_config(_args(*extra))
    assert config.mask_mode_probabilities == [0.2, 0.2, 0.6]
    assert (config.spectrum_loss, config.beta_nll_beta) == ("beta_nll", 0.25)
    assert (config.sigma_penalty_weight, config.line_window_weight, config.readout_modulation) == (0.1, 3.0, True)
    assert config.readout_colours is True and config.decoder_image_summary is True
    assert config.decoder_photometry is True
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"image_size": 48, "image_patch_size": 8, "sigma_penalty_weight": 0.5}))
    from_file = build_config(_args("--config", str(path), "--line_window_weight", "2"))
    assert (from_file.image_size, from_file.sigma_penalty_weight, from_file.line_window_weight) == (48, 0.5, 2.0)


def test_bad_loss_option_names_the_key():
    with pytest.raises(ValueError, match="`sigma_penalty_weight`"):
        build_config(_args("--sigma_penalty_weight", "-1"))
