"""Tests of galspec_hf.analysis.lines (emission-line maps, Dn4000) and ``galspec line-maps``."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from scipy.special import erf

from galspec_hf import constants as C
from galspec_hf.analysis import LINE_NAMES, LineMaps, desi_instrumental_sigma_kms, dn4000, fit_emission_lines
from galspec_hf.analysis.lines import SIGMA_LIMIT_KMS, VELOCITY_LIMIT_KMS
from galspec_hf.analysis.synthetic import GALAXY_TYPES, stellar_line_spectra
from galspec_hf.cli import main
from galspec_hf.data import read_manga_maps

from ..galspec_testing import fit_manga_test_spectra

SIGMA_INST_KMS = 60.0
LINES = C.EMISSION_LINES_VACUUM_A
BALMER = ("Halpha", "Hbeta")
NO_VALUE = (1 << C.DAP_MASK_NOVALUE_BIT) | (1 << C.DAP_MASK_DONOTUSE_BIT)


def manga_wavelength() -> np.ndarray:
    return 10 ** (C.MANGA_LOGLAM0 + C.MANGA_LOGLAM_STEP * np.arange(C.MANGA_NUM_PIXELS))


def line_fluxes(n: int, scale=1.0) -> dict:
    """Fluxes (1e-17 erg/s/cm2) of a star-forming-like spectrum, with the fixed doublet ratios."""
    scale = np.broadcast_to(np.asarray(scale, float), (n,))
    base = {"Halpha": 10.0, "Hbeta": 3.5, "NII_6585": 4.0, "OIII_5008": 3.0, "SII_6718": 2.0, "SII_6733": 1.4,
            "OII_3727": 2.0, "OII_3730": 3.0}  # fmt: skip
    fluxes = {name: value * scale for name, value in base.items()}
    fluxes["NII_6550"] = fluxes["NII_6585"] / C.NII_DOUBLET_RATIO
    fluxes["OIII_4960"] = fluxes["OIII_5008"] / C.OIII_DOUBLET_RATIO
    return fluxes


def synthetic_spectra(wavelength, redshift, fluxes, velocity, sigma, noise, rng, continuum=1.0):
    """Pixel-integrated Gaussian lines on a sloped continuum, plus Gaussian noise of std ``noise``.

    ``velocity`` and ``sigma`` are dicts {"balmer": (n,), "forbidden": (n,)} in km/s (intrinsic sigma); ``sigma``
    may also give a line its own, by name (a doublet's members both).
    Returns flux (n, L), ivar (n, L), noise-free model (n, L).
    """
    n = np.shape(redshift)[0]
    edges = np.concatenate(
        [[1.5 * wavelength[0] - 0.5 * wavelength[1]], 0.5 * (wavelength[1:] + wavelength[:-1]),
         [1.5 * wavelength[-1] - 0.5 * wavelength[-2]]]
    )  # fmt: skip
    width = np.diff(edges)
    model = np.broadcast_to(continuum * (1.0 + 0.2 * (wavelength - 5000.0) / 5000.0), (n, wavelength.size)).copy()
    c = C.SPEED_OF_LIGHT_KMS
    for name, flux in fluxes.items():
        group = "balmer" if name in BALMER else "forbidden"
        centre = LINES[name] * (1 + redshift) * (1 + velocity[group] / c)
        s = centre * np.hypot(sigma.get(name, sigma[group]), SIGMA_INST_KMS) / c
        cdf = 0.5 * (1 + erf((edges[None] - centre[:, None]) / (np.sqrt(2) * s[:, None])))
        model += flux[:, None] * np.diff(cdf, axis=1) / width
    ivar = np.full(model.shape, 1.0 / noise**2)
    return model + noise * rng.standard_normal(model.shape), ivar, model


def _fit_random_spectra(seed: int, halpha_flux_range: tuple[float, float], forbidden_sigma_scatter: bool):
    """Fit 300 noisy spectra at random redshifts, velocities and dispersions (noise 0.1 per pixel).

    Forbidden lines move with the Balmer lines +- 30 km/s; their dispersion is the Balmer one, times
    U(0.8, 1.2) when ``forbidden_sigma_scatter``. Returns (maps, fluxes, velocity, sigma, redshift).

    The spectra have a straight continuum, which is the local-continuum mode's own model (a straight line per
    complex) and which stellar templates cannot represent: these tests check the local mode
    (``continuum="local"``); the template mode is checked on stellar continua in test_template_continuum_*.
    """
    rng = np.random.default_rng(seed)
    n = 300
    wavelength = manga_wavelength()
    redshift = rng.uniform(0.02, 0.12, n)
    velocity = {"balmer": rng.uniform(-250, 250, n)}
    velocity["forbidden"] = velocity["balmer"] + rng.normal(0, 30, n)
    sigma = {"balmer": rng.uniform(40, 160, n)}
    sigma["forbidden"] = sigma["balmer"] * rng.uniform(0.8, 1.2, n) if forbidden_sigma_scatter else sigma["balmer"]
    fluxes = line_fluxes(n, rng.uniform(*halpha_flux_range, n))
    flux, ivar, _ = synthetic_spectra(wavelength, redshift, fluxes, velocity, sigma, 0.1, rng)
    maps = fit_emission_lines(wavelength, flux, ivar, redshift, instrumental_sigma_kms=SIGMA_INST_KMS,
                              continuum="local")  # fmt: skip
    return maps, fluxes, velocity, sigma, redshift


@pytest.fixture(scope="module")
def noisy_fit():
    """300 spectra at different redshifts, velocities and dispersions, S/N(H-alpha) ~ 20."""
    return _fit_random_spectra(1, (0.7, 1.5), forbidden_sigma_scatter=True)


def test_recovers_injected_fluxes_with_honest_errors(noisy_fit):
    maps, fluxes, _, _, _ = noisy_fit
    assert maps.shape == (300,)
    for name in LINE_NAMES:
        assert np.all(np.isfinite(maps.flux[name])), name
        pull = (maps.flux[name] - fluxes[name]) / maps.flux_err[name]
        assert abs(np.mean(pull)) < 0.25, (name, np.mean(pull))
        assert 0.85 < np.std(pull) < 1.15, (name, np.std(pull))
        assert np.all(np.abs(pull) < 5), name
    # S/N ~ 20 on H-alpha: errors are those of the noise, not something much bigger
    assert np.median(fluxes["Halpha"] / maps.flux_err["Halpha"]) > 10


def test_errors_stay_honest_at_moderate_signal_to_noise():
    """At S/N(H-alpha) ~ 5 the free kinematics start to matter; the errors must still describe the scatter."""
    maps, fluxes, _, _, _ = _fit_random_spectra(9, (0.3, 0.5), forbidden_sigma_scatter=False)
    assert 4 < np.median(fluxes["Halpha"] / maps.flux_err["Halpha"]) < 7
    for name in ("Halpha", "Hbeta", "NII_6585", "OIII_5008", "SII_6718"):
        pull = (maps.flux[name] - fluxes[name]) / maps.flux_err[name]
        assert abs(np.mean(pull)) < 0.25 and 0.85 < np.std(pull) < 1.2, (name, np.mean(pull), np.std(pull))


def test_recovers_kinematics(noisy_fit):
    maps, _, velocity, sigma, _ = noisy_fit
    for line, group in (("Halpha", "balmer"), ("NII_6585", "forbidden"), ("OIII_5008", "forbidden")):
        pull_v = (maps.velocity_kms[line] - velocity[group]) / maps.velocity_err_kms[line]
        assert abs(np.mean(pull_v)) < 0.25 and 0.8 < np.std(pull_v) < 1.2, (line, np.mean(pull_v), np.std(pull_v))
        d_sigma = maps.dispersion_kms[line] - sigma[group]
        assert abs(np.median(d_sigma)) < 5.0, (line, np.median(d_sigma))
        pull_s = d_sigma / maps.dispersion_err_kms[line]
        assert 0.75 < np.std(pull_s) < 1.25, (line, np.std(pull_s))
    # tied within a group, free between groups
    np.testing.assert_array_equal(maps.velocity_kms["Halpha"], maps.velocity_kms["Hbeta"])
    np.testing.assert_array_equal(maps.dispersion_kms["NII_6585"], maps.dispersion_kms["SII_6733"])
    assert np.std(maps.velocity_kms["Halpha"] - maps.velocity_kms["NII_6585"]) > 15.0
    np.testing.assert_allclose(maps.instrumental_sigma_kms["Halpha"], SIGMA_INST_KMS)


def test_free_dispersions_recover_each_lines_width():
    """Lines of one kinematic group with different widths (H-alpha 170, H-beta 130, [NII] 190, [OIII] 140 km/s):
    the tied fit gives each group one width (H-beta ~25 km/s too broad), the free fit each line its own, within
    a few km/s, with fluxes whose pulls stay unit-width; doublet members keep one width. ``auto`` frees them only
    in spectra whose strongest line reaches FREE_DISPERSION_MIN_SNR."""
    from galspec_hf.analysis.lines import FREE_DISPERSION_MIN_SNR

    rng = np.random.default_rng(12)
    n = 150
    wavelength = manga_wavelength()
    redshift = rng.uniform(0.02, 0.1, n)
    velocity = {"balmer": rng.uniform(-150, 150, n)}
    velocity["forbidden"] = velocity["balmer"]
    widths = {"Halpha": 170.0, "Hbeta": 130.0, "NII_6585": 190.0, "NII_6550": 190.0, "OIII_5008": 140.0,
              "OIII_4960": 140.0}  # fmt: skip
    sigma = {"balmer": np.full(n, 170.0), "forbidden": np.full(n, 170.0),
             **{name: np.full(n, value) for name, value in widths.items()}}  # fmt: skip
    scale = np.where(np.arange(n) < 120, rng.uniform(3.0, 5.0, n), 0.05)  # the last 30: faint
    fluxes = line_fluxes(n, scale)
    flux, ivar, _ = synthetic_spectra(wavelength, redshift, fluxes, velocity, sigma, 0.1, rng)
    fits = {mode: fit_emission_lines(wavelength, flux, ivar, redshift, instrumental_sigma_kms=SIGMA_INST_KMS,
                                     continuum="local", dispersions=mode)
            for mode in ("tied", "free", "auto")}  # fmt: skip
    bright = slice(0, 120)
    tied, free = fits["tied"], fits["free"]
    assert np.median(tied.dispersion_kms["Hbeta"][bright]) - 130.0 > 15.0  # one Balmer width, between the two
    for name in ("Halpha", "Hbeta", "NII_6585", "OIII_5008"):
        assert abs(np.median(free.dispersion_kms[name][bright]) - widths[name]) < 5.0, name
        pull = (free.flux[name][bright] - fluxes[name][bright]) / free.flux_err[name][bright]
        assert abs(np.mean(pull)) < 0.25 and 0.8 < np.std(pull) < 1.25, (name, np.mean(pull), np.std(pull))
    np.testing.assert_array_equal(free.dispersion_kms["NII_6550"], free.dispersion_kms["NII_6585"])
    np.testing.assert_array_equal(free.velocity_kms["Halpha"], free.velocity_kms["Hbeta"])  # velocities stay tied
    # auto: the bright spectra as free, the faint ones (strongest line below the threshold) as tied
    auto = fits["auto"]
    faint = tied.flux["Halpha"][120:] / tied.flux_err["Halpha"][120:]
    assert np.all(faint < FREE_DISPERSION_MIN_SNR)
    np.testing.assert_array_equal(auto.flux["Hbeta"][bright], free.flux["Hbeta"][bright])
    np.testing.assert_array_equal(auto.flux["Hbeta"][120:], tied.flux["Hbeta"][120:])
    with pytest.raises(ValueError, match="dispersions.*'loose'"):
        fit_emission_lines(wavelength, flux[:2], ivar[:2], redshift[:2], dispersions="loose")


def test_doublet_ratios_fixed(noisy_fit):
    maps = noisy_fit[0]
    np.testing.assert_allclose(maps.flux["NII_6585"] / maps.flux["NII_6550"], C.NII_DOUBLET_RATIO, rtol=1e-12)
    np.testing.assert_allclose(maps.flux["OIII_5008"] / maps.flux["OIII_4960"], C.OIII_DOUBLET_RATIO, rtol=1e-12)
    np.testing.assert_allclose(maps.flux_err["NII_6585"] / maps.flux_err["NII_6550"], C.NII_DOUBLET_RATIO)


def test_equivalent_width_sign_and_value():
    rng = np.random.default_rng(2)
    wavelength = manga_wavelength()
    n = 3
    redshift = np.array([0.0, 0.05, 0.1])
    zeros = {"balmer": np.zeros(n), "forbidden": np.zeros(n)}
    sigma = {"balmer": np.full(n, 80.0), "forbidden": np.full(n, 80.0)}
    fluxes = {"Halpha": np.array([20.0, 20.0, -5.0])}  # the last one in absorption
    flux, ivar, _ = synthetic_spectra(wavelength, redshift, fluxes, zeros, sigma, 1e-3, rng, continuum=2.0)
    maps = fit_emission_lines(
        wavelength, flux, ivar, redshift, instrumental_sigma_kms=SIGMA_INST_KMS, balmer_absorption=False
    )
    continuum = 2.0 * (1 + 0.2 * (LINES["Halpha"] * (1 + redshift) - 5000.0) / 5000.0)
    expected = fluxes["Halpha"] / continuum / (1 + redshift)  # rest frame, positive for emission
    np.testing.assert_allclose(maps.ew_rest_a["Halpha"], expected, rtol=2e-3)
    np.testing.assert_allclose(maps.continuum["Halpha"], continuum, rtol=2e-3)
    assert maps.ew_rest_a["Halpha"][0] > 0 > maps.ew_rest_a["Halpha"][2]
    assert np.all(maps.ew_rest_err_a["Halpha"] > 0)


def test_dn4000_value_and_error():
    rng = np.random.default_rng(3)
    wavelength = manga_wavelength()
    z = 0.07
    beta = 1.5  # f_nu ~ lambda^beta  <=>  f_lambda ~ lambda^(beta - 2)
    model = 3.0 * (wavelength / 4000.0) ** (beta - 2)
    # analytic: mean of lambda^beta over the rest bands (the 1 + z factors cancel in the ratio)
    red = ((4100.0 ** (beta + 1)) - 4000.0 ** (beta + 1)) / (beta + 1) / 100.0
    blue = ((3950.0 ** (beta + 1)) - 3850.0 ** (beta + 1)) / (beta + 1) / 100.0
    value, error = dn4000(wavelength, model, np.ones_like(model), z)
    assert value == pytest.approx(red / blue, rel=2e-3)
    noise = 0.2
    flux = model + noise * rng.standard_normal((400, wavelength.size))
    values, errors = dn4000(wavelength, flux, np.full(flux.shape, noise**-2), np.full(400, z))
    pull = (values - red / blue) / errors
    assert abs(np.mean(pull)) < 0.2 and 0.85 < np.std(pull) < 1.15
    # a band more than half masked gives NaN
    mask = np.zeros(wavelength.shape, int)
    mask[(wavelength > 3850 * (1 + z)) & (wavelength < 3920 * (1 + z))] = 1
    value, error = dn4000(wavelength, model, np.ones_like(model), z, mask=mask)
    assert np.isnan(value) and np.isnan(error)


def test_layouts_cube_and_single_spectrum():
    rng = np.random.default_rng(4)
    wavelength = manga_wavelength()
    ny, nx = 3, 4
    n = ny * nx
    z = np.full(n, 0.04)
    velocity = {"balmer": rng.uniform(-100, 100, n), "forbidden": rng.uniform(-100, 100, n)}
    sigma = {"balmer": np.full(n, 70.0), "forbidden": np.full(n, 70.0)}
    flux, ivar, _ = synthetic_spectra(wavelength, z, line_fluxes(n), velocity, sigma, 0.1, rng)
    kwargs = {"instrumental_sigma_kms": SIGMA_INST_KMS}
    flat = fit_emission_lines(wavelength, flux, ivar, z, **kwargs)
    cube = fit_emission_lines(wavelength, flux.reshape(ny, nx, -1), ivar.reshape(ny, nx, -1), 0.04, **kwargs)
    manga = fit_emission_lines(
        wavelength, np.moveaxis(flux.reshape(ny, nx, -1), -1, 0), np.moveaxis(ivar.reshape(ny, nx, -1), -1, 0),
        0.04, spectral_axis=0, chunk_size=5, **kwargs,
    )  # fmt: skip
    single = fit_emission_lines(wavelength, flux[5], ivar[5], 0.04, **kwargs)
    assert cube.shape == manga.shape == (ny, nx) and single.shape == ()
    for name in ("Halpha", "OIII_5008"):
        np.testing.assert_allclose(cube.flux[name].ravel(), flat.flux[name], rtol=1e-6)
        np.testing.assert_allclose(manga.flux[name], cube.flux[name], rtol=1e-6)
        np.testing.assert_allclose(single.flux[name], flat.flux[name][5], rtol=1e-6)
        assert np.all(np.abs(cube.velocity_kms[name].ravel() - velocity[_group(name)]) < 30)


def _group(name):
    return "balmer" if name in BALMER else "forbidden"


def test_masked_and_uncovered_lines_are_nan():
    rng = np.random.default_rng(5)
    wavelength = manga_wavelength()
    n = 2
    z = np.array([0.03, 0.03])
    zeros = {"balmer": np.zeros(n), "forbidden": np.zeros(n)}
    flux, ivar, _ = synthetic_spectra(wavelength, z, line_fluxes(n), zeros, zeros, 0.1, rng)
    mask = np.zeros(flux.shape, int)
    mask[1] = 1  # second spectrum entirely masked
    blue_cut = wavelength > 4200.0  # [OII] not covered
    maps = fit_emission_lines(
        wavelength[blue_cut], flux[:, blue_cut], ivar[:, blue_cut], z, mask=mask[:, blue_cut],
        instrumental_sigma_kms=SIGMA_INST_KMS,
    )  # fmt: skip
    assert np.isnan(maps.flux["OII_3727"][0]) and maps.mask["OII_3727"][0] == NO_VALUE
    assert np.isfinite(maps.flux["Halpha"][0]) and maps.mask["Halpha"][0] == 0
    assert np.isnan(maps.dn4000[0])  # the blue band (3850-3950 rest) is not covered either
    for name in LINE_NAMES:
        assert np.isnan(maps.flux[name][1]) and maps.mask[name][1] == NO_VALUE
    assert np.isnan(maps.chi2_reduced[1])


def test_bad_input_names_the_argument():
    wavelength = manga_wavelength()
    flux = np.ones((2, wavelength.size))
    with pytest.raises(ValueError, match="wavelength"):
        fit_emission_lines(wavelength[::-1], flux, flux, 0.1)
    with pytest.raises(ValueError, match="flux"):
        fit_emission_lines(wavelength, flux[:, :-1], flux[:, :-1], 0.1)
    with pytest.raises(ValueError, match="ivar"):
        fit_emission_lines(wavelength, flux, flux[:1], 0.1)
    with pytest.raises(ValueError, match="redshift"):
        fit_emission_lines(wavelength, flux, flux, np.zeros(3))
    with pytest.raises(ValueError, match="instrumental_sigma_kms"):
        fit_emission_lines(wavelength, flux, flux, 0.1, instrumental_sigma_kms=np.ones(5))
    with pytest.raises(ValueError, match="mask"):
        fit_emission_lines(wavelength, flux, flux, 0.1, mask=np.zeros(3))


def _small_cube_maps(rng) -> LineMaps:
    wavelength = manga_wavelength()
    ny, nx = 4, 5
    yy, xx = np.mgrid[0:ny, 0:nx]
    profile = np.exp(-0.5 * ((yy - 1.5) ** 2 + (xx - 2) ** 2) / 1.5**2).ravel()
    n = ny * nx
    velocity = {"balmer": 20.0 * (xx.ravel() - 2), "forbidden": 20.0 * (xx.ravel() - 2)}
    sigma = {"balmer": np.full(n, 60.0), "forbidden": np.full(n, 60.0)}
    flux, ivar, _ = synthetic_spectra(wavelength, np.full(n, 0.05), line_fluxes(n, profile), velocity, sigma, 0.05,
                                      rng)  # fmt: skip
    maps = fit_emission_lines(
        wavelength, flux.reshape(ny, nx, -1), ivar.reshape(ny, nx, -1), 0.05, instrumental_sigma_kms=SIGMA_INST_KMS
    )
    return maps, line_fluxes(n, profile)


def test_to_fits_is_read_by_read_manga_maps_and_plot(tmp_path):
    maps, truth = _small_cube_maps(np.random.default_rng(6))
    path = maps.to_fits(tmp_path / "maps.fits", header={"PLATEIFU": "test"})
    read = read_manga_maps(path)
    assert read.emline_flux.shape == (len(LINE_NAMES), 4, 5)
    assert "Ha-6564" in read.line_names and "NII-6585" in read.line_names
    flux, ivar, mask = read.line_map("Ha-6564")
    np.testing.assert_allclose(flux, maps.flux["Halpha"], rtol=1e-6)
    np.testing.assert_allclose(1 / np.sqrt(ivar), maps.flux_err["Halpha"], rtol=1e-5)
    assert np.all(mask == 0)
    np.testing.assert_allclose(read.gas_velocity[read.line_index("Hb-4862")], maps.velocity_kms["Hbeta"], rtol=1e-5)
    with fits.open(path) as hdul:
        assert hdul[0].header["PLATEIFU"] == "test"
        assert hdul["SPECINDEX"].header["C01"] == "Dn4000"
        np.testing.assert_allclose(hdul["SPECINDEX"].data[0], maps.dn4000, rtol=1e-6)
        assert hdul["EMLINE_GFLUX"].header["BUNIT"] == "1E-17 erg/s/cm^2/spaxel"
    png = maps.plot(tmp_path / "maps.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="2-D"):
        LineMaps(**{**maps.__dict__, "dn4000": maps.dn4000.ravel()}).plot(tmp_path / "x.png")


def _write_logcube(path, flux_cube, ivar_cube, wavelength, z=None):
    """A LOGCUBE in the real DRP layout: FLUX/IVAR/MASK (L, ny, nx) with a 3-D WCS, WAVE, SPECRES."""
    _, ny, nx = flux_cube.shape
    primary = fits.PrimaryHDU()
    primary.header["OBJRA"], primary.header["OBJDEC"] = 150.0, 2.0
    if z is not None:
        primary.header["Z"] = z
    scale = C.MANGA_SPAXEL_ARCSEC / 3600.0
    cards = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CTYPE3": "WAVE-LOG", "CRPIX1": nx / 2 + 0.5,
             "CRPIX2": ny / 2 + 0.5, "CRPIX3": 1.0, "CRVAL1": 150.0, "CRVAL2": 2.0, "CRVAL3": float(wavelength[0]),
             "CD1_1": -scale, "CD2_2": scale, "CD3_3": float(wavelength[0] * np.log(10) * C.MANGA_LOGLAM_STEP),
             "CUNIT1": "deg", "CUNIT2": "deg", "CUNIT3": "Angstrom"}  # fmt: skip
    hdus = [primary]
    for name, data in (("FLUX", flux_cube), ("IVAR", ivar_cube), ("MASK", np.zeros(flux_cube.shape, np.int32))):
        hdu = fits.ImageHDU(data.astype(np.float32) if name != "MASK" else data, name=name)
        hdu.header.update(cards)
        hdus.append(hdu)
    hdus.append(fits.ImageHDU(wavelength, name="WAVE"))
    specres = C.SPEED_OF_LIGHT_KMS / (SIGMA_INST_KMS * C.FWHM_PER_SIGMA)  # R giving sigma_inst = 60 km/s
    hdus.append(fits.ImageHDU(np.full(wavelength.size, specres), name="SPECRES"))
    fits.HDUList(hdus).writeto(path)
    return path


def test_cli_line_maps(tmp_path, capsys):
    rng = np.random.default_rng(7)
    wavelength = manga_wavelength()
    ny, nx = 3, 3
    n = ny * nx
    zeros = {"balmer": np.zeros(n), "forbidden": np.zeros(n)}
    sigma = {"balmer": np.full(n, 50.0), "forbidden": np.full(n, 50.0)}
    scale = np.linspace(0.5, 2.0, n)
    flux, ivar, _ = synthetic_spectra(wavelength, np.full(n, 0.025), line_fluxes(n, scale), zeros, sigma, 0.05, rng)
    flux_cube = np.moveaxis(flux.reshape(ny, nx, -1), -1, 0)
    ivar_cube = np.moveaxis(ivar.reshape(ny, nx, -1), -1, 0)
    no_z = _write_logcube(tmp_path / "noz-LOGCUBE.fits", flux_cube, ivar_cube, wavelength)
    assert main(["line-maps", str(no_z), "--out", str(tmp_path / "a"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--redshift" in err
    assert main(["line-maps", str(tmp_path / "missing.fits"), "--out", str(tmp_path / "a")]) == 2
    (tmp_path / "junk.fits").write_text("not a FITS file")
    assert main(["line-maps", str(tmp_path / "junk.fits"), "--out", str(tmp_path / "a"), "--redshift", "0.1"]) == 2
    assert "junk.fits" in capsys.readouterr().err

    with_z = _write_logcube(tmp_path / "z-LOGCUBE.fits", flux_cube, ivar_cube, wavelength, z=0.025)
    assert main(["line-maps", str(with_z), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert (tmp_path / "out" / "line_maps.png").is_file()
    read = read_manga_maps(tmp_path / "out" / "line_maps.fits")
    ha, ha_ivar, _ = read.line_map("Ha-6564")
    truth = (10.0 * scale).reshape(ny, nx)
    pull = (ha - truth) * np.sqrt(ha_ivar)
    assert np.all(np.abs(pull) < 5), pull
    with fits.open(tmp_path / "out" / "line_maps.fits") as hdul:
        assert hdul[0].header["Z"] == pytest.approx(0.025) and hdul[0].header["OBJRA"] == 150.0
        assert hdul[0].header["DISPERS"] == "tied" and hdul[0].header["CONTREFT"] == "same"
        # the SPECRES of the cube sets the instrumental sigma
        np.testing.assert_allclose(hdul["EMLINE_INSTSIGMA"].data, SIGMA_INST_KMS, rtol=1e-4)
    # --redshift overrides the header; --instrument overrides SPECRES
    args = ["line-maps", str(no_z), "--out", str(tmp_path / "b"), "--redshift", "0.025", "--instrument", "desi"]
    assert main([*args, "--no-progress", "--continuum-refit", "off"]) == 0
    with fits.open(tmp_path / "b" / "line_maps.fits") as hdul:
        inst = hdul["EMLINE_INSTSIGMA"].data[list(LINE_NAMES).index("Halpha")]
        assert hdul[0].header["CONTREFT"] == "off"
    expected = desi_instrumental_sigma_kms(LINES["Halpha"] * 1.025)
    np.testing.assert_allclose(inst, expected, rtol=1e-4)
    # --templates: a library of one's own (here ten MILES-HC spectra in the shipped .npz layout), named in the header
    from galspec_hf.analysis.continuum import load_continuum_templates

    shipped = load_continuum_templates()
    library = tmp_path / "ten.npz"
    np.savez(library, wavelength_rest_a=shipped.wavelength_rest_a, flux=shipped.flux[:10], fwhm_a=shipped.fwhm_a)
    assert main(["line-maps", str(with_z), "--out", str(tmp_path / "c"), "--no-progress", "--templates",
                 str(library)]) == 0  # fmt: skip
    with fits.open(tmp_path / "c" / "line_maps.fits") as hdul:
        assert hdul[0].header["CONTTPL"] == "ten.npz"
    ha_ten = read_manga_maps(tmp_path / "c" / "line_maps.fits").line_map("Ha-6564")[0]
    assert np.all(np.abs(ha_ten / truth - 1) < 0.1)
    capsys.readouterr()
    np.savez(tmp_path / "bad.npz", flux=shipped.flux[:2])
    for extra, message in ((["--templates", str(tmp_path / "none.npz")], "file not found"),
                           (["--templates", str(library), "--continuum", "local"], "--continuum template"),
                           (["--templates", str(tmp_path / "bad.npz")], "wavelength_rest_a")):  # fmt: skip
        assert main(["line-maps", str(with_z), "--out", str(tmp_path / "d"), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err


def test_desi_resolution_in_the_published_range():
    wavelength = np.linspace(3600.0, 9824.0, 50)
    resolution = C.SPEED_OF_LIGHT_KMS / (desi_instrumental_sigma_kms(wavelength) * C.FWHM_PER_SIGMA)
    # DESI Collaboration (2022, AJ 164, 207): R ~ 2000 at the blue end to ~5500 at the red end
    assert 1900 < resolution.min() < 2500 and 5000 < resolution.max() < 6000
    assert resolution[-1] > resolution[0]


@pytest.mark.realdata
def test_real_manga_spectra_are_physically_sane(shared_file):
    spectra, maps = fit_manga_test_spectra(shared_file("manga/MaNGA_test_spectra.fits.gz"))
    assert maps.shape == (8,)
    # the fully masked spectrum gives NaN, flagged
    dead = np.all(spectra.mask != 0, axis=1) | np.all(spectra.ivar <= 0, axis=1)
    assert dead.sum() == 1
    for name in LINE_NAMES:
        assert np.all(np.isnan(maps.flux[name][dead])) and np.all(maps.mask[name][dead] == NO_VALUE)
        assert np.all(np.isfinite(maps.flux[name][~dead])), name
    # fixed doublet ratio, exactly
    np.testing.assert_allclose(maps.flux["NII_6585"][~dead] / maps.flux["NII_6550"][~dead], C.NII_DOUBLET_RATIO)
    # Dn4000 of galaxies: 0.9-2.5 (within 2 sigma)
    dn, dn_err = maps.dn4000[~dead], maps.dn4000_err[~dead]
    assert np.all(dn + 2 * dn_err > 0.9) and np.all(dn - 2 * dn_err < 2.5), (dn, dn_err)

    ha_sn = maps.flux["Halpha"] / maps.flux_err["Halpha"]
    nii_sn = maps.flux["NII_6585"] / maps.flux_err["NII_6585"]
    # a fit whose kinematics sit at the search limits is flagged NEARBOUND, and its kinematics are not physical
    # values: spectrum 0 (a stellar dispersion of ~290 km/s) leaves a broad residual under H-alpha + [NII] that
    # the MaNGA DAP also fits at its own 1000 km/s bound and flags NEAR_BOUND (all four lines; [NII] of spectrum 1
    # too; tests/analysis/test_dap_agreement.py runs that fit). The flag must be set exactly where the limits are
    # reached.
    near_bound = {name: (maps.mask[name] & (1 << C.DAP_MASK_NEARBOUND_BIT)) != 0 for name in ("Halpha", "NII_6585")}
    for name, flagged in near_bound.items():
        at_limit = (maps.dispersion_kms[name] >= 0.99 * SIGMA_LIMIT_KMS) | (
            np.abs(maps.velocity_kms[name]) >= 0.99 * VELOCITY_LIMIT_KMS
        )
        np.testing.assert_array_equal(flagged[~dead], at_limit[~dead], err_msg=name)
    detected_ha = (ha_sn > 5) & ~near_bound["Halpha"]
    detected_nii = (nii_sn > 5) & ~near_bound["NII_6585"]
    assert detected_ha.sum() >= 2 and detected_nii.sum() >= 3, (ha_sn, nii_sn)
    # Balmer decrement at least ~ case B (2.86) minus a little, within 2 sigma, where H-alpha is detected
    ratio = maps.flux["Halpha"] / maps.flux["Hbeta"]
    ratio_err = np.abs(ratio) * np.hypot(1 / ha_sn, maps.flux_err["Hbeta"] / maps.flux["Hbeta"])
    assert np.all((ratio > 0)[detected_ha]) and np.all((ratio + 2 * ratio_err)[detected_ha] >= 2.5), ratio
    # velocities relative to the file's redshift: within a few hundred km/s where the lines are detected
    assert np.all(np.abs(maps.velocity_kms["Halpha"][detected_ha]) < 300)
    assert np.all(np.abs(maps.velocity_kms["NII_6585"][detected_nii]) < 300)
    assert np.all(maps.dispersion_kms["NII_6585"][detected_nii] < 300)


@pytest.mark.realdata
def test_fits_output_matches_real_dap_conventions(shared_file, tmp_path):
    """Units and channel names cross-checked against a real DAP MAPS file (a different galaxy: no values)."""
    real_path = shared_file("manga/manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz")
    real = read_manga_maps(real_path)
    maps, _ = _small_cube_maps(np.random.default_rng(8))
    path = maps.to_fits(tmp_path / "maps.fits")
    ours = read_manga_maps(path)
    assert set(ours.line_names) <= set(real.line_names)
    with fits.open(real_path) as real_hdul, fits.open(path) as our_hdul:
        for hdu in ("EMLINE_GFLUX", "EMLINE_GFLUX_IVAR", "EMLINE_GVEL", "EMLINE_GSIGMA", "EMLINE_INSTSIGMA",
                    "EMLINE_GEW"):  # fmt: skip
            assert our_hdul[hdu].header["BUNIT"] == real_hdul[hdu].header["BUNIT"], hdu
        channels = [v for k, v in real_hdul["SPECINDEX"].header.items() if k.startswith("C") and k[1:].isdigit()]
        assert our_hdul["SPECINDEX"].header["C01"] in channels
        real_bits = real_hdul["EMLINE_GFLUX_MASK"].header.get("MASKNAME", "MANGA_DAPPIXMASK")
        assert real_bits == "MANGA_DAPPIXMASK"


@pytest.mark.slow
def test_against_synthetic_truth(tmp_path):
    """Fit a simulated MaNGA-format cube and compare with its truth MAPS (galspec_hf.simulate).

    The simulator's default kcorrect templates are sampled at R ~ 1000 (docs/SIMULATION.md): their absorption lines
    are smoother than real ones, which the local continuum follows and MILES-HC templates cannot (template mode:
    H-alpha pull width 1.63 here). So this checks ``--continuum local``; the template mode is checked on sharp
    (FSPS) continua in test_template_continuum_*.
    """
    simulate = pytest.importorskip("galspec_hf.simulate", reason="synthetic survey generator not available")
    written = simulate.simulate_survey(tmp_path / "sim", n_galaxies=1, n_ifu=1, seed=0, ifu_spaxels=12, progress=False)
    cube_path, truth_path = written["logcubes"][0], written["maps"][0]
    args = ["line-maps", str(cube_path), "--out", str(tmp_path / "fit"), "--no-progress", "--continuum", "local"]
    assert main(args) == 0
    fitted = read_manga_maps(tmp_path / "fit" / "line_maps.fits")
    truth = read_manga_maps(truth_path)
    for channel in ("Ha-6564", "NII-6585", "Hb-4862"):
        flux, ivar, mask = fitted.line_map(channel)
        true_flux, true_ivar, true_mask = truth.line_map(channel)
        good = (true_flux * np.sqrt(true_ivar) > 3) & (true_mask == 0) & (mask == 0)
        assert good.sum() >= 20, (channel, good.sum())
        r = np.corrcoef(flux[good], true_flux[good])[0, 1]
        assert r > 0.9, (channel, r)
        bias_dex = np.median(np.log10(np.clip(flux[good], 1e-6, None) / true_flux[good]))
        assert abs(bias_dex) < 0.1, (channel, bias_dex)
        pull = (flux[good] - true_flux[good]) * np.sqrt(ivar[good])
        assert 0.7 < np.std(pull) < 1.4, (channel, np.std(pull))
    velocity = fitted.gas_velocity[fitted.line_index("Ha-6564")]
    true_velocity = truth.gas_velocity[truth.line_index("Ha-6564")]
    flux, _, _ = fitted.line_map("Ha-6564")
    strong = flux > np.nanpercentile(flux, 50)
    assert np.median(np.abs(velocity - true_velocity)[strong]) < 15.0


def test_cli_on_package_test_logcube(tmp_path):
    """``galspec line-maps`` on the LOGCUBE writer of galspec_hf.data.testing.

    Its docstring says H-alpha is doubled in the central spaxel, but the writer scales the whole spectrum by the
    profile (no doubling), so the expected H-alpha map is LINE_FLUX x profile.
    """
    from galspec_hf.data import testing

    n_spaxel, z = 5, 0.03
    path = testing.write_manga_cube(
        tmp_path / "manga-0000-0000-LOGCUBE.fits", 150.0, 2.0, n_spaxel=n_spaxel, n_wave=C.MANGA_NUM_PIXELS, z=z
    )
    out = tmp_path / "maps"
    assert main(["line-maps", str(path), "--out", str(out), "--redshift", str(z), "--no-progress"]) == 0
    read = read_manga_maps(out / "line_maps.fits")
    ha, _, ha_mask = read.line_map("Ha-6564")
    oiii, _, _ = read.line_map("OIII-5008")
    yy, xx = np.mgrid[0:n_spaxel, 0:n_spaxel]
    c = n_spaxel // 2
    profile = np.exp(-0.5 * ((xx - c) ** 2 + (yy - c) ** 2) / 2.0**2)
    np.testing.assert_allclose(ha, testing.LINE_FLUX * profile, rtol=0.02)
    # the writer puts no [OIII] 4960 line; with 4960 = 5008 / 2.98 fixed, least squares for two non-overlapping
    # profiles of equal width gives 5008 = F / (1 + 1 / 2.98^2), 10 % low: the ratio is really imposed
    np.testing.assert_allclose(oiii, testing.LINE_FLUX * profile / (1 + C.OIII_DOUBLET_RATIO**-2), rtol=0.02)
    assert np.all(ha_mask == 0)
    # the writer samples a Gaussian of sigma LINE_SIGMA_A at pixel centres; the fitted model integrates over pixels,
    # which broadens by pixel^2 / 12 in variance, so the fitted observed sigma^2 is LINE_SIGMA_A^2 - pixel^2 / 12
    centre = C.EMISSION_LINES_VACUUM_A["Halpha"] * (1 + z)
    pixel_a = centre * np.log(10) * C.MANGA_LOGLAM_STEP
    sigma_obs_kms = np.sqrt(testing.LINE_SIGMA_A**2 - pixel_a**2 / 12) / centre * C.SPEED_OF_LIGHT_KMS
    sigma_inst_kms = C.SPEED_OF_LIGHT_KMS / (2000.0 * C.FWHM_PER_SIGMA)
    with fits.open(out / "line_maps.fits") as hdul:
        sigma = hdul["EMLINE_GSIGMA"].data[list(LINE_NAMES).index("Halpha")]
    np.testing.assert_allclose(sigma, np.sqrt(sigma_obs_kms**2 - sigma_inst_kms**2), rtol=0.01)


# ----------------------------------------------------------------------------------------
# Template (stellar-continuum) mode on stellar continua with known truth
# ----------------------------------------------------------------------------------------
_COMPARED = ("Halpha", "Hbeta", "NII_6585", "OIII_5008", "SII_6718")
#: The simulator's FSPS SSP templates (0.46 A sampling; old = 10 Gyr SSP, young = constant SFR over 100 Myr): sharp
#: absorption lines, independent of the MILES-HC templates of the fit. The default kcorrect templates are sampled
#: at R ~ 1000 (docs/SIMULATION.md), their absorption lines smoother than any real spectrum's, so they cannot test
#: a fit of absorption lines at DESI or MaNGA resolution.
_SSP_FILE = "templates/SSP_Padova_CKC14z_Kroupa_Z0.0190.fits"


def _check_recovery(instrument, kind, ssp_path, n=16, templates=None):
    """Fit n spectra of ``kind`` in template mode; assert the issue's targets; return the fitted maps.

    The issue's targets: where the line's S/N > 10, median flux within 5 % of the truth (the median of 16 has a
    noise of ~0.3 / S/N, < 3 %); for every compared line, pull width 0.55-1.5 (the 99 % interval of the standard
    deviation of 16 unit-width pulls, chi distribution with 15 degrees of freedom). Where S/N <= 10 (or no line),
    also a mean pull within 1: a bias of more than one error there is not within the 5 % of bright lines (at S/N
    50, 5 % is 2.5 errors).
    """
    rng = np.random.default_rng({"desi": 11, "manga": 12}[instrument] * 10 + list(GALAXY_TYPES).index(kind))
    wavelength, flux, ivar, redshift, sigma_inst, truth = stellar_line_spectra(instrument, kind, n, rng, ssp_path)
    maps = fit_emission_lines(wavelength, flux, ivar, redshift, instrumental_sigma_kms=sigma_inst,
                              templates=templates)  # fmt: skip
    for name in _COMPARED:
        assert np.all(np.isfinite(maps.flux[name])), (kind, name)
        pull = (maps.flux[name] - truth[name]) / maps.flux_err[name]
        assert 0.55 < np.std(pull) < 1.5, (instrument, kind, name, pull)
        if np.median(truth[name] / maps.flux_err[name]) > 10:
            ratio = np.median(maps.flux[name] / truth[name])
            assert abs(ratio - 1) < 0.05, (instrument, kind, name, ratio)
        else:
            assert abs(np.mean(pull)) < 1.0, (instrument, kind, name, pull)
    return maps


@pytest.mark.realdata
@pytest.mark.parametrize("instrument", ["desi", "manga"])
def test_template_continuum_recovers_star_forming_lines(instrument, shared_file):
    """Template mode on star-forming FSPS continua at DESI (0.8 A pixels, R 2000-5500) and MaNGA resolution."""
    maps = _check_recovery(instrument, "star_forming", shared_file(_SSP_FILE))
    # the stellar kinematics of the continuum fit come out near the input (v = 0, sigma 70 km/s)
    assert np.all(np.abs(maps.stellar_velocity_kms) < 40), maps.stellar_velocity_kms
    assert np.all(np.abs(maps.stellar_dispersion_kms - 70.0) <= 45.0), maps.stellar_dispersion_kms


_OLD_XFAIL = pytest.mark.xfail(
    strict=True,
    reason="template mode on old FSPS populations (measured, 16 spectra each, DESI / MaNGA, continuum_refit same): "
    "LIER "
    "H-alpha 1.18 / 1.25 x truth (S/N 26 / 16), H-beta 1.50 / 1.55 (mean pull +4.8 / +3.6); quiescent (no lines) "
    "mean pulls H-alpha +3.7 / +2.9, H-beta +4.9 / +3.6, [OIII] -4.3 / -3.6. The MaNGA DAP misses by as much on the "
    "same MaNGA spectra (LIER H-alpha 1.20 x truth, pull +4.3; examples/compare_with_dap.py --synthetic): the "
    "MILES-HC templates' Balmer absorption differs from the FSPS (C3K) SSP's (see docs/LINES.md); with a library "
    "of the simulator's SSPs that brackets the populations the targets are met (next test)",
)


@pytest.mark.realdata
@pytest.mark.parametrize("kind", [pytest.param("lier", marks=_OLD_XFAIL), pytest.param("quiescent", marks=_OLD_XFAIL)])
@pytest.mark.parametrize("instrument", ["desi", "manga"])
def test_template_continuum_recovers_old_population_lines(instrument, kind, shared_file):
    """Template mode on LIER-like (EW(Ha) 3 A) and quiescent (no lines) FSPS continua: the issue's target."""
    _check_recovery(instrument, kind, shared_file(_SSP_FILE))


