"""Stellar-continuum fit before the emission lines, batched over spectra.

Each spectrum is modelled as a non-negative combination of stellar templates (MILES-HC, shipped in
``galspec_hf/templates/mileshc_templates.npz``; see data_scripts/make_continuum_templates.py and docs/LINES.md),
shifted to the spectrum's redshift plus a stellar velocity, broadened by a Gaussian of sigma
``sqrt(sigma_star^2 + sigma_inst^2 - sigma_template^2)`` (km/s, per wavelength), plus an additive Legendre
polynomial (degree 8 by default, as in the MaNGA DAP's own pPXF test fit; Cappellari & Emsellem 2004, PASP 116, 138),
with the emission-line windows of the DAP's ELPSCMSK list (3 x 250 km/s half-width) and its sky mask excluded.

Speed comes from sharing work over spectra: the templates are broadened once per trial dispersion on the template
grid, and every fit is solved through its (K x K) normal equations, batched in numpy:

1. all 42 templates at (v = 0, sigma_star = 100 km/s): a batched non-negative least squares (active-set, see
   :func:`nnls_normal_equations`) selects each spectrum's templates (at most ``max_templates``, by weight);
2. with those templates, a grid in stellar velocity, then in dispersion, picks the kinematics of least chi^2
   (a parabola through the three best velocity points refines the velocity);
3. the final fit gives the continuum and its per-pixel variance ``a(lambda)^T (A^T W A)^-1 a(lambda)`` over the
   free parameters, which :func:`galspec_hf.analysis.fit_emission_lines` adds to the pixel variance of the line fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.polynomial import legendre

from .. import constants as C

__all__ = ["ContinuumFit", "fit_stellar_continuum", "load_continuum_templates", "nnls_normal_equations"]

_C_KMS = C.SPEED_OF_LIGHT_KMS
_TEMPLATE_FILE = Path(__file__).resolve().parent.parent / "templates" / "mileshc_templates.npz"
#: Trial stellar velocities (relative to the given redshift) and dispersions, km/s.
VELOCITY_GRID_KMS = np.arange(-300.0, 301.0, 50.0)
DISPERSION_GRID_KMS = np.array([30.0, 70.0, 110.0, 150.0, 200.0, 260.0, 330.0])
_START_DISPERSION_KMS = 100.0


@lru_cache(maxsize=1)
def load_continuum_templates() -> tuple[np.ndarray, np.ndarray, float]:
    """The shipped MILES-HC templates: (wavelength_rest_a (T,), flux (K, T) float64, fwhm_a).

    Vacuum rest-frame wavelengths on a logarithmic grid of ``C.CONTINUUM_TEMPLATE_VELSCALE_KMS`` pixels; each
    template normalised to unit median.
    """
    if not _TEMPLATE_FILE.is_file():
        raise ValueError(
            f"continuum templates not found: {_TEMPLATE_FILE} (run data_scripts/make_continuum_templates.py)"
        )
    with np.load(_TEMPLATE_FILE) as data:
        return data["wavelength_rest_a"].astype(float), data["flux"].astype(float), float(data["fwhm_a"])


def _broaden(flux: np.ndarray, sigma_pix: np.ndarray) -> np.ndarray:
    """Convolve templates (K, T) with a Gaussian of per-pixel width ``sigma_pix`` (T,), pixels (gather form)."""
    half = int(np.ceil(4 * max(sigma_pix.max(), 0.5)))
    n = flux.shape[1]
    padded = np.pad(flux, ((0, 0), (half, half)), mode="edge")
    out = np.zeros_like(flux)
    norm = np.zeros(n)
    s = np.maximum(sigma_pix, 0.3)
    for d in range(-half, half + 1):
        w = np.exp(-0.5 * (d / s) ** 2)
        out += w * padded[:, half + d : half + d + n]
        norm += w
    return out / norm


#: Broadened template libraries, keyed by (dispersion, instrument sigma on the template grid): a cube (one redshift)
#: broadens each trial dispersion once for all its chunks. At most _BROADEN_CACHE_SIZE entries (~2 MB each).
_BROADEN_CACHE: dict = {}
_BROADEN_CACHE_SIZE = 24


def nnls_normal_equations(gram: np.ndarray, rhs: np.ndarray, nonneg: np.ndarray, max_iter: int = 60):
    """Batched non-negative least squares on normal equations, Lawson & Hanson (1974, ch. 23) active-set style.

    Minimises ``x^T G x - 2 b^T x`` subject to ``x_k >= 0`` where ``nonneg[k]``; other parameters are free.

    Parameters
    ----------
    gram : array (n, K, K)
        ``A^T W A`` of each problem (symmetric positive semi-definite).
    rhs : array (n, K)
        ``A^T W y``.
    nonneg : bool array (K,)
        Which parameters are constrained to be >= 0.
    max_iter : int
        Iterations of (add the most violating constraint / drop negatives); problems not converged by then keep
        their last feasible solution.

    Returns
    -------
    x : array (n, K)
        Solution, with constrained parameters >= 0.
    passive : bool array (n, K)
        The parameters not held at zero (free, or constrained and positive).
    """
    n, k = rhs.shape
    diag = np.sqrt(np.maximum(np.einsum("nkk->nk", gram), 1e-300))
    g = gram / (diag[:, :, None] * diag[:, None, :])
    b = rhs / diag
    eye = np.eye(k)

    def solve(passive):
        m = passive[:, :, None] & passive[:, None, :]
        a = np.where(m, g, eye)
        a = a + 1e-10 * eye
        return np.where(passive, np.linalg.solve(a, np.where(passive, b, 0.0)[..., None])[..., 0], 0.0)

    passive = np.broadcast_to(~nonneg, (n, k)).copy()
    x = solve(passive)
    active_rows = np.ones(n, bool)
    for _ in range(max_iter):
        neg = nonneg & passive & (x <= 0)
        has_neg = neg.any(axis=1)
        grad = b - np.einsum("nkl,nl->nk", g, x)
        cand = np.where(nonneg & ~passive, grad, -np.inf)
        best = cand.argmax(axis=1)
        add = ~has_neg & (cand[np.arange(n), best] > 1e-10)
        active_rows = has_neg | add
        if not active_rows.any():
            break
        passive = np.where(has_neg[:, None], passive & ~neg, passive)
        passive[np.arange(n)[add], best[add]] = True
        x = np.where(active_rows[:, None], solve(passive), x)
    # the last iterate may still hold negatives when max_iter ran out: drop them and re-solve once
    neg = nonneg & passive & (x <= 0)
    if neg.any():
        passive &= ~neg
        x = solve(passive)
        x = np.where(nonneg, np.maximum(x, 0.0), x)
    return x / diag, passive


@dataclass
class ContinuumFit:
    """Result of :func:`fit_stellar_continuum` (leading shape (n,) of the input spectra).

    Attributes
    ----------
    continuum : array (n, L)
        Best-fitting stellar continuum (templates + polynomial), flux units of the input; 0 outside the templates'
        rest-frame range.
    continuum_var : array (n, L)
        Variance of ``continuum`` from the fit's covariance (flux units squared); ``inf`` outside the range.
    velocity_kms, dispersion_kms : array (n,)
        Stellar velocity relative to the given redshift and stellar dispersion (grid values; velocity refined).
    chi2_reduced : array (n,)
        chi^2 / dof of the final fit over the unmasked pixels.
    weights : array (n, K)
        Template weights (0 for unused templates).
    fitted : bool array (n,)
        False where too few pixels were usable (continuum = 0, variance inf).
    """

    continuum: np.ndarray
    continuum_var: np.ndarray
    velocity_kms: np.ndarray
    dispersion_kms: np.ndarray
    chi2_reduced: np.ndarray
    weights: np.ndarray
    fitted: np.ndarray


def _line_mask(wavelength, redshift):
    """(n, L) True where a pixel is inside an emission-line window (rest) or the sky-line mask (observed)."""
    n, length = redshift.size, wavelength.size
    half = C.CONTINUUM_LINE_MASK_HALF_WIDTH_KMS / _C_KMS
    # +1 at the first pixel of each window, -1 after its last; the cumulative sum counts covering windows
    edges = np.zeros((n, length + 1), np.int64)
    rows = np.arange(n)
    for line in C.CONTINUUM_MASKED_LINES_VACUUM_A:
        centre = line * (1.0 + redshift)
        np.add.at(edges, (rows, np.searchsorted(wavelength, centre * (1 - half), side="left")), 1)
        np.add.at(edges, (rows, np.searchsorted(wavelength, centre * (1 + half), side="right")), -1)
    masked = np.cumsum(edges[:, :-1], axis=1) > 0
    for centre, half_a in C.CONTINUUM_SKY_LINES_VACUUM_A:
        masked |= (np.abs(wavelength - centre) <= half_a)[None, :]
    return masked


class _Problem:
    """Template columns on each spectrum's pixels: shared pieces for one chunk."""

    def __init__(self, wavelength, sigma_inst_pix, redshift, degree):
        self.twave, self.tflux, fwhm = load_continuum_templates()
        self.log_t0 = np.log(self.twave[0])
        self.dlog = np.log(self.twave[1] / self.twave[0])
        self.wavelength = wavelength
        self.log_obs = np.log(wavelength)
        self.redshift = redshift
        z_ref = float(np.median(redshift))
        # instrument sigma (km/s) at each template pixel, for the chunk's median redshift
        self.sigma_inst_t = np.interp(self.twave * (1 + z_ref), wavelength, sigma_inst_pix)
        self.sigma_tpl_t = _C_KMS * fwhm / C.FWHM_PER_SIGMA / self.twave
        self._inst_key = hash(np.round(self.sigma_inst_t, 3).tobytes())
        # Legendre polynomials over the observed range
        x = 2.0 * (wavelength - wavelength[0]) / (wavelength[-1] - wavelength[0]) - 1.0
        self.poly = legendre.legvander(x, degree)  # (L, degree + 1)

    def broadened(self, sigma_star):
        key = (float(sigma_star), self._inst_key)
        if key not in _BROADEN_CACHE:
            s2 = sigma_star**2 + self.sigma_inst_t**2 - self.sigma_tpl_t**2
            sigma_pix = np.sqrt(np.maximum(s2, 0.0)) / (self.dlog * _C_KMS)
            if len(_BROADEN_CACHE) >= _BROADEN_CACHE_SIZE:
                _BROADEN_CACHE.pop(next(iter(_BROADEN_CACHE)))
            _BROADEN_CACHE[key] = _broaden(self.tflux, sigma_pix)
        return _BROADEN_CACHE[key]

    def columns(self, sigma_star, velocity, select=None, rows=None):
        """Template columns (n, k, L) at the observed pixels; 0 (and flagged) outside the template range."""
        tb = self.broadened(sigma_star)
        z = self.redshift if rows is None else self.redshift[rows]
        shift = np.log1p(z) + np.log1p(velocity / _C_KMS)  # (n,)
        pos = (self.log_obs[None, :] - shift[:, None] - self.log_t0) / self.dlog  # (n, L)
        inside = (pos >= 0) & (pos <= tb.shape[1] - 1)
        pos = np.clip(pos, 0, tb.shape[1] - 1.000001)
        i0 = pos.astype(np.int64)
        f = pos - i0
        if select is None:
            cols = tb[:, i0] * (1 - f) + tb[:, i0 + 1] * f  # (K, n, L)
            cols = cols.transpose(1, 0, 2)
        else:
            k_idx = select[:, :, None]  # (n, k, 1): gather (n, k, L) straight from the (K, T) library
            cols = tb[k_idx, i0[:, None, :]] * (1 - f[:, None, :]) + tb[k_idx, i0[:, None, :] + 1] * f[:, None, :]
        return cols * inside[:, None, :], inside


