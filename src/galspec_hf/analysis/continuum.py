"""Stellar-continuum fit before the emission lines, batched over spectra.

Each spectrum is modelled as a non-negative combination of stellar templates (MILES-HC, shipped in
``galspec_hf/templates/mileshc_templates.npz``; see data_scripts/make_continuum_templates.py and docs/LINES.md),
shifted to the spectrum's redshift plus a stellar velocity, broadened by a Gaussian of sigma
``sqrt(sigma_star^2 + sigma_inst^2 - sigma_template^2)`` (km/s, per wavelength), plus an additive Legendre
polynomial (degree 8 by default, as in the MaNGA DAP's own pPXF test fit; Cappellari & Emsellem 2004, PASP 116, 138),
with the emission-line windows of the DAP's ELPSCMSK list (3 x 250 km/s half-width) and its sky mask excluded.

Speed comes from sharing work over spectra: the templates are broadened once per trial dispersion on the template
grid, and every fit is solved through its (K x K) normal equations, batched in numpy. Only the pixels that carry
weight enter the trial fits; the Gram products run a few spectra at a time on blocks of pixels (small enough to
stay in cache and on one BLAS thread); spectra sharing one shift (a cube: one redshift) interpolate the library once
per trial, and their full-library Gram is one matrix product over column pairs; each NNLS starts from the
previous trial's set of positive weights. None of this changes the solution (rounding only):

1. all 42 templates at (v = 0, sigma_star = 100 km/s): a batched non-negative least squares (active-set, see
   :func:`nnls_normal_equations`) selects each spectrum's templates (at most ``max_templates``, by weight);
2. with those templates, a grid in stellar velocity, then in dispersion, picks the kinematics of least chi^2
   (a parabola through the three best velocity points refines the velocity);
3. the final fit gives the continuum and its per-pixel variance ``a(lambda)^T (A^T W A)^-1 a(lambda)`` over the
   free parameters, which :func:`galspec_hf.analysis.fit_emission_lines` adds to the pixel variance of the line fit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.polynomial import legendre

from .. import constants as C

__all__ = [
    "ContinuumFit",
    "ContinuumTemplates",
    "fit_stellar_continuum",
    "load_continuum_templates",
    "nnls_normal_equations",
    "ssp_continuum_templates",
]

_C_KMS = C.SPEED_OF_LIGHT_KMS
_TEMPLATE_FILE = Path(__file__).resolve().parent.parent / "templates" / "mileshc_templates.npz"
#: Trial stellar velocities (relative to the given redshift) and dispersions, km/s.
VELOCITY_GRID_KMS = np.arange(-300.0, 301.0, 50.0)
DISPERSION_GRID_KMS = np.array([30.0, 70.0, 110.0, 150.0, 200.0, 260.0, 330.0])
_START_DISPERSION_KMS = 100.0


@dataclass(frozen=True)
class ContinuumTemplates:
    """A stellar template library for :func:`fit_stellar_continuum`.

    Attributes
    ----------
    wavelength_rest_a : array (T,)
        Vacuum rest-frame wavelengths, Angstrom, uniform in log(lambda) (the fit broadens in pixels of constant
        velocity width).
    flux : array (K, T)
        The K template spectra (any normalisation: the fit's weights absorb it).
    fwhm_a : float or array (T,)
        The templates' own resolution, Gaussian FWHM in Angstrom (0: sharper than any spectrum fitted).
    name : str
        Where the templates came from; it keys the cache of broadened libraries, so two libraries need two names.
    """

    wavelength_rest_a: np.ndarray
    flux: np.ndarray
    fwhm_a: float | np.ndarray
    name: str

    def __post_init__(self):
        wave, flux = np.asarray(self.wavelength_rest_a, float), np.asarray(self.flux, float)
        if wave.ndim != 1 or flux.ndim != 2 or flux.shape[1] != wave.size or flux.shape[0] < 1:
            raise ValueError(
                f"templates {self.name!r}: flux must be (K, T) with T = wavelength_rest_a.size = {wave.size}, got "
                f"{flux.shape}"
            )
        step = np.diff(np.log(wave))
        if np.any(step <= 0) or np.ptp(step) > 1e-6 * step.mean():
            raise ValueError(f"templates {self.name!r}: wavelength_rest_a must be increasing and uniform in log")
        fwhm = np.asarray(self.fwhm_a, float)
        if not (fwhm.ndim == 0 or fwhm.shape == wave.shape) or np.any(~np.isfinite(fwhm)) or np.any(fwhm < 0):
            raise ValueError(f"templates {self.name!r}: fwhm_a must be a number or ({wave.size},) array >= 0")
        object.__setattr__(self, "wavelength_rest_a", wave)
        object.__setattr__(self, "flux", flux)


def continuum_template_grid_rest_a() -> np.ndarray:
    """The rest-frame vacuum wavelength grid (A) of the shipped templates: logarithmic, pixels of
    ``C.CONTINUUM_TEMPLATE_VELSCALE_KMS`` over ``C.CONTINUUM_TEMPLATE_RANGE_REST_A``."""
    step = C.CONTINUUM_TEMPLATE_VELSCALE_KMS / C.SPEED_OF_LIGHT_KMS
    lo, hi = C.CONTINUUM_TEMPLATE_RANGE_REST_A
    return np.exp(np.arange(np.log(lo), np.log(hi), step))


@lru_cache(maxsize=4)
def load_continuum_templates(path=None) -> ContinuumTemplates:
    """A template library for the continuum fit: by default the shipped MILES-HC (42 spectra, 2.5 A FWHM).

    Parameters
    ----------
    path : str or Path, optional
        Another library: an ``.npz`` file in the shipped file's layout (``wavelength_rest_a`` (T,) vacuum rest
        Angstrom, uniform in log; ``flux`` (K, T); ``fwhm_a``, a number or (T,)), or an FSPS SSP FITS file
        (:func:`ssp_continuum_templates`, every age).

    The shipped templates are on a logarithmic grid of ``C.CONTINUUM_TEMPLATE_VELSCALE_KMS`` pixels, each
    normalised to unit median.
    """
    if path is not None and str(path).lower().endswith((".fits", ".fit", ".fits.gz")):
        return ssp_continuum_templates(path)
    file = _TEMPLATE_FILE if path is None else Path(path)
    if not file.is_file():
        hint = " (run data_scripts/make_continuum_templates.py)" if path is None else ""
        raise ValueError(f"continuum templates not found: {file}{hint}")
    with np.load(file) as data:
        missing = [key for key in ("wavelength_rest_a", "flux", "fwhm_a") if key not in data]
        if missing:
            raise ValueError(f"{file}: not a continuum template file, arrays {missing} missing")
        fwhm = np.asarray(data["fwhm_a"], float)
        return ContinuumTemplates(data["wavelength_rest_a"].astype(float), data["flux"].astype(float),
                                  float(fwhm) if fwhm.ndim == 0 else fwhm,
                                  "MILES-HC" if path is None else str(file))  # fmt: skip


def ssp_continuum_templates(path, exclude_ages_yr=()) -> ContinuumTemplates:
    """A template library from an FSPS simple-stellar-population file (one spectrum per age).

    The spectra are averaged, conserving flux, onto the shipped library's logarithmic grid
    (:func:`continuum_template_grid_rest_a`) and normalised to unit median. Their resolution is taken as 0 (FWHM):
    the simulator (:mod:`galspec_hf.simulate.templates`) broadens these spectra by the stellar and instrumental
    sigma alone, so on its spectra this is the consistent choice.

    Parameters
    ----------
    path : str or Path
        FSPS SSP FITS file (:func:`galspec_hf.simulate.templates.read_ssp_file`), e.g.
        ``SSP_Padova_CKC14z_Kroupa_Z0.0190.fits``.
    exclude_ages_yr : sequence of float
        Ages (yr) whose SSPs are left out (matched within 1 %): fitting spectra made from this file without the
        SSPs that made them tests the fit on populations the library brackets but does not contain.
    """
    from ..simulate.templates import read_ssp_file  # noqa: PLC0415 (the simulator's reader of this format)
    from ..spectral import pixel_edges, rebin_flux_conserving  # noqa: PLC0415

    wavelength, flux, ages_yr = read_ssp_file(path)
    keep = np.ones(ages_yr.size, bool)
    for age in exclude_ages_yr:
        hit = np.abs(ages_yr / float(age) - 1.0) < 0.01
        if not hit.any():
            raise ValueError(f"{path}: no SSP of age {age:.3g} yr to exclude (ages: {np.round(ages_yr, -5)})")
        keep &= ~hit
    if not keep.any():
        raise ValueError(f"{path}: every SSP excluded")
    wave = continuum_template_grid_rest_a()
    spectra = rebin_flux_conserving(wavelength, flux[:, keep].T, pixel_edges(wave))  # (K, T)
    spectra /= np.median(spectra, axis=1, keepdims=True)
    ages = ",".join(f"{a:.3g}" for a in ages_yr[keep])
    return ContinuumTemplates(wave, spectra, 0.0, f"ssp:{Path(path).name}[ages {ages}]")


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
_BROADEN_LOCK = threading.Lock()  # fit_emission_lines fits chunks in threads
_BROADEN_CACHE_SIZE = 24


def nnls_normal_equations(
    gram: np.ndarray, rhs: np.ndarray, nonneg: np.ndarray, max_iter: int = 60, passive: np.ndarray | None = None
):
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
    passive : bool array (n, K), optional
        A first guess of the parameters not held at zero (e.g. the solution of a neighbouring problem): it only
        saves iterations; the solution is the same (the minimum is unique where the Gram is positive definite).

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

    passive = np.broadcast_to(~nonneg, (n, k)).copy() if passive is None else (passive | ~nonneg)
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
    templates : int array (n, k)
        Indices of the templates the fit could use (selected in its first step); with ``velocity_kms`` and
        ``dispersion_kms`` they let :func:`fit_stellar_continuum` (argument ``start``) refit only the weights.
    """

    continuum: np.ndarray
    continuum_var: np.ndarray
    velocity_kms: np.ndarray
    dispersion_kms: np.ndarray
    chi2_reduced: np.ndarray
    weights: np.ndarray
    fitted: np.ndarray
    templates: np.ndarray