@pytest.mark.realdata
@pytest.mark.parametrize("kind", ["lier", "quiescent", "star_forming"])
@pytest.mark.parametrize("instrument", ["desi", "manga"])
def test_a_library_that_brackets_the_populations_recovers_every_type(instrument, kind, shared_file):
    """The issue's synthetic targets met when the templates match the simulator's stellar library but not its
    populations: the fit gets the FSPS SSPs of the spectra's file *without* the ones that made them (the 10 Gyr and
    the <= 100 Myr SSPs), so the old population lies between the 5 and 13 Gyr SSPs. What the MILES-HC failure above
    is then left to is the library (C3K theoretical against MILES empirical stars), not the fit. 48 spectra per
    type (16 leave the pull widths of the weak H-beta to chance: 0.47-0.87 over three draws, measured)."""
    from galspec_hf.analysis.synthetic import bracketing_ssp_templates
    from galspec_hf.simulate.templates import read_ssp_file, ssp_population_ages

    path = shared_file(_SSP_FILE)
    templates = bracketing_ssp_templates(path)
    ages_yr = read_ssp_file(path)[2]
    young = ssp_population_ages(ages_yr)[1]
    assert templates.flux.shape[0] == ages_yr.size - 1 - young.sum()  # the old SSP and the young ones left out
    _check_recovery(instrument, kind, path, n=48, templates=templates)