def _normal(cols, poly, weight, y, g_pp=None):
    """Gram (n, K, K) and rhs (n, K) of [templates (n, k, L), polynomial (L, p)] with weights (n, L).

    ``g_pp`` (n, p, p), the polynomial block, is reused when given. Returns (gram, rhs, design (n, K, L)).
    """
    n, k, _ = cols.shape
    p = poly.shape[1]
    cw = cols * weight[:, None, :]
    gram = np.empty((n, k + p, k + p))
    gram[:, :k, :k] = np.einsum("nkl,njl->nkj", cw, cols, optimize=True)
    gram[:, :k, k:] = cw @ poly
    gram[:, k:, :k] = gram[:, :k, k:].transpose(0, 2, 1)
    gram[:, k:, k:] = (weight[:, None, :] * poly.T[None]) @ poly if g_pp is None else g_pp
    wy = weight * y
    rhs = np.concatenate([np.einsum("nkl,nl->nk", cols, wy), wy @ poly], axis=1)
    design = np.concatenate([cols, np.broadcast_to(poly.T[None], (n,) + poly.T.shape)], axis=1)  # (n, K, L)
    return gram, rhs, design


def _chi2(gram, rhs, x, yy):
    return yy - 2 * np.einsum("nk,nk->n", x, rhs) + np.einsum("nk,nkl,nl->n", x, gram, x)