def _line_mask(wavelength, redshift, lines=C.CONTINUUM_MASKED_LINES_VACUUM_A):
    """(n, L) True where a pixel is inside the window of one of `lines` (rest, vacuum A) or the sky-line mask
    (observed)."""
    n, length = redshift.size, wavelength.size
    half = C.CONTINUUM_LINE_MASK_HALF_WIDTH_KMS / _C_KMS
    # +1 at the first pixel of each window, -1 after its last; the cumulative sum counts covering windows
    edges = np.zeros((n, length + 1), np.int64)
    rows = np.arange(n)
    for line in lines:
        centre = line * (1.0 + redshift)
        np.add.at(edges, (rows, np.searchsorted(wavelength, centre * (1 - half), side="left")), 1)
        np.add.at(edges, (rows, np.searchsorted(wavelength, centre * (1 + half), side="right")), -1)
    masked = np.cumsum(edges[:, :-1], axis=1) > 0
    for centre, half_a in C.CONTINUUM_SKY_LINES_VACUUM_A:
        masked |= (np.abs(wavelength - centre) <= half_a)[None, :]
    return masked


#: Pixels per block of the Gram products (:func:`_normal_equations`): one small matrix product per spectrum and
#: block, kept below the size at which OpenBLAS splits a product over threads (m * n * k ~ 5e5). On a shared
#: machine, thousands of small threaded products wait on each other (measured: the whole fit 8x slower with 2
#: threads than with 1 before the split).
_BLOCK_PIX = 512
_BLOCK_PIX_LIBRARY = 128  # for the full library (42 + 9 columns)


