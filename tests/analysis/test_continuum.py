"""The stellar-continuum fit (:mod:`galspec_hf.analysis.continuum`): its batched pieces against direct
computations, and the fit on spectra made of its own templates. The line fit on top of it, and its agreement
with the MaNGA DAP on real spectra, are checked in tests/analysis/test_lines.py and
tests/analysis/test_dap_agreement.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls

from galspec_hf import constants as C
from galspec_hf.analysis import continuum as cont


def _manga_wavelength() -> np.ndarray:
    return 10 ** (C.MANGA_LOGLAM0 + C.MANGA_LOGLAM_STEP * np.arange(C.MANGA_NUM_PIXELS))


def _dense_normal_equations(prob, sigma_star, velocity, select, pixels, weight, y):
    """A^T W A, A^T W y of the templates at (sigma_star, velocity) and the polynomial, one spectrum at a time."""
    flat, diff, n_t = prob.broadened(sigma_star)
    lib, dlib = flat.reshape(-1, n_t), diff.reshape(-1, n_t)
    gram, rhs = [], []
    for i in range(select.shape[0]):
        shift = np.log1p(prob.redshift[i]) + np.log1p(velocity[i] / C.SPEED_OF_LIGHT_KMS)
        pos = np.clip((prob.log_obs[pixels] - shift - prob.log_t0) / prob.dlog, 0, n_t - 1.000001)
        i0 = pos.astype(int)
        cols = lib[select[i]][:, i0] + dlib[select[i]][:, i0] * (pos - i0)
        design = np.vstack([cols, prob.poly[pixels].T])
        gram.append((design * weight[i]) @ design.T)
        rhs.append(design @ (weight[i] * y[i]))
    return np.array(gram), np.array(rhs)


@pytest.mark.parametrize("shared", [True, False])
def test_blocked_normal_equations_equal_the_direct_ones(shared):
    """The per-block, per-batch products (and the shared-design product) give A^T W A and A^T W y exactly."""
    rng = np.random.default_rng(1)
    wavelength = _manga_wavelength()
    n = 11  # more than one batch
    redshift = np.full(n, 0.03) if shared else rng.uniform(0.02, 0.05, n)
    velocity = np.full(n, 50.0) if shared else rng.uniform(-300, 300, n)
    prob = cont._Problem(wavelength, np.full(wavelength.size, 60.0), redshift, 8)
    used = np.flatnonzero(rng.random(wavelength.size) < 0.6)
    weight = rng.uniform(0.5, 2.0, (n, used.size))
    y = rng.standard_normal((n, used.size))
    select = np.stack([rng.permutation(prob.tflux.shape[0])[:12] for _ in range(n)])
    pix, real = cont._blocks(used, cont._BLOCK_PIX)
    w_b = np.zeros((n,) + pix.shape)
    w_b.reshape(n, -1)[:, : used.size] = weight
    y_b = np.zeros_like(w_b)
    y_b.reshape(n, -1)[:, : used.size] = y
    assert np.all(w_b[:, ~real] == 0)
    sampling = prob.sampling(velocity, pix)
    assert (sampling.i0.shape[0] == 1) == shared
    poly_b = prob.poly[pix].transpose(0, 2, 1)
    gram, rhs, yy = cont._normal_equations(prob, 150.0, sampling, select, poly_b, w_b, y_b)
    want_gram, want_rhs = _dense_normal_equations(prob, 150.0, velocity, select, used, weight, y)
    np.testing.assert_allclose(gram, want_gram, rtol=1e-10, atol=1e-10 * np.abs(want_gram).max())
    np.testing.assert_allclose(rhs, want_rhs, rtol=1e-10, atol=1e-10 * np.abs(want_rhs).max())
    np.testing.assert_allclose(yy, (weight * y**2).sum(axis=1), rtol=1e-12)
    if shared:
        design = cont._design(prob.columns(150.0, sampling, select[:1]), poly_b)[0]
        g2, r2 = cont._shared_normal_equations(
            design.transpose(1, 0, 2).reshape(design.shape[1], -1), w_b.reshape(n, -1), y_b.reshape(n, -1)
        )
        np.testing.assert_allclose(g2[:1], want_gram[:1], rtol=1e-10, atol=1e-10 * np.abs(want_gram).max())
        np.testing.assert_allclose(r2[:1], want_rhs[:1], rtol=1e-10, atol=1e-10 * np.abs(want_rhs).max())


def test_nnls_matches_scipy_and_warm_starts_change_nothing():
    """Batched NNLS on normal equations = scipy's NNLS on the design; a warm start gives the same solution."""
    rng = np.random.default_rng(2)
    n, length, k, p = 20, 300, 10, 3
    design = np.concatenate([rng.random((n, length, k)), rng.standard_normal((n, length, p))], axis=2)
    truth = np.concatenate([np.where(rng.random((n, k)) < 0.5, rng.random((n, k)), 0.0),
                            rng.standard_normal((n, p))], axis=1)  # fmt: skip
    y = np.einsum("nlk,nk->nl", design, truth) + 0.3 * rng.standard_normal((n, length))
    gram = design.transpose(0, 2, 1) @ design
    rhs = np.einsum("nlk,nl->nk", design, y)
    nonneg = np.r_[np.ones(k, bool), np.zeros(p, bool)]
    x, passive = cont.nnls_normal_equations(gram, rhs, nonneg)
    for i in range(n):
        # free parameters as differences of two non-negative ones
        sol, _ = nnls(np.concatenate([design[i], -design[i][:, k:]], axis=1), y[i])
        want = np.r_[sol[:k], sol[k : k + p] - sol[k + p :]]
        np.testing.assert_allclose(x[i], want, atol=1e-8)
    assert np.all(x[:, :k] >= 0) and np.array_equal(passive[:, :k], x[:, :k] > 0)
    for guess in (passive, ~passive, rng.random((n, k + p)) < 0.5):
        x_warm, passive_warm = cont.nnls_normal_equations(gram, rhs, nonneg, passive=guess)
        np.testing.assert_allclose(x_warm, x, atol=1e-10)
        assert np.array_equal(passive_warm, passive)


