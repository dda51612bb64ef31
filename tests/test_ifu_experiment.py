"""The end-to-end experiment (examples/ifu_from_one_fiber.py): its pieces, and the --quick run."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from galspec_hf.data.readers import read_legacy_cutout, read_manga_cube
from galspec_hf.simulate import simulate_survey

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "ifu_from_one_fiber.py"


def _experiment():
    spec = importlib.util.spec_from_file_location("ifu_from_one_fiber", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoothing_to_manga_psf_conserves_flux_and_widens():
    experiment = _experiment()
    flux_map = np.zeros((41, 41))
    flux_map[20, 20] = 100.0
    smoothed = experiment.smooth_to_manga_psf(flux_map, image_psf_fwhm=1.2, aperture_diameter=1.5)
    assert np.nansum(smoothed) == pytest.approx(100.0, rel=1e-3)
    # hand calculation: effective FWHM = hypot(1.2, 2.3548 / 4 * 1.5) = 1.4899"; the kernel brings it to 2.5":
    # sqrt(2.5^2 - 1.4899^2) = 2.0075" FWHM = 0.85254" sigma = 1.7051 spaxels of 0.5"
    y, x = np.mgrid[0:41, 0:41]
    variance = (smoothed * (x - 20) ** 2).sum() / smoothed.sum()
    assert math.sqrt(variance) == pytest.approx(1.7051, rel=0.02)


def test_smoothing_does_not_darken_edges():
    """A uniform map stays uniform to its corners (zero padding took ~0.3 dex off edges, ~0.6 off corners)."""
    experiment = _experiment()
    flux_map = np.full((30, 30), 5.0)
    flux_map[:, 25:] = np.nan  # outside the model image
    smoothed = experiment.smooth_to_manga_psf(flux_map, image_psf_fwhm=1.0, aperture_diameter=0.56)
    np.testing.assert_allclose(smoothed[:, :25], 5.0, rtol=1e-10)
    assert np.isnan(smoothed[:, 25:]).all()


def test_galaxy_class_from_truth_column_or_specific_sfr():
    experiment = _experiment()
    assert experiment.galaxy_class({"star_forming": False, "log_sfr": 1.0, "log_mstar": 10.0}) == "quiescent"
    # without the column: log sSFR = 0.5 - 10.5 = -10 > -11 -> star-forming; -12 -> quiescent
    assert experiment.galaxy_class({"log_sfr": 0.5, "log_mstar": 10.5}) == "star_forming"
    assert experiment.galaxy_class({"log_sfr": -1.5, "log_mstar": 10.5}) == "quiescent"


def test_spaxel_offsets_follow_both_wcs(tmp_path):
    """An off-centre target's cutout and its galaxy's cube: spaxel offsets from the cutout centre place the
    cube centre where the truth puts the galaxy."""
    experiment = _experiment()
    simulate_survey(tmp_path, n_galaxies=40, n_ifu=4, seed=3, cutout_size=48, progress=False)
    truth = [row for row in pq.read_table(tmp_path / "truth.parquet").to_pylist() if row["plateifu"]]
    for galaxy in truth:
        cube = read_manga_cube(tmp_path / "manga" / f"manga-{galaxy['plateifu']}-LOGCUBE.fits.gz")
        cutout = read_legacy_cutout(tmp_path / galaxy["cutout_file"])
        offsets = experiment.spaxel_offsets_from_cutout(cube, cutout)
        ny, nx = offsets.shape[:2]
        centre = offsets[(ny - 1) // 2 : ny // 2 + 1, (nx - 1) // 2 : nx // 2 + 1].reshape(-1, 2).mean(axis=0)
        assert centre == pytest.approx([galaxy["centre_east_arcsec"], galaxy["centre_north_arcsec"]], abs=0.02)
        # spaxels step 0.5" west along a row and 0.5" north up a column
        assert offsets[0, 1, 0] - offsets[0, 0, 0] == pytest.approx(-0.5, abs=1e-3)
        assert offsets[1, 0, 1] - offsets[0, 0, 1] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.slow
def test_quick_run_writes_metrics_and_figures(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--output_dir",
            str(tmp_path),
            "--quick",
            "--steps",
            "60",
            "--baseline_steps",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "metrics.json").read_text()
    metrics = json.loads(text)  # strict JSON: json.loads would accept NaN, so check the text too
    assert "NaN" not in text and "Infinity" not in text
    survey = tmp_path / "survey"
    truth = {row["targetid"]: row for row in pq.read_table(survey / "truth.parquet").to_pylist()}
    training_ids = set(datasets.load_from_disk(str(tmp_path / "fibers_train"))["targetid"])
    all_ids = set(datasets.load_from_disk(str(tmp_path / "fibers_all"))["targetid"])
    seen = set()
    for set_name in ("validation", "test"):
        block = metrics[set_name]
        ids = {g["targetid"] for g in block["galaxies"]}
        assert ids and not ids & training_ids and ids <= all_ids  # held out of the one-fiber training set
        assert not {truth[i]["plateifu"] for i in ids} & set(metrics["setting"]["train_cubes"])
        assert not ids & seen
        seen |= ids
        models = block["models"]
        assert set(models) == {"image_only", "supervised", "null_light", "null_fiber"}
        for prefix in ("ha", "nii", "hb", "oiii"):
            counts = {models[m][f"{prefix}_num_spaxels"] for m in models}
            assert len(counts) == 1  # every model on the same spaxels
        for model in models.values():
            assert 0.0 <= model["ha_failed_fraction"] <= 1.0
            if model["ha_num_spaxels"] >= 3:
                assert math.isfinite(model["ha_pearson_r"]) and math.isfinite(model["ha_scatter_dex"])
        for model in ("image_only", "supervised"):
            assert 0.0 <= models[model]["spectrum_coverage_1sigma"] <= models[model]["spectrum_coverage_2sigma"]
        assert models["null_light"]["coverage_1sigma"] is None
    assert len(seen) == 4
    for name in ("maps_Halpha.png", "maps_NII_6585.png", "maps_Hbeta.png", "maps_OIII_5008.png", "calibration.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert "metrics.json" in result.stdout
