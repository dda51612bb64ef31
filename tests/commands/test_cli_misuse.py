"""Misuse of the ``galspec`` command line: one line on stderr, exit code 2, and no work done.

"No work done" is shown by the absence of outputs and, where a heavy step exists, by replacing it with a
function that fails the test if it is called (or by a model folder without weights, which cannot be loaded).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.io import fits

from galspec_hf import GalSpecConfig
from galspec_hf import constants as C
from galspec_hf.cli import build_parser, main
from galspec_hf.data.testing import write_legacy_cutout
from galspec_hf.io.manga import write_manga_cube


def _must_not_run(*args, **kwargs):
    raise AssertionError("heavy work started although the input was refused")


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.count("\n") == 0, err
    assert err.startswith(f"galspec {command}: error: "), err
    return err


# ----------------------------------------------------------------------------------------
# predict-cube
# ----------------------------------------------------------------------------------------
@pytest.fixture
def cube_inputs(tmp_path):
    """A model folder with config.json only (no weights: loading it would fail) and a 40-pixel cutout."""
    model_dir = tmp_path / "model"
    GalSpecConfig.from_preset("tiny").save_pretrained(model_dir)
    cutout = write_legacy_cutout(tmp_path / "cutout.fits", 150.0, 2.0, size=40)
    return ["--model", str(model_dir), "--image", str(cutout)]


@pytest.mark.parametrize(
    "redshift, message",
    [
        ("nan", "--redshift must be a finite number, got nan"),
        ("inf", "--redshift must be a finite number, got inf"),
        ("-0.1", "--redshift must be >= 0"),
        ("15", "--redshift 15.0 is outside the model's redshift range 0-1.7"),
    ],
)
def test_predict_cube_bad_redshift(tmp_path, cube_inputs, capsys, monkeypatch, redshift, message):
    monkeypatch.setattr("galspec_hf.cube.predict_cube_file", _must_not_run)
    out = tmp_path / "cube.fits"
    assert main(["predict-cube", *cube_inputs, "--redshift", redshift, "--out", str(out)]) == 2
    assert message in _one_line_error(capsys, "predict-cube")
    assert not out.exists()


def test_predict_cube_output_folder_missing(tmp_path, cube_inputs, capsys):
    out = tmp_path / "no_such_folder" / "cube.fits"
    assert main(["predict-cube", *cube_inputs, "--redshift", "0.1", "--out", str(out)]) == 2
    assert f"folder {out.parent} does not exist" in _one_line_error(capsys, "predict-cube")
    assert not out.parent.exists()


def test_predict_cube_refuses_to_overwrite(tmp_path, cube_inputs, capsys):
    out = tmp_path / "cube.fits"
    out.write_bytes(b"precious")
    assert main(["predict-cube", *cube_inputs, "--redshift", "0.1", "--out", str(out)]) == 2
    assert "exists; use --overwrite" in _one_line_error(capsys, "predict-cube")
    assert out.read_bytes() == b"precious"


def test_predict_cube_image_not_fits(tmp_path, cube_inputs, capsys):
    junk = tmp_path / "junk.fits"
    junk.write_text("not a FITS file")
    arguments = [*cube_inputs[:2], "--image", str(junk), "--redshift", "0.1", "--out", str(tmp_path / "c.fits")]
    assert main(["predict-cube", *arguments]) == 2
    error = _one_line_error(capsys, "predict-cube")
    assert f"--image {junk}: not a readable FITS file" in error
    assert not (tmp_path / "c.fits").exists()


def test_predict_cube_cutout_smaller_than_the_model_sees(tmp_path, cube_inputs, capsys):
    small = write_legacy_cutout(tmp_path / "small.fits", 150.0, 2.0, size=20)
    arguments = [*cube_inputs[:2], "--image", str(small), "--redshift", "0.1", "--out", str(tmp_path / "c.fits")]
    assert main(["predict-cube", *arguments]) == 2
    assert "20x20 pixels, smaller than the model's 32x32" in _one_line_error(capsys, "predict-cube")


@pytest.mark.parametrize("option", ["--spaxel-size", "--bundle-diameter", "--fiber-diameter"])
def test_predict_cube_non_positive_sizes(tmp_path, cube_inputs, capsys, option):
    arguments = [*cube_inputs, "--redshift", "0.1", "--out", str(tmp_path / "c.fits"), option, "0"]
    assert main(["predict-cube", *arguments]) == 2
    assert f"{option} must be a positive number, got 0.0" in _one_line_error(capsys, "predict-cube")


def test_a_bug_keeps_its_traceback(tmp_path, cube_inputs, monkeypatch):
    """A ValueError that is not a user error is not turned into exit code 2."""

    def bug(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr("galspec_hf.cube.predict_cube_file", bug)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["predict-cube", *cube_inputs, "--redshift", "0.1", "--out", str(tmp_path / "c.fits")])


# ----------------------------------------------------------------------------------------
# line-maps
# ----------------------------------------------------------------------------------------
def _manga_wavelength() -> np.ndarray:
    return 10 ** (C.MANGA_LOGLAM0 + C.MANGA_LOGLAM_STEP * np.arange(C.MANGA_NUM_PIXELS))


def _small_logcube(path, z: float = 0.025, halpha_flux=(0.0, 0.0, 0.0, 0.0, 40.0, 40.0, 40.0, 40.0, 40.0)):
    """A 3x3 LOGCUBE: continuum 1 (1e-17 erg/s/cm2/A), noise 0.05, H-alpha of the given fluxes, sigma 2 A."""
    wavelength = _manga_wavelength()
    rng = np.random.default_rng(3)
    centre, sigma = C.EMISSION_LINES_VACUUM_A["Halpha"] * (1 + z), 2.0
    profile = np.exp(-0.5 * ((wavelength - centre) / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
    flux = 1.0 + np.asarray(halpha_flux)[:, None] * profile[None] + rng.normal(0, 0.05, (9, wavelength.size))
    flux_cube = np.moveaxis(flux.reshape(3, 3, -1), -1, 0).astype(np.float32)
    ivar = np.full_like(flux_cube, 1 / 0.05**2)
    header = fits.Header()
    header["Z"] = z
    header["PLATEIFU"] = "0000-test"
    return write_manga_cube(
        path, wavelength, flux_cube, ivar, ra_deg=150.0, dec_deg=2.0, spaxel_arcsec=0.5, primary_header=header
    )


@pytest.mark.parametrize(
    "redshift, message",
    [
        ("5", "--redshift 5: every emission line falls outside the cube's wavelength range 3622-10354 A"),
        ("nan", "--redshift must be a finite number, got nan"),
        ("-0.2", "--redshift must be >= 0"),
    ],
)
def test_line_maps_bad_redshift(tmp_path, capsys, monkeypatch, redshift, message):
    cube = _small_logcube(tmp_path / "cube.fits")
    monkeypatch.setattr("galspec_hf.analysis.lines.fit_emission_lines", _must_not_run)
    out = tmp_path / "maps"
    assert main(["line-maps", str(cube), "--out", str(out), "--redshift", redshift, "--no-progress"]) == 2
    assert message in _one_line_error(capsys, "line-maps")
    assert not out.exists()


def test_line_maps_header_redshift_is_checked_too(tmp_path, capsys, monkeypatch):
    cube = _small_logcube(tmp_path / "cube.fits", z=-0.5)
    monkeypatch.setattr("galspec_hf.analysis.lines.fit_emission_lines", _must_not_run)
    assert main(["line-maps", str(cube), "--out", str(tmp_path / "maps")]) == 2
    error = _one_line_error(capsys, "line-maps")
    assert "cube.fits: header redshift must be >= 0 (a galaxy redshift), got -0.5" in error


def test_line_maps_refuses_to_overwrite(tmp_path, capsys, monkeypatch):
    cube = _small_logcube(tmp_path / "cube.fits")
    out = tmp_path / "maps"
    out.mkdir()
    (out / "line_maps.fits").write_bytes(b"precious")
    monkeypatch.setattr("galspec_hf.analysis.lines.fit_emission_lines", _must_not_run)
    assert main(["line-maps", str(cube), "--out", str(out)]) == 2
    assert "already holds line_maps.fits; use --overwrite" in _one_line_error(capsys, "line-maps")
    assert (out / "line_maps.fits").read_bytes() == b"precious" and not (out / "line_maps.png").exists()


def test_line_maps_says_how_many_spaxels_and_where(tmp_path, capsys):
    """4 spaxels without H-alpha, 5 with a strong one (S/N ~ 40 / (0.05 sqrt(2 sqrt(pi) 2 A / 1.5 A)) >> 3)."""
    cube = _small_logcube(tmp_path / "cube.fits")
    out = tmp_path / "maps"
    assert main(["line-maps", str(cube), "--out", str(out), "--continuum", "local", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "H-alpha detected (S/N > 3) in 5 of 9 spaxels" in printed
    assert f"wrote {out / 'line_maps.fits'} and {out / 'line_maps.png'}" in printed
    assert (out / "line_maps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_panel_masks_categories():
    from types import SimpleNamespace

    from galspec_hf.commands.line_maps import panel_masks

    nearbound, novalue = 1 << C.DAP_MASK_NEARBOUND_BIT, (1 << C.DAP_MASK_NOVALUE_BIT) | (1 << C.DAP_MASK_DONOTUSE_BIT)
    flux = np.array([[10.0, 10.0], [1.0, np.nan]])
    error = np.array([[1.0, 1.0], [1.0, np.nan]])
    bits = np.array([[0, nearbound], [0, novalue]])
    maps = SimpleNamespace(flux={"Halpha": flux}, flux_err={"Halpha": error}, mask={"Halpha": bits})
    masks = panel_masks(maps)
    np.testing.assert_array_equal(masks["no_value"], [[False, False], [False, True]])
    np.testing.assert_array_equal(masks["undetected"], [[False, False], [True, False]])  # S/N 1 < 3
    np.testing.assert_array_equal(masks["at_limit"], [[False, True], [False, False]])


# ----------------------------------------------------------------------------------------
# simulate
# ----------------------------------------------------------------------------------------
def test_simulate_templates_not_fits(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("galspec_hf.simulate.simulate_survey", _must_not_run)
    junk = tmp_path / "ssp.txt"
    junk.write_text("age flux\n1 2\n")
    out = tmp_path / "survey"
    assert main(["simulate", "--n-galaxies", "2", "--out", str(out), "--templates", str(junk)]) == 2
    assert f"--templates {junk}: not a readable FITS file" in _one_line_error(capsys, "simulate")
    assert not out.exists()


def test_simulate_templates_fits_of_another_kind(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("galspec_hf.simulate.simulate_survey", _must_not_run)
    other = write_legacy_cutout(tmp_path / "cutout.fits", 150.0, 2.0, size=8)
    assert main(["simulate", "--n-galaxies", "2", "--out", str(tmp_path / "s"), "--templates", str(other)]) == 2
    assert "FLUX, WAVE, METADATA missing; expected an FSPS SSP file" in _one_line_error(capsys, "simulate")


def test_simulate_refuses_to_overwrite_a_survey(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("galspec_hf.simulate.simulate_survey", _must_not_run)
    (tmp_path / "truth.parquet").write_bytes(b"precious")
    assert main(["simulate", "--n-galaxies", "2", "--out", str(tmp_path)]) == 2
    assert "already holds truth.parquet; use --overwrite" in _one_line_error(capsys, "simulate")


# ----------------------------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--redshift", "nan"], "--redshift must be a finite number"),
        (["--redshift", "3"], "--redshift 3.0 is outside the model's redshift range 0-1.7"),
    ],
)
def test_demo_bad_redshift(tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.setattr("galspec_hf.demo.run_demo", _must_not_run)
    assert main(["demo", "--preset", "tiny", "--out", str(tmp_path / "d"), *arguments]) == 2
    assert message in _one_line_error(capsys, "demo")
    assert not (tmp_path / "d").exists()


def test_demo_cutout_at_another_pixel_scale(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("galspec_hf.demo.run_demo", _must_not_run)
    hsc = write_legacy_cutout(tmp_path / "hsc.fits", 150.0, 2.0, size=60, pixel_scale_arcsec=0.168)
    assert main(["demo", "--preset", "tiny", "--cutout", str(hsc), "--out", str(tmp_path / "d")]) == 2
    assert "pixel scale 0.1680 arcsec differs from the model's 0.262" in _one_line_error(capsys, "demo")


# ----------------------------------------------------------------------------------------
# build-dataset
# ----------------------------------------------------------------------------------------
def test_build_dataset_with_nothing_usable_writes_its_report(tmp_path, capsys):
    source = tmp_path / "in"
    source.mkdir()
    (source / "coadd-main-dark-1.fits").write_text("not FITS")  # a coadd without its redrock file
    out = tmp_path / "out"
    assert main(["build-dataset", "--input", str(source), "--output", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert error.count("\n") == 0 and "Traceback" not in error
    assert "no usable galaxy (1 coadd files, 1 files/records skipped)" in error
    assert "bad_file: 1" in captured.out and "no matching redrock-*.fits" in captured.out
    report_path = tmp_path / "out.report.json"

    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")

    report = json.loads(report_path.read_text(), parse_constant=refuse)
    assert report["num_rows"] == 0 and report["n_skipped"] == 1
    assert report["skipped"][0]["kind"] == "bad_file" and report["skipped"][0]["targetid"] is None
    assert not out.exists()


def test_build_dataset_refuses_a_non_empty_output_before_reading(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("galspec_hf.data.build.build_desi_dataset", _must_not_run)
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    assert main(["build-dataset", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 2
    assert "is not empty; use --overwrite" in _one_line_error(capsys, "build-dataset")


# ----------------------------------------------------------------------------------------
# --help
# ----------------------------------------------------------------------------------------
def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_every_command_is_described_without_restructuredtext():
    commands = _subparsers()
    assert {"build-dataset", "demo", "line-maps", "predict-cube", "simulate"} <= set(commands)
    for name, parser in commands.items():
        text = parser.format_help()
        assert parser.description and len(parser.description) > 40, name
        for markup in ("``", "::", ":func:", ":class:", ":mod:"):
            assert markup not in text, (name, markup)