def test_fit_recovers_its_own_templates_with_one_or_many_redshifts():
    """Spectra made of two MILES-HC templates (sigma_star 150 km/s, v = +40 km/s) and a polynomial are recovered
    (the grid dispersion exactly, the velocity within 5 km/s, the continuum within 1 %); the spectra of one
    redshift (the shared-sampling path of a cube) come out as when fitted among spectra of other redshifts (one
    sampling per spectrum)."""
    rng = np.random.default_rng(3)
    wavelength = _manga_wavelength()
    sigma_inst = np.full(wavelength.size, 60.0)
    n = 6
    redshift = np.r_[np.full(n, 0.03), 0.05]
    prob = cont._Problem(wavelength, sigma_inst, redshift, 8)
    flat, _, n_t = prob.broadened(150.0)
    lib = flat.reshape(-1, n_t)
    weights = np.zeros((n + 1, lib.shape[0]))
    for i in range(n + 1):
        weights[i, rng.choice(lib.shape[0], 2, replace=False)] = rng.uniform(1.0, 3.0, 2)
    flux = np.empty((n + 1, wavelength.size))
    for i, z in enumerate(redshift):
        rest = wavelength / (1 + z) / (1 + 40.0 / C.SPEED_OF_LIGHT_KMS)
        flux[i] = np.interp(rest, prob.twave, weights[i] @ lib) + 0.1 * prob.poly[:, 1]
    ivar = np.full(flux.shape, 1e4)
    one = cont.fit_stellar_continuum(wavelength, flux[:n], ivar[:n], redshift[:n], sigma_inst)
    many = cont.fit_stellar_continuum(wavelength, flux, ivar, redshift, sigma_inst)
    for fit, rows in ((one, slice(0, n)), (many, slice(0, n + 1))):
        assert np.all(fit.fitted)
        np.testing.assert_array_equal(fit.dispersion_kms, 150.0)
        np.testing.assert_allclose(fit.velocity_kms, 40.0, atol=5.0)
        inside = np.isfinite(fit.continuum_var)
        # the velocity is a parabola through grid points (a few km/s off): the deepest lines differ by < 1 %
        relative = np.abs(fit.continuum[inside] / flux[rows][inside] - 1)
        assert np.median(relative) < 1e-3 and relative.max() < 1e-2, (np.median(relative), relative.max())
        assert np.all(fit.continuum[~inside] == 0)
    for key in ("continuum", "continuum_var", "velocity_kms", "weights"):
        a, b = getattr(one, key), getattr(many, key)[:n]
        finite = np.isfinite(a)
        assert np.array_equal(finite, np.isfinite(b))
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-5, atol=1e-9 * np.abs(a[finite]).max())