def test_grid_solve_by_complex_equals_the_full_weighted_least_squares():
    """The grid search solves the amplitudes one line complex at a time; at any kinematics that equals weighted
    least squares on the whole design matrix (columns of different complexes never share a pixel)."""
    from galspec_hf.analysis.lines import _Chunk
    from galspec_hf.data.testing import fake_spectrum
    from galspec_hf.spectral import pixel_edges

    rng = np.random.default_rng(4)
    wavelength = np.arange(3600.0, 9824.0, 0.8)
    redshift = np.array([0.05, 0.12, 0.3])
    flux = np.stack([fake_spectrum(wavelength, z) for z in redshift]) + rng.normal(0.0, 0.2, (3, wavelength.size))
    ivar = rng.uniform(5.0, 30.0, flux.shape) * (rng.random(flux.shape) > 0.03)  # some pixels masked
    chunk = _Chunk(wavelength, pixel_edges(wavelength), np.full(wavelength.size, 30.0), flux, ivar, redshift)
    theta = np.array([[60.0, 60.0, 90.0**2, 90.0**2]]).repeat(3, axis=0)  # (v, v, sigma^2, sigma^2) of two groups
    alpha, chi2 = chunk.solve_linear_blocks(theta)
    design, _ = chunk.design(theta, jacobian=False)
    for n in range(3):
        root_w = np.sqrt(chunk.w[n])
        used = np.abs(design[n]).sum(axis=0) > 0  # a complex off the spectrum has no column
        expected, *_ = np.linalg.lstsq(design[n][:, used] * root_w[:, None], chunk.y[n] * root_w, rcond=None)
        np.testing.assert_allclose(alpha[n, used], expected, rtol=1e-7, atol=1e-9)
        assert np.all(alpha[n, ~used] == 0.0)
        residual = chunk.y[n] - design[n] @ alpha[n]
        assert chi2[n] == pytest.approx(np.sum(chunk.w[n] * residual**2), rel=1e-9)


