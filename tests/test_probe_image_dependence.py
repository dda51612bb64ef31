"""examples/probe_image_dependence.py: the three measurements of whether a model's image-only spectrum depends on
its image, on a tiny model and a small data set written by the test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import datasets
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    path = ROOT / "examples" / "probe_image_dependence.py"
    spec = importlib.util.spec_from_file_location("probe_image_dependence", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ridge_probe_finds_a_linear_relation_and_not_noise():
    probe = _load_script()
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(200, 5)), rng.normal(size=(80, 5))
    weights = np.array([1.0, -2.0, 0.0, 0.5, 0.0])
    y_train, y_test = x_train @ weights + 0.05 * rng.normal(size=200), x_test @ weights + 0.05 * rng.normal(size=80)
    assert probe.ridge_probe_r(x_train, y_train, x_test, y_test) > 0.99
    assert abs(probe.ridge_probe_r(x_train, rng.normal(size=200), x_test, rng.normal(size=80))) < 0.35
    y_train[:195] = np.nan  # too few usable rows: no probe
    assert probe.ridge_probe_r(x_train, y_train, x_test, y_test) is None


@pytest.mark.slow
def test_probe_script_measures_a_model_that_ignores_its_image(tmp_path, capsys):
    """A freshly initialised tiny model (its random weights make its spectrum depend on the image): its shape
    changes when the g band is tripled, the probe of the normalised input finds the colours the rows were made
    with (r > 0.9), the JSON holds every block; a missing folder is one line and exit code 2."""
    from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra

    config = GalSpecConfig.from_preset("tiny")
    model = GalSpecForMaskedSpectra(config).eval()
    model.save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(3)
    wave = np.asarray(config.wavelength_grid())
    n, size = 120, config.image_size + 8
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    profile = np.exp(-0.5 * (xx**2 + yy**2) / 16.0)
    g_over_r = rng.uniform(0.3, 0.9, n)  # the galaxy's colour, in the image and in the spectrum's slope
    redshift = rng.uniform(0.05, 0.15, n)
    rows = {"targetid": list(range(n)), "redshift": redshift.tolist(), "fiber_offset": [[0.0, 0.0]] * n,
            "fiber_diameter": [1.5] * n, "mask": [np.zeros(wave.size, np.int32)] * n,
            "image": [np.stack([c * profile, profile, 1.5 * profile]).astype(np.float32) for c in g_over_r],
            "flux": [(wave / (5500 * (1 + z))) ** (-3 * (c - 0.6)) for c, z in zip(g_over_r, redshift, strict=True)],
            "ivar": [np.full(wave.size, 1e4)] * n}  # fmt: skip
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "fibers"))
    probe = _load_script()
    out = tmp_path / "probe.json"
    assert probe.main([str(tmp_path / "model"), "--fibers", str(tmp_path / "fibers"), "--validation_fraction", "0.25",
                       "--n_train", "90", "--output", str(out)]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert set(result) == {"model", "num_held_out_fibers", "continuum_colour", "perturbation", "linear_probe_r",
                           "linear_colour_model_r"}
    # the spectra's slopes were made from the images' g / r: the linear colour model finds them
    assert result["linear_colour_model_r"] > 0.95
    assert result["num_held_out_fibers"] == 30
    assert result["linear_probe_r"]["input_centre"] > 0.9
    assert result["perturbation"]["g_band_tripled"] > 0
    # an untrained model's spectra go negative: no colour for them, and the check says how many it could score
    assert result["continuum_colour"]["num_fibers"] <= 30
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        probe.main([str(tmp_path / "nothing"), "--fibers", str(tmp_path / "fibers")])
    assert exit_info.value.code == 2 and "nothing" in capsys.readouterr().err