def test_refit_from_a_start_keeps_the_kinematics_and_unmasks_the_given_lines():
    """``start=fit`` reruns only the final weighted fit: on the same data and mask it gives back the same continuum;
    with ``masked_lines=()`` the line windows enter the fit, so spectra with a feature inside a line window that the
    masked fit cannot see are fitted better over all pixels; a start of another size is refused."""
    rng = np.random.default_rng(5)
    wavelength = _manga_wavelength()
    sigma_inst = np.full(wavelength.size, 60.0)
    n = 4
    redshift = np.full(n, 0.03)
    prob = cont._Problem(wavelength, sigma_inst, redshift, 8)
    flat, _, n_t = prob.broadened(150.0)
    lib = flat.reshape(-1, n_t)
    flux = np.stack([np.interp(wavelength / 1.03, prob.twave, lib[rng.choice(lib.shape[0], 2)].sum(axis=0))
                     for _ in range(n)])  # fmt: skip
    # a dip only inside H-beta's window (+-750 km/s): invisible to the masked fit
    hbeta = C.EMISSION_LINES_VACUUM_A["Hbeta"] * 1.03
    dip = 0.3 * np.exp(-0.5 * ((wavelength - hbeta) / 4.0) ** 2)
    flux = flux * (1 - dip)
    ivar = np.full(flux.shape, 1e4)
    first = cont.fit_stellar_continuum(wavelength, flux, ivar, redshift, sigma_inst)
    again = cont.fit_stellar_continuum(wavelength, flux, ivar, redshift, sigma_inst, start=first)
    np.testing.assert_allclose(again.continuum, first.continuum, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(again.dispersion_kms, first.dispersion_kms)
    np.testing.assert_array_equal(again.templates, first.templates)
    unmasked = cont.fit_stellar_continuum(wavelength, flux, ivar, redshift, sigma_inst, start=first, masked_lines=())
    np.testing.assert_array_equal(unmasked.velocity_kms, first.velocity_kms)
    inside = np.isfinite(first.continuum_var) & np.isfinite(unmasked.continuum_var)

    def chi2(fit):  # over every pixel the templates cover, the line windows included
        return (ivar * (flux - fit.continuum) ** 2 * inside).sum(axis=1)

    # the masked fit's weights are one candidate of the unmasked least squares: its chi^2 over all pixels is lower
    assert np.all(chi2(unmasked) < chi2(first)), (chi2(unmasked), chi2(first))
    with pytest.raises(ValueError, match="`start`"):
        cont.fit_stellar_continuum(wavelength, flux[:2], ivar[:2], redshift[:2], sigma_inst, start=first)


def test_another_library_is_fitted_with_its_own_templates_and_refused_when_malformed(tmp_path):
    """A user library (here five MILES-HC spectra under another name) is fitted with its own templates: spectra
    made of two of them come back within 1 %, and the cache of broadened libraries keeps the two libraries apart
    (the default library then fits as before). Malformed libraries, a start from another library and an SSP age
    that is not in the file are refused by name."""
    rng = np.random.default_rng(8)
    wavelength = _manga_wavelength()
    sigma_inst = np.full(wavelength.size, 60.0)
    redshift = np.full(3, 0.04)
    full = cont.load_continuum_templates()
    subset = cont.ContinuumTemplates(full.wavelength_rest_a, full.flux[[0, 7, 14, 21, 28]], full.fwhm_a, "five")
    prob = cont._Problem(wavelength, sigma_inst, redshift, 8, subset)
    flat, _, n_t = prob.broadened(110.0)
    lib = flat.reshape(-1, n_t)
    assert lib.shape[0] == 5
    weights = np.zeros((3, 5))
    for i in range(3):
        weights[i, rng.choice(5, 2, replace=False)] = rng.uniform(1.0, 3.0, 2)
    flux = np.stack([np.interp(wavelength / 1.04, prob.twave, w @ lib) for w in weights])
    ivar = np.full(flux.shape, 1e4)
    default_before = cont.fit_stellar_continuum(wavelength, flux, ivar, redshift, sigma_inst)
    fit = cont.fit_stellar_continuum(wavelength, flux, ivar, redshift, sigma_inst, templates=subset)
    assert fit.weights.shape == (3, 5) and np.all(fit.fitted)
    np.testing.assert_array_equal(fit.dispersion_kms, 110.0)
    inside = np.isfinite(fit.continuum_var)
    assert np.median(np.abs(fit.continuum[inside] / flux[inside] - 1)) < 1e-3
    default_after = cont.fit_stellar_continuum(wavelength, flux, ivar, redshift, sigma_inst)
    assert default_after.weights.shape == (3, full.flux.shape[0])
    np.testing.assert_array_equal(default_after.continuum, default_before.continuum)
    with pytest.raises(ValueError, match="`start` was fitted with 5 templates"):
        cont.fit_stellar_continuum(wavelength, flux, ivar, redshift, sigma_inst, start=fit)
    with pytest.raises(ValueError, match="templates 'bad': flux must be"):
        cont.ContinuumTemplates(full.wavelength_rest_a, full.flux[:, :-1], 2.5, "bad")
    with pytest.raises(ValueError, match="uniform in log"):
        cont.ContinuumTemplates(np.linspace(4000.0, 7000.0, 50), np.ones((2, 50)), 2.5, "linear")


@pytest.mark.realdata
def test_ssp_library_is_read_from_the_simulators_file(shared_file):
    """An FSPS SSP file becomes a library on the shipped grid, one unit-median spectrum per age kept; an age that
    is not in the file is refused with the file's ages."""
    from galspec_hf.simulate.templates import read_ssp_file

    path = shared_file("templates/SSP_Padova_CKC14z_Kroupa_Z0.0190.fits")
    ages_yr = read_ssp_file(path)[2]
    library = cont.ssp_continuum_templates(path, exclude_ages_yr=[ages_yr[-1]])
    assert library.flux.shape == (ages_yr.size - 1, cont.load_continuum_templates().wavelength_rest_a.size)
    np.testing.assert_allclose(np.median(library.flux, axis=1), 1.0)
    assert library.fwhm_a == 0.0 and "ssp:SSP_Padova" in library.name
    # the youngest SSP is bluer than the oldest kept: more flux at 4000 A than at 6500 A
    at = np.searchsorted(library.wavelength_rest_a, [4000.0, 6500.0])
    assert library.flux[0, at[0]] / library.flux[0, at[1]] > library.flux[-1, at[0]] / library.flux[-1, at[1]]
    with pytest.raises(ValueError, match="no SSP of age 3.3e"):
        cont.ssp_continuum_templates(path, exclude_ages_yr=[3.3e9])
