"""galspec_hf.spectral: pixel edges, rebinning, line-spread functions, AB photometry; and the equality guard of the
Hub-shipped processor's copies (processing_galspec must stay self-contained, so it keeps its own)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from astropy import units as u

from galspec_hf import constants as C
from galspec_hf import spectral
from galspec_hf.models.galspec import processing_galspec as P

MANGA_SPECTRA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "manga" / "MaNGA_test_spectra.fits.gz"

GRIDS = {
    "desi": 3600.0 + 0.8 * np.arange(7781),
    "manga_log": 10 ** (C.MANGA_LOGLAM0 + C.MANGA_LOGLAM_STEP * np.arange(C.MANGA_NUM_PIXELS)),
    "irregular": np.cumsum(np.random.default_rng(0).uniform(0.1, 2.0, 50)) + 4000.0,
    "two_pixels": np.array([5000.0, 5001.5]),
}


# ----------------------------------------------------------------------------------------
# Equality guard: the processor's copies equal the library's functions
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GRIDS))
def test_processor_bin_edges_equal_pixel_edges(name):
    np.testing.assert_array_equal(P._bin_edges(GRIDS[name]), spectral.pixel_edges(GRIDS[name]))


@pytest.mark.parametrize("wavelength_a", [4769.9, 6469.6, 9150.0])
def test_processor_nanomaggies_conversion_equals_spectral(wavelength_a):
    flux = np.array([0.0, 1.0, 3.7, 1e4, -2.0])
    np.testing.assert_allclose(
        P.nanomaggies_to_flux_density(flux, wavelength_a),
        spectral.nanomaggies_to_flux_density(flux, wavelength_a),
        rtol=1e-12,
        atol=0.0,
    )
    tensor = torch.tensor(flux, dtype=torch.float64)
    torch.testing.assert_close(
        P.nanomaggies_to_flux_density(tensor, wavelength_a),
        spectral.nanomaggies_to_flux_density(tensor, wavelength_a),
        rtol=1e-12,
        atol=0.0,
    )
    assert P.NANOMAGGY_ERG_S_CM2_HZ == pytest.approx(spectral._NANOMAGGY_F_NU, rel=1e-12)
    assert P.SPEED_OF_LIGHT_A_PER_S == C.SPEED_OF_LIGHT_A_PER_S
    assert P.FLUX_UNIT == C.FLUX_UNIT_ERG_S_CM2_A


# ----------------------------------------------------------------------------------------
# Pixel edges and rebinning
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GRIDS))
def test_pixel_edges_are_midpoints_with_mirrored_ends(name):
    wavelength = GRIDS[name]
    edges = spectral.pixel_edges(wavelength)
    assert edges.shape == (wavelength.size + 1,)
    np.testing.assert_allclose(edges[1:-1], 0.5 * (wavelength[1:] + wavelength[:-1]), rtol=1e-15)
    assert edges[0] == pytest.approx(wavelength[0] - 0.5 * (wavelength[1] - wavelength[0]), rel=1e-14)
    assert edges[-1] == pytest.approx(wavelength[-1] + 0.5 * (wavelength[-1] - wavelength[-2]), rel=1e-14)
    assert np.all(np.diff(edges) > 0)


def test_rebin_flux_conserving_conserves_the_integral():
    wavelength = np.linspace(3000.0, 8000.0, 5001)
    flux = 1.0 + np.exp(-0.5 * ((wavelength - 5000.0) / 3.0) ** 2) * 10 + 1e-4 * wavelength
    edges = np.linspace(3500.0, 7500.0, 401)
    rebinned = spectral.rebin_flux_conserving(wavelength, flux, edges)
    inside = (wavelength >= edges[0]) & (wavelength <= edges[-1])
    assert (rebinned * np.diff(edges)).sum() == pytest.approx(np.trapezoid(flux[inside], wavelength[inside]), rel=1e-9)
    # rows of a 2-D input are rebinned independently; keep_all returns the cumulative integral at the edges
    both = spectral.rebin_flux_conserving(wavelength, np.stack([flux, 2 * flux]), edges)
    np.testing.assert_allclose(both, [rebinned, 2 * rebinned])
    cumulative = spectral.rebin_flux_conserving(wavelength, flux, edges, keep_all=True)
    np.testing.assert_allclose(np.diff(cumulative) / np.diff(edges), rebinned)


# ----------------------------------------------------------------------------------------
# Line-spread functions
# ----------------------------------------------------------------------------------------
def test_one_manga_lsf_for_simulator_and_fitter():
    from galspec_hf.analysis.lines import default_instrumental_sigma_kms  # noqa: PLC0415
    from galspec_hf.simulate import ifu  # noqa: PLC0415

    wavelength = ifu.manga_wavelength()
    assert ifu.manga_sigma_kms is spectral.manga_sigma_kms
    assert default_instrumental_sigma_kms is spectral.manga_sigma_kms
    table = np.asarray(C.MANGA_RESOLUTION_TABLE)
    np.testing.assert_allclose(spectral.manga_resolution(table[:, 0]), table[:, 1])
    sigma = spectral.manga_sigma_kms(wavelength)
    expected = C.SPEED_OF_LIGHT_KMS / (spectral.manga_resolution(wavelength) * 2.3548200450309493)
    np.testing.assert_allclose(sigma, expected)
    assert 50.0 < sigma.min() and sigma.max() < 95.0


@pytest.mark.skipif(not MANGA_SPECTRA.exists(), reason="needs ../shared/data/manga/MaNGA_test_spectra.fits.gz")
def test_manga_lsf_is_the_measured_sres():
    from astropy.io import fits  # noqa: PLC0415

    with fits.open(MANGA_SPECTRA) as hdul:
        wavelength = np.asarray(hdul["WAVE"].data, float)
        sres = np.median(np.asarray(hdul["SRES"].data, float).reshape(-1, wavelength.size), axis=0)
    inside = (wavelength >= C.MANGA_RESOLUTION_TABLE[0][0]) & (wavelength <= C.MANGA_RESOLUTION_TABLE[-1][0])
    # sampled every 600 A, the table follows the SRES between its knots to 5 %
    np.testing.assert_allclose(spectral.manga_resolution(wavelength[inside]), sres[inside], rtol=0.05)
    table = np.asarray(C.MANGA_RESOLUTION_TABLE)
    np.testing.assert_allclose(table[:, 1], np.interp(table[:, 0], wavelength, sres), atol=1.5)


def test_desi_lsf():
    wavelength = np.array([3500.0, 4500.0, 5780.0, 6500.0, 7600.0, 9000.0, 9900.0])
    sigma_kms = spectral.desi_sigma_kms(wavelength)
    # inside one arm: that arm's linear sigma in pixels; in an overlap: the mean of the two arms
    b = spectral.desi_sigma_pix("b", wavelength)
    r = spectral.desi_sigma_pix("r", wavelength)
    to_kms = C.DESI_WAVELENGTH_STEP_A / wavelength * C.SPEED_OF_LIGHT_KMS
    assert sigma_kms[1] == pytest.approx(b[1] * to_kms[1])
    assert sigma_kms[2] == pytest.approx(0.5 * (b[2] + r[2]) * to_kms[2])
    assert sigma_kms[0] == pytest.approx(b[0] * to_kms[0])  # below the b arm: the b arm's formula
    assert np.all((sigma_kms > 20) & (sigma_kms < 100))
    with pytest.raises(ValueError, match="arm"):
        spectral.desi_sigma_pix("x", wavelength)


def test_resolution_to_sigma_kms():
    expected = C.SPEED_OF_LIGHT_KMS / 2000.0 / 2.3548200450309493
    assert spectral.resolution_to_sigma_kms(2000.0) == pytest.approx(expected)


# ----------------------------------------------------------------------------------------
# AB photometry
# ----------------------------------------------------------------------------------------
def test_ab_photometry_matches_astropy():
    assert spectral.f_nu_to_nanomaggies(3.631e-29) == pytest.approx(1.0, rel=1e-12)
    assert spectral.ab_mag_to_f_nu(22.5) == pytest.approx(3.631e-29, rel=1e-12)
    assert spectral.ab_mag_to_f_nu(0.0) == pytest.approx((0.0 * u.ABmag).to(u.erg / u.s / u.cm**2 / u.Hz).value)
    wavelength = 6469.6 * u.AA
    expected = (3.631e-6 * u.Jy).to(u.erg / u.s / u.cm**2 / u.AA, equivalencies=u.spectral_density(wavelength))
    assert spectral.nanomaggies_to_flux_density(1.0, 6469.6) == pytest.approx(expected.value / 1e-17, rel=1e-6)