def test_threads_do_not_change_the_fit():
    """Chunks fitted in threads give exactly the one-thread result; a bad thread count is refused by name."""
    from galspec_hf.data.testing import fake_spectrum

    rng = np.random.default_rng(5)
    wavelength = np.arange(3600.0, 9824.0, 0.8)
    redshift = rng.uniform(0.02, 0.3, 12)
    flux = np.stack([fake_spectrum(wavelength, z) for z in redshift]) + rng.normal(0.0, 0.3, (12, wavelength.size))
    ivar = np.full_like(flux, 1 / 0.09)
    kwargs = dict(instrumental_sigma_kms=30.0, continuum="local", chunk_size=4)
    one = fit_emission_lines(wavelength, flux, ivar, redshift, num_threads=1, **kwargs)
    three = fit_emission_lines(wavelength, flux, ivar, redshift, num_threads=3, **kwargs)
    for line in LINE_NAMES:
        np.testing.assert_array_equal(one.flux[line], three.flux[line])
        np.testing.assert_array_equal(one.flux_err[line], three.flux_err[line])
        np.testing.assert_array_equal(one.mask[line], three.mask[line])
    assert np.isfinite(one.flux["Halpha"]).all()
    with pytest.raises(ValueError, match="num_threads"):
        fit_emission_lines(wavelength, flux, ivar, redshift, num_threads=0, **kwargs)