class _Problem:
    """Template library and polynomial on one chunk's pixels: shared pieces for one chunk."""

    def __init__(self, wavelength, sigma_inst_pix, redshift, degree, templates: ContinuumTemplates | None = None):
        templates = load_continuum_templates() if templates is None else templates
        self.twave, self.tflux, fwhm = templates.wavelength_rest_a, templates.flux, templates.fwhm_a
        self.templates_name = templates.name
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
        self.poly = legendre.legvander(x, degree) if degree >= 0 else np.zeros((x.size, 0))  # (L, degree + 1)

    def broadened(self, sigma_star):
        """Broadened library at ``sigma_star``: (flat (K * T,), flat forward difference (K * T,), T)."""
        key = (self.templates_name, float(sigma_star), self._inst_key)
        with _BROADEN_LOCK:
            cached = _BROADEN_CACHE.get(key)
        if cached is None:  # broadened outside the lock (another thread may do the same; both results are equal)
            s2 = sigma_star**2 + self.sigma_inst_t**2 - self.sigma_tpl_t**2
            sigma_pix = np.sqrt(np.maximum(s2, 0.0)) / (self.dlog * _C_KMS)
            tb = _broaden(self.tflux, sigma_pix)
            diff = np.diff(tb, axis=1, append=tb[:, -1:])  # tb[:, i + 1] - tb[:, i]; 0 at the last pixel
            cached = (tb.ravel(), diff.ravel(), tb.shape[1])
            with _BROADEN_LOCK:
                if len(_BROADEN_CACHE) >= _BROADEN_CACHE_SIZE:
                    _BROADEN_CACHE.pop(next(iter(_BROADEN_CACHE)))
                _BROADEN_CACHE[key] = cached
        return cached

    def sampling(self, velocity, pixels, rows=None) -> _Sampling:
        """Where each spectrum's pixels fall on the template grid at stellar ``velocity`` (n,).

        ``pixels``: indices (B, P) of the observed pixels used. Spectra that all have the same shift (one redshift
        and velocity, as in a cube's velocity grid) share one sampling of shape (1, B, P).
        """
        z = self.redshift if rows is None else self.redshift[rows]
        shift = np.log1p(z) + np.log1p(np.asarray(velocity, float) / _C_KMS)  # (n,)
        if shift.size > 1 and np.all(shift == shift[0]):
            shift = shift[:1]
        n_t = self.tflux.shape[1]
        pos = (self.log_obs[pixels][None] - shift[:, None, None] - self.log_t0) / self.dlog
        inside = (pos >= 0) & (pos <= n_t - 1)
        pos = np.clip(pos, 0, n_t - 1.000001)
        i0 = pos.astype(np.int64)
        return _Sampling(i0, pos - i0, inside)

    def columns(self, sigma_star, sampling: _Sampling, select):
        """Columns (n, B, k, P) of the ``select``-ed templates (n, k) at a :meth:`sampling` of the pixels.

        Linear interpolation on the broadened library, ``tb[i0] (1 - f) + tb[i0 + 1] f``; values outside the
        template range (``sampling.inside`` False) are edge values, to be given zero weight.
        """
        flat, diff, n_t = self.broadened(sigma_star)
        i0, f = sampling.i0, sampling.f
        if i0.shape[0] == 1:  # one shift for all: interpolate the library once, then pick each spectrum's rows
            lib = flat.reshape(-1, n_t)[:, i0[0]] + diff.reshape(-1, n_t)[:, i0[0]] * f[0]  # (K, B, P)
            n_blocks, n_lib = lib.shape[1], lib.shape[0]
            lib = np.ascontiguousarray(lib.transpose(1, 0, 2)).reshape(n_blocks * n_lib, -1)  # rows (block, template)
            return np.take(lib, np.arange(n_blocks)[None, :, None] * n_lib + select[:, None, :], axis=0)
        idx = select[:, None, :, None] * n_t + i0[:, :, None, :]
        cols = np.take(flat, idx)
        cols += np.take(diff, idx) * f[:, :, None, :]
        return cols


