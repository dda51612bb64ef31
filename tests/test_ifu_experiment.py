"""The end-to-end experiment (examples/ifu_from_one_fiber.py): its pieces, and the --quick run."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

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
    smoothed = experiment.smooth_to_manga_psf(flux_map, image_psf_fwhm=1.2, fiber_diameter=1.5)
    assert smoothed.sum() == pytest.approx(100.0, rel=1e-3)
    # the kernel brings 1.2" seeing + a 1.5" aperture to 2.5" FWHM: sigma_kernel^2 = (2.5^2 - eff^2) / 2.355^2
    effective = math.hypot(1.2, 2.3548 / 4 * 1.5)
    kernel_sigma_spaxels = math.sqrt(2.5**2 - effective**2) / 2.3548 / 0.5
    y, x = np.mgrid[0:41, 0:41]
    variance = (smoothed * (x - 20) ** 2).sum() / smoothed.sum()
    assert math.sqrt(variance) == pytest.approx(kernel_sigma_spaxels, rel=0.02)


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
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for model in ("one_fiber", "supervised"):
        for key in ("ha_pearson_r", "ha_scatter_dex", "coverage_1sigma", "coverage_2sigma"):
            assert key in metrics[model]
        assert 0.0 <= metrics[model]["coverage_1sigma"] <= metrics[model]["coverage_2sigma"] <= 1.0
        assert metrics[model]["ha_num_spaxels"] > 0
    assert metrics["setting"]["n_heldout_galaxies"] == 3
    for name in ("maps_Halpha.png", "maps_NII_6585.png", "maps_Hbeta.png", "maps_OIII_5008.png", "calibration.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert "metrics.json" in result.stdout