def test_fit_spectra_file_subtracts_a_given_continuum(shared_file):
    """dap_reference.fit_spectra_file (the DAP comparison's fit of the shared MaNGA spectra): a zero continuum taken
    off changes nothing, one that is NaN over H-alpha's window masks those pixels (no H-alpha, and no crash: the
    masked cores left H-alpha and [NII] seen through their far tails only, collinear columns that stopped the solver
    with a singular matrix before the minimum-norm fallback), a shifted one moves
    the local baseline and leaves the lines; a continuum of the wrong shape is refused by name."""
    from galspec_hf.analysis.dap_reference import fit_spectra_file

    path = shared_file("manga/MaNGA_test_spectra.fits.gz")
    kwargs = dict(continuum="local", balmer_absorption=False)
    spectra, plain = fit_spectra_file(path, **kwargs)
    _, zero = fit_spectra_file(path, subtract=np.zeros_like(spectra.flux), **kwargs)
    np.testing.assert_array_equal(zero.flux["Halpha"], plain.flux["Halpha"])
    offset = fit_spectra_file(path, subtract=np.full_like(spectra.flux, 0.5), **kwargs)[1]
    both = np.isfinite(plain.flux["Halpha"])
    np.testing.assert_allclose(offset.flux["Halpha"][both], plain.flux["Halpha"][both], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(offset.continuum["Halpha"][both], plain.continuum["Halpha"][both] - 0.5, atol=1e-6)
    holed = np.zeros_like(spectra.flux)
    observed = C.EMISSION_LINES_VACUUM_A["Halpha"] * (1 + spectra.redshift[:, None])
    holed[np.abs(spectra.wavelength[None] - observed) < 60.0] = np.nan
    assert np.isnan(fit_spectra_file(path, subtract=holed, **kwargs)[1].flux["Halpha"]).all()
    with pytest.raises(ValueError, match="`subtract`"):
        fit_spectra_file(path, subtract=np.zeros((2, 3)))


@pytest.mark.realdata
def test_continuum_refit_fits_the_line_windows_better(shared_file):
    """Template mode refits the continuum on the spectrum minus the fitted lines, their windows unmasked, then the
    lines (``continuum_refit="same"``, the default): the line windows' chi^2 falls on the LIER-like spectra, where the
    stellar absorption under H-alpha and H-beta matters; and the emission model the refit subtracts
    (``_Chunk.line_model``) holds the fitted fluxes (its integral over the pixels is the sum of the line fluxes)."""
    from galspec_hf.analysis.lines import _N_COMP, _Chunk, _fit_chunk
    from galspec_hf.spectral import pixel_edges

    rng = np.random.default_rng(21)
    wavelength, flux, ivar, redshift, sigma_inst, _ = stellar_line_spectra("manga", "lier", 8, rng,
                                                                            shared_file(_SSP_FILE))  # fmt: skip
    kwargs = dict(instrumental_sigma_kms=sigma_inst)
    plain = fit_emission_lines(wavelength, flux, ivar, redshift, continuum_refit="off", **kwargs)
    refit = fit_emission_lines(wavelength, flux, ivar, redshift, **kwargs)
    assert np.median(refit.chi2_reduced) < np.median(plain.chi2_reduced), (refit.chi2_reduced, plain.chi2_reduced)
    # the emission model on the whole spectrum
    edges = pixel_edges(wavelength)
    chunk = _Chunk(wavelength, edges, sigma_inst, flux, ivar, redshift, False, True)  # local baselines
    params, _, _, _ = _fit_chunk(chunk, 10)
    model = chunk.line_model(params, wavelength.size)
    total = params[:, chunk.n_nonlin : chunk.n_nonlin + _N_COMP].copy()
    total[:, [3, 5]] *= [1 + 1 / C.OIII_DOUBLET_RATIO, 1 + 1 / C.NII_DOUBLET_RATIO]  # the doublets' second lines
    np.testing.assert_allclose((model * np.diff(edges)).sum(axis=1), total.sum(axis=1), rtol=0.03)


def test_continuum_none_fits_the_lines_alone():
    """``continuum="none"``: spectra whose continuum is already subtracted get the lines alone (no baseline, no
    troughs): on lines without continuum the fluxes come back with unit-width pulls and no EW (no continuum to
    divide by); a continuum left in is not absorbed (H-alpha then far too bright, as a baseline would not allow);
    an unknown mode, or continuum_refit, is refused by name."""
    rng = np.random.default_rng(31)
    n = 60
    wavelength = manga_wavelength()
    redshift = rng.uniform(0.02, 0.1, n)
    velocity = {"balmer": rng.uniform(-100, 100, n)}
    velocity["forbidden"] = velocity["balmer"]
    sigma = {"balmer": np.full(n, 80.0), "forbidden": np.full(n, 80.0)}
    fluxes = line_fluxes(n, 2.0)
    flux, ivar, _ = synthetic_spectra(wavelength, redshift, fluxes, velocity, sigma, 0.1, rng, continuum=0.0)
    maps = fit_emission_lines(wavelength, flux, ivar, redshift, instrumental_sigma_kms=SIGMA_INST_KMS,
                              continuum="none")  # fmt: skip
    for name in ("Halpha", "Hbeta", "NII_6585", "OIII_5008"):
        pull = (maps.flux[name] - fluxes[name]) / maps.flux_err[name]
        assert abs(np.mean(pull)) < 0.4 and 0.7 < np.std(pull) < 1.3, (name, np.mean(pull), np.std(pull))
        assert np.all(np.isnan(maps.ew_rest_a[name])), name
    with_continuum = fit_emission_lines(wavelength, flux + 1.0, ivar, redshift, instrumental_sigma_kms=SIGMA_INST_KMS,
                                        continuum="none")  # fmt: skip
    assert np.median(with_continuum.flux["Halpha"] / fluxes["Halpha"]) > 1.5
    with pytest.raises(ValueError, match="continuum must be one of .*'stellar'"):
        fit_emission_lines(wavelength, flux[:2], ivar[:2], redshift[:2], continuum="stellar")
    with pytest.raises(ValueError, match="continuum_refit must be one of .*'twice'"):
        fit_emission_lines(wavelength, flux[:2], ivar[:2], redshift[:2], continuum_refit="twice")