def fit_stellar_continuum(
    wavelength,
    flux,
    ivar,
    redshift,
    sigma_inst_kms,
    *,
    degree: int = 8,
    max_templates: int = 12,
    velocity_grid_kms=VELOCITY_GRID_KMS,
    dispersion_grid_kms=DISPERSION_GRID_KMS,
    min_pixels: int = 200,
) -> ContinuumFit:
    """Fit a stellar continuum to each of n spectra (see the module docstring for the method).

    Parameters
    ----------
    wavelength : array (L,)
        Observed vacuum wavelengths, Angstrom, increasing.
    flux, ivar : array (n, L)
        Flux density and inverse variance; pixels with ivar <= 0 are not used.
    redshift : array (n,)
        Redshift of each spectrum (the stellar velocity is measured relative to it).
    sigma_inst_kms : array (L,)
        Instrumental Gaussian sigma at each pixel, km/s.
    degree : int
        Degree of the additive Legendre polynomial (default 8).
    max_templates : int
        Templates kept per spectrum after the first full-library fit (default 12).
    velocity_grid_kms, dispersion_grid_kms : arrays
        Trial stellar velocities and dispersions, km/s.
    min_pixels : int
        Spectra with fewer usable pixels inside the templates' range are not fitted (``fitted`` False).

    Returns
    -------
    ContinuumFit
    """
    wavelength = np.asarray(wavelength, float)
    flux = np.asarray(flux, float)
    ivar = np.asarray(ivar, float)
    redshift = np.asarray(redshift, float)
    n, length = flux.shape
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}")
    prob = _Problem(wavelength, np.broadcast_to(sigma_inst_kms, wavelength.shape), redshift, degree)
    n_tpl = prob.tflux.shape[0]
    base_w = np.where(_line_mask(wavelength, redshift), 0.0, np.maximum(ivar, 0.0))
    y = np.where(base_w > 0, flux, 0.0)

    # 1. template selection with the full library
    cols, inside = prob.columns(_START_DISPERSION_KMS, np.zeros(n))
    w = base_w * inside
    fitted = (w > 0).sum(axis=1) >= min_pixels
    w = np.where(fitted[:, None], w, 0.0)
    nonneg_full = np.r_[np.ones(n_tpl, bool), np.zeros(degree + 1, bool)]
    gram, rhs, _ = _normal(cols, prob.poly, w, y)
    x, _ = nnls_normal_equations(gram, rhs, nonneg_full)
    k_sel = min(max_templates, n_tpl)
    select = np.argsort(-x[:, :n_tpl], axis=1)[:, :k_sel]  # (n, k)
    nonneg = np.r_[np.ones(k_sel, bool), np.zeros(degree + 1, bool)]

    def trial(sigma_star, velocity):
        c, ins = prob.columns(sigma_star, velocity, select)
        ww = w * ins
        g, r, design = _normal(c, prob.poly, ww, y)
        xx, passive = nnls_normal_equations(g, r, nonneg)
        return _chi2(g, r, xx, (ww * y**2).sum(axis=1)), xx, passive, g, design, ww

    # 2. velocity grid at the start dispersion, parabola through the best three; then the dispersion grid
    vgrid = np.asarray(velocity_grid_kms, float)
    chi_v = np.stack([trial(_START_DISPERSION_KMS, np.full(n, v))[0] for v in vgrid], axis=1)  # (n, V)
    i = np.clip(chi_v.argmin(axis=1), 1, vgrid.size - 2)
    rows = np.arange(n)
    c0, c1, c2 = chi_v[rows, i - 1], chi_v[rows, i], chi_v[rows, i + 1]
    denom = c0 - 2 * c1 + c2
    step = vgrid[1] - vgrid[0]
    offset = np.where(denom > 0, 0.5 * (c0 - c2) / np.where(denom > 0, denom, 1.0), 0.0)
    velocity = vgrid[i] + np.clip(offset, -1.0, 1.0) * step
    sgrid = np.asarray(dispersion_grid_kms, float)
    chi_s = np.stack([trial(s, velocity)[0] for s in sgrid], axis=1)
    dispersion = sgrid[chi_s.argmin(axis=1)]

    # 3. final fit at each spectrum's dispersion (grouped by grid value)
    continuum = np.zeros((n, length))
    cont_var = np.full((n, length), np.inf)
    chi2_red = np.full(n, np.nan)
    weights = np.zeros((n, n_tpl))
    for s in np.unique(dispersion):
        m = dispersion == s
        c, ins = prob.columns(s, velocity[m], select[m], rows=m)
        ww = w[m] * ins
        g, r, design = _normal(c, prob.poly, ww, y[m])
        xx, passive = nnls_normal_equations(g, r, nonneg)
        model = np.einsum("nk,nkl->nl", xx, design)
        # covariance over the parameters not held at zero
        pm = passive[:, :, None] & passive[:, None, :]
        eye = np.eye(g.shape[1])
        d = np.sqrt(np.maximum(np.einsum("nkk->nk", g), 1e-300))
        gs = np.where(pm, g / (d[:, :, None] * d[:, None, :]), eye)
        cov = np.linalg.pinv(gs, rcond=1e-10, hermitian=True) / (d[:, :, None] * d[:, None, :])
        cov = np.where(pm, cov, 0.0)
        var = np.einsum("nkl,nkj,njl->nl", design, cov, design)
        dof = np.maximum((ww > 0).sum(axis=1) - passive.sum(axis=1), 1)
        chi2_red[m] = (ww * (y[m] - model) ** 2).sum(axis=1) / dof
        in_range = ins & fitted[m, None]
        continuum[m] = np.where(in_range, model, 0.0)
        cont_var[m] = np.where(in_range, var, np.inf)
        wsel = np.zeros((m.sum(), n_tpl))
        np.put_along_axis(wsel, select[m], xx[:, :k_sel], axis=1)
        weights[m] = wsel
    chi2_red = np.where(fitted, chi2_red, np.nan)
    return ContinuumFit(continuum, cont_var, np.where(fitted, velocity, np.nan), np.where(fitted, dispersion, np.nan),
                        chi2_red, weights, fitted)  # fmt: skip