@dataclass
class _Sampling:
    """Template-grid positions of observed pixels: template pixel ``i0`` left of each, fraction ``f`` towards the
    next, ``inside`` the template range; arrays (n, B, P), or (1, B, P) when shared by all spectra."""

    i0: np.ndarray
    f: np.ndarray
    inside: np.ndarray

    def __getitem__(self, rows: slice) -> _Sampling:
        if self.i0.shape[0] == 1:
            return self
        return _Sampling(self.i0[rows], self.f[rows], self.inside[rows])


def _blocks(pixels, block):
    """Pixel indices (P,) padded (with the last index, to be given zero weight) to (B, block); and the pad mask."""
    n_blocks = max(1, -(-pixels.size // block))
    padded = np.full(n_blocks * block, pixels[-1] if pixels.size else 0, np.int64)
    padded[: pixels.size] = pixels
    real = np.zeros(n_blocks * block, bool)
    real[: pixels.size] = True
    return padded.reshape(n_blocks, block), real.reshape(n_blocks, block)


def _design(cols, poly):
    """Design (n, B, k + p, P) of template columns (n, B, k, P) and the polynomial (B, p, P), on blocked pixels."""
    n, n_blocks, k, n_pix = cols.shape
    design = np.empty((n, n_blocks, k + poly.shape[1], n_pix))
    design[:, :, :k] = cols
    design[:, :, k:] = poly[None]
    return design


#: Spectra per pass of columns -> design -> Gram, so that their arrays (~0.6 MB per spectrum) stay in cache.
_BATCH = 8


def _normal_equations(prob, sigma_star, sampling, select, poly, weight, y):
    """Normal equations of the ``select``-ed templates (n, k) at ``sigma_star`` and the polynomial (B, p, P), on a
    :meth:`_Problem.sampling` of the blocked pixels, with weights and data (n, B, P).

    Returns gram ``A^T W A`` (n, k + p, k + p), rhs ``A^T W y`` (n, k + p) and ``y^T W y`` (n,). Each product
    runs per spectrum and pixel block (see ``_BLOCK_PIX``), ``_BATCH`` spectra at a time.
    """
    n, k = select.shape
    p = poly.shape[1]
    gram, rhs, yy = np.empty((n, k + p, k + p)), np.empty((n, k + p)), np.empty(n)
    for start in range(0, n, _BATCH):
        rows = slice(start, start + _BATCH)
        sw = np.sqrt(weight[rows])[:, :, None, :]  # sqrt(w) a: gram = (sqrt(w) A)(sqrt(w) A)^T
        cols = prob.columns(sigma_star, sampling[rows], select[rows])
        cols *= sw
        spoly = poly[None] * sw
        swy = (sw[:, :, 0, :] * y[rows])[..., None]
        g = gram[rows]
        g[:, :k, :k] = np.matmul(cols, cols.swapaxes(-1, -2)).sum(axis=1)
        g[:, :k, k:] = np.matmul(cols, spoly.swapaxes(-1, -2)).sum(axis=1)
        g[:, k:, :k] = g[:, :k, k:].transpose(0, 2, 1)
        g[:, k:, k:] = np.matmul(spoly, spoly.swapaxes(-1, -2)).sum(axis=1)
        rhs[rows, :k] = np.matmul(cols, swy).sum(axis=1)[..., 0]
        rhs[rows, k:] = np.matmul(spoly, swy).sum(axis=1)[..., 0]
        yy[rows] = (swy**2).sum(axis=(1, 2, 3))
    return gram, rhs, yy


def _shared_normal_equations(design, weight, y):
    """Normal equations of one design (K, P) shared by n spectra with weights and data (n, P): (gram, rhs).

    One matrix product of the weights with every product of two columns (a single large product, instead of n
    small ones).
    """
    upper, lower = np.triu_indices(design.shape[0])
    pairs = design[upper] * design[lower]  # (K (K + 1) / 2, P)
    flat = weight @ pairs.T
    gram = np.empty((weight.shape[0], design.shape[0], design.shape[0]))
    gram[:, upper, lower] = flat
    gram[:, lower, upper] = flat
    return gram, (weight * y) @ design.T


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
    masked_lines=C.CONTINUUM_MASKED_LINES_VACUUM_A,
    start: ContinuumFit | None = None,
    all_templates: bool = False,
    templates: ContinuumTemplates | None = None,
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
        Degree of the additive Legendre polynomial (default 8; -1: none, pPXF's convention).
    max_templates : int
        Templates kept per spectrum after the first full-library fit (default 12).
    velocity_grid_kms, dispersion_grid_kms : arrays
        Trial stellar velocities and dispersions, km/s.
    min_pixels : int
        Spectra with fewer usable pixels inside the templates' range are not fitted (``fitted`` False).
    masked_lines : sequence of float
        Rest-frame vacuum wavelengths (A) of the emission lines whose windows (+-
        ``C.CONTINUUM_LINE_MASK_HALF_WIDTH_KMS``) are left out of the fit; default the DAP's ELPSCMSK list. The
        sky-line mask always applies.
    start : ContinuumFit, optional
        An earlier fit of the same spectra: its velocity and dispersion are kept (and its templates, unless
        `all_templates`), only the final weighted fit (step 3) runs. Used to refit the continuum of spectra minus
        their fitted emission lines with those lines' windows unmasked
        (:func:`galspec_hf.analysis.fit_emission_lines`).
    all_templates : bool
        With `start`: the final fit uses the whole library, not the start's selected templates.
    templates : ContinuumTemplates, optional
        The template library; default the shipped MILES-HC (:func:`load_continuum_templates`). With `start`, the
        library the start was fitted with.

    Returns
    -------
    ContinuumFit
    """
    wavelength = np.asarray(wavelength, float)
    flux = np.asarray(flux, float)
    ivar = np.asarray(ivar, float)
    redshift = np.asarray(redshift, float)
    n, length = flux.shape
    if degree < -1:
        raise ValueError(f"degree must be >= -1 (-1: no polynomial), got {degree}")
    prob = _Problem(wavelength, np.broadcast_to(sigma_inst_kms, wavelength.shape), redshift, degree, templates)
    n_tpl = prob.tflux.shape[0]
    base_w = np.where(_line_mask(wavelength, redshift, masked_lines), 0.0, np.maximum(ivar, 0.0))
    y = np.where(base_w > 0, flux, 0.0)
    all_pixels = np.arange(length)
    inside = prob.sampling(np.zeros(n), all_pixels[None]).inside[:, 0]
    w = base_w * inside
    fitted = (w > 0).sum(axis=1) >= min_pixels
    if start is not None:
        if start.templates.shape[0] != n:
            raise ValueError(f"`start` holds {start.templates.shape[0]} spectra, `flux` {n}")
        if start.weights.shape[1] != n_tpl:
            raise ValueError(f"`start` was fitted with {start.weights.shape[1]} templates, `templates` holds {n_tpl}")
        fitted &= start.fitted
    w = np.where(fitted[:, None], w, 0.0)
    if start is not None:
        select = np.tile(np.arange(n_tpl), (n, 1)) if all_templates else start.templates
        nonneg = np.r_[np.ones(select.shape[1], bool), np.zeros(degree + 1, bool)]
        passive = np.c_[np.take_along_axis(start.weights, select, axis=1) > 0, np.ones((n, degree + 1), bool)]
        velocity = np.where(fitted, start.velocity_kms, 0.0)
        dispersion = np.where(fitted, start.dispersion_kms, DISPERSION_GRID_KMS[0])
        return _final_fit(prob, w, y, fitted, velocity, dispersion, select, nonneg, passive)

    # 1. template selection with the full library
    # every trial below only removes pixels from these weights: the trials use only the pixels weighted here
    used = np.flatnonzero((w > 0).any(axis=0))

    def on_blocks(block):
        pix, real = _blocks(used, block)
        return pix, prob.poly[pix].transpose(0, 2, 1), w[:, pix] * real, y[:, pix]

    pix, poly_b, w_b, y_b = on_blocks(_BLOCK_PIX_LIBRARY)
    sampling = prob.sampling(np.zeros(n), pix)
    library = np.broadcast_to(np.arange(n_tpl), (n, n_tpl))
    if sampling.i0.shape[0] == 1:  # one redshift: the library's columns are the same for all spectra
        design = _design(prob.columns(_START_DISPERSION_KMS, sampling, library[:1]), poly_b)[0]  # (B, K, P)
        gram, rhs = _shared_normal_equations(
            design.transpose(1, 0, 2).reshape(design.shape[1], -1), w_b.reshape(n, -1), y_b.reshape(n, -1)
        )
    else:
        gram, rhs, _ = _normal_equations(prob, _START_DISPERSION_KMS, sampling, library, poly_b, w_b, y_b)
    nonneg_full = np.r_[np.ones(n_tpl, bool), np.zeros(degree + 1, bool)]
    x, _ = nnls_normal_equations(gram, rhs, nonneg_full)
    k_sel = min(max_templates, n_tpl)
    select = np.argsort(-x[:, :n_tpl], axis=1)[:, :k_sel]  # (n, k)
    nonneg = np.r_[np.ones(k_sel, bool), np.zeros(degree + 1, bool)]
    # each NNLS below starts from the previous one's set of positive weights (fewer iterations, same solution)
    warm = {"passive": np.c_[np.take_along_axis(x[:, :n_tpl], select, axis=1) > 0, np.ones((n, degree + 1), bool)]}

    pix, poly_b, w_b, y_b = on_blocks(_BLOCK_PIX)

    def trial(sigma_star, sampling):
        g, r, yy = _normal_equations(prob, sigma_star, sampling, select, poly_b, w_b * sampling.inside, y_b)
        xx, warm["passive"] = nnls_normal_equations(g, r, nonneg, passive=warm["passive"])
        return _chi2(g, r, xx, yy)

    # 2. velocity grid at the start dispersion, parabola through the best three; then the dispersion grid
    vgrid = np.asarray(velocity_grid_kms, float)
    chi_v = np.stack([trial(_START_DISPERSION_KMS, prob.sampling(np.full(n, v), pix)) for v in vgrid], axis=1)
    i = np.clip(chi_v.argmin(axis=1), 1, vgrid.size - 2)
    rows = np.arange(n)
    c0, c1, c2 = chi_v[rows, i - 1], chi_v[rows, i], chi_v[rows, i + 1]
    denom = c0 - 2 * c1 + c2
    step = vgrid[1] - vgrid[0]
    offset = np.where(denom > 0, 0.5 * (c0 - c2) / np.where(denom > 0, denom, 1.0), 0.0)
    velocity = vgrid[i] + np.clip(offset, -1.0, 1.0) * step
    sgrid = np.asarray(dispersion_grid_kms, float)
    sampling = prob.sampling(velocity, pix)
    chi_s = np.stack([trial(s, sampling) for s in sgrid], axis=1)
    dispersion = sgrid[chi_s.argmin(axis=1)]
    return _final_fit(prob, w, y, fitted, velocity, dispersion, select, nonneg, warm["passive"])


def _final_fit(prob, w, y, fitted, velocity, dispersion, select, nonneg, passive_start) -> ContinuumFit:
    """Step 3 of :func:`fit_stellar_continuum`: the fit at each spectrum's kinematics (grouped by dispersion) on
    all weighted pixels, with the continuum's variance from the covariance of the parameters not held at zero."""
    n, length = y.shape
    n_tpl, k_sel = prob.tflux.shape[0], select.shape[1]
    all_pixels = np.arange(length)
    continuum = np.zeros((n, length))
    cont_var = np.full((n, length), np.inf)
    chi2_red = np.full(n, np.nan)
    weights = np.zeros((n, n_tpl))
    pix, real = _blocks(all_pixels, _BLOCK_PIX)
    poly_b = prob.poly[pix].transpose(0, 2, 1)
    for s in np.unique(dispersion):
        m = dispersion == s
        sampling = prob.sampling(velocity[m], pix, rows=m)
        ww = w[m][:, pix] * (real & sampling.inside)
        ym = y[m][:, pix]
        g, r, _ = _normal_equations(prob, s, sampling, select[m], poly_b, ww, ym)
        xx, passive = nnls_normal_equations(g, r, nonneg, passive=passive_start[m])
        # covariance over the parameters not held at zero
        pm = passive[:, :, None] & passive[:, None, :]
        eye = np.eye(g.shape[1])
        d = np.sqrt(np.maximum(np.einsum("nkk->nk", g), 1e-300))
        gs = np.where(pm, g / (d[:, :, None] * d[:, None, :]), eye)
        cov = np.linalg.pinv(gs, rcond=1e-10, hermitian=True) / (d[:, :, None] * d[:, None, :])
        cov = np.where(pm, cov, 0.0)
        model, var = np.empty(ww.shape), np.empty(ww.shape)
        for start in range(0, xx.shape[0], _BATCH):
            rows = slice(start, start + _BATCH)
            design = _design(prob.columns(s, sampling[rows], select[m][rows]), poly_b)  # (nb, B, K, P)
            model[rows] = np.matmul(xx[rows, None, None, :], design)[:, :, 0, :]
            var[rows] = (np.matmul(cov[rows, None], design) * design).sum(axis=2)  # a^T cov a per pixel
        dof = np.maximum((ww > 0).sum(axis=(1, 2)) - passive.sum(axis=1), 1)
        chi2_red[m] = (ww * (ym - model) ** 2).sum(axis=(1, 2)) / dof
        in_range = (sampling.inside & fitted[m, None, None]).reshape(m.sum(), -1)[:, :length]
        continuum[m] = np.where(in_range, model.reshape(m.sum(), -1)[:, :length], 0.0)
        cont_var[m] = np.where(in_range, var.reshape(m.sum(), -1)[:, :length], np.inf)
        wsel = np.zeros((m.sum(), n_tpl))
        np.put_along_axis(wsel, select[m], xx[:, :k_sel], axis=1)
        weights[m] = wsel
    chi2_red = np.where(fitted, chi2_red, np.nan)
    return ContinuumFit(continuum, cont_var, np.where(fitted, velocity, np.nan), np.where(fitted, dispersion, np.nan),
                        chi2_red, weights, fitted, select)  # fmt: skip
