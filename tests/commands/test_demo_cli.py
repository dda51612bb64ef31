import json
import subprocess
import sys

import numpy as np
import pytest

from galspec_hf.cli import main
from galspec_hf.demo import fiber_grid, load_cutout


@pytest.mark.realdata
def test_demo_on_real_cutout(tmp_path, shared_file):
    cutout = shared_file("legacysurvey/legacysurvey-dr9-grz-357.9087-54.8817.fits")
    code = main(["demo", "--preset", "tiny", "--cutout", str(cutout), "--out", str(tmp_path)])
    assert code == 0
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["image"] == str(cutout)
    assert summary["num_fibers"] == 49 and summary["num_wavelengths"] == 7781
    png = (tmp_path / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


@pytest.mark.realdata
def test_real_cutout_orientation_and_units(shared_file):
    image = load_cutout(shared_file("legacysurvey/legacysurvey-dr9-grz-357.9087-54.8817.fits"), ["g", "r", "z"])
    assert image.image.shape == (3, 256, 256) and image.image.dtype == np.float32
    # the red central galaxy is brighter in z than in g (nanomaggies) and sits at the centre
    centre = image.image[:, 120:136, 120:136].sum(axis=(1, 2))
    assert centre[2] > centre[0] > 0


def test_demo_without_real_cutout_uses_synthetic_image(tmp_path, monkeypatch):
    monkeypatch.setenv("GALSPEC_SHARED_DATA", str(tmp_path / "nothing"))
    assert main(["demo", "--preset", "tiny", "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert summary["image"].startswith("synthetic")


def test_fiber_grid():
    grid = fiber_grid(6.0, 2.0)
    assert grid.shape == (49, 2)
    assert np.allclose(grid.min(axis=0), -6.0) and np.allclose(grid.max(axis=0), 6.0)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["demo", "--preset", "huge"], "--preset must be one of"),
        (["demo", "--cutout", "/no/such/file.fits"], "--cutout /no/such/file.fits: file not found"),
        (["demo", "--model", "/no/such/dir"], "no config.json"),
    ],
)
def test_cli_user_errors_are_one_line_exit_2(arguments, message):
    result = subprocess.run([sys.executable, "-m", "galspec_hf", *arguments], capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
