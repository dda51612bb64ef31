"""DESI fiber spectra: fiber aperture on the seeing-convolved galaxy, the three arms, resolution,
sky-dominated noise with honest inverse variance, and coadd + redrock writers.

The fiber spectrum is computed without building a cube: a fiber at position p on the sky collects
sum_x I(x, lambda) K(|x - p|), where I is the intrinsic (pre-seeing) light and K = aperture * PSF
is the fraction of the light emitted at x that enters the fiber. K depends only on the distance,
so it is tabulated once per seeing value. Continuum components enter through their light fractions
inside K; emission lines through a K-weighted histogram of their line-of-sight velocities.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from scipy.special import erf

from .. import constants as C
from ..sky import fiber_sky_position
from ..spectral import ab_mag_to_f_nu, desi_sigma_pix, pixel_edges, rebin_flux_conserving
from .galaxy import LINE_NAMES, LINE_WAVELENGTHS_REST_A, Galaxy, component_spectra_rest
from .templates import TemplateSet

ARMS = tuple(C.DESI_ARMS_A)  # ("b", "r", "z")
#: Offsets of the 11 stored resolution diagonals, DESI/desispec convention (scipy dia_matrix offsets 5 .. -5).
RESOLUTION_OFFSETS = np.arange(C.DESI_RESOLUTION_NDIAG // 2, -(C.DESI_RESOLUTION_NDIAG // 2) - 1, -1)
#: Velocity histogram bin for the line profiles, km/s.
VELOCITY_BIN_KMS = 10.0


# ------------------------------------------------------------------------------------------------
# Grids and resolution
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def arm_wavelengths() -> dict[str, np.ndarray]:
    """The real DESI b, r, z wavelength grids (vacuum A, 0.8 A steps, overlapping)."""
    out = {}
    for arm, (lo, hi) in C.DESI_ARMS_A.items():
        n = int(round((hi - lo) / C.DESI_WAVELENGTH_STEP_A)) + 1
        out[arm] = lo + C.DESI_WAVELENGTH_STEP_A * np.arange(n)
    return out


@functools.lru_cache(maxsize=1)
def _all_arm_edges() -> np.ndarray:
    return np.concatenate([pixel_edges(w) for w in arm_wavelengths().values()])


@functools.lru_cache(maxsize=3)
def resolution_data(arm: str) -> np.ndarray:
    """(11, N) float32 resolution diagonals in DESI's storage convention (columns sum to 1).

    Element data[k, j] is R[j - offsets[k], j]: how much of the true flux at pixel j lands in pixel
    j - offsets[k], for a Gaussian line-spread function of the arm's measured width.
    """
    wavelength = arm_wavelengths()[arm]
    sigma = desi_sigma_pix(arm, wavelength)
    rows = -RESOLUTION_OFFSETS[:, None]  # row - column
    data = np.exp(-0.5 * (rows / sigma[None, :]) ** 2)
    data /= data.sum(axis=0, keepdims=True)
    return data.astype(np.float32)


@functools.lru_cache(maxsize=3)
def resolution_matrix(arm: str):
    """scipy.sparse matrix R of an arm (observed = R @ true)."""
    from scipy.sparse import dia_matrix  # noqa: PLC0415

    data = resolution_data(arm).astype(np.float64)
    n = data.shape[1]
    return dia_matrix((data, RESOLUTION_OFFSETS), shape=(n, n)).tocsr()


# ------------------------------------------------------------------------------------------------
# Fiber aperture kernel
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=128)
def fiber_kernel_table(
    seeing_fwhm_arcsec: float,
    fiber_diameter_arcsec: float = C.DESI_FIBER_DIAMETER_ARCSEC,
    profile: str = C.DESI_FIBER_PSF_PROFILE,
):
    """Radial table of K(d): fraction of a point source at distance d that enters the fiber.

    K = (circular aperture) convolved with the seeing PSF, integrated numerically on a polar grid over the
    aperture. ``profile``: "gaussian" (default, constants.DESI_FIBER_PSF_PROFILE: the simulated DESI exposure's
    seeing, and the Legacy Surveys FIBERFLUX convention) or "moffat" (beta = constants.MOFFAT_BETA).

    Returns
    -------
    distance_arcsec : (M,) array; fraction : (M,) array (K(0) < 1 is the point-source fiber fraction).
    """
    if seeing_fwhm_arcsec <= 0 or fiber_diameter_arcsec <= 0:
        raise ValueError("seeing_fwhm_arcsec and fiber_diameter_arcsec must be > 0")
    if profile not in ("moffat", "gaussian"):
        raise ValueError(f"profile must be 'moffat' or 'gaussian', got {profile!r}")
    radius = fiber_diameter_arcsec / 2
    n_r, n_phi = 24, 48
    r = (np.arange(n_r) + 0.5) / n_r * radius
    phi = (np.arange(n_phi) + 0.5) / n_phi * 2 * math.pi
    rr, pp = np.meshgrid(r, phi, indexing="ij")
    ax, ay = (rr * np.cos(pp)).ravel(), (rr * np.sin(pp)).ravel()
    area = (rr * (radius / n_r) * (2 * math.pi / n_phi)).ravel()
    d_max = radius + 6 * seeing_fwhm_arcsec
    distance = np.linspace(0.0, d_max, 160)
    r2 = (ax[None, :] - distance[:, None]) ** 2 + ay[None, :] ** 2
    if profile == "moffat":
        beta = C.MOFFAT_BETA
        alpha = seeing_fwhm_arcsec / (2 * math.sqrt(2 ** (1 / beta) - 1))
        psf = (beta - 1) / (math.pi * alpha**2) * (1 + r2 / alpha**2) ** (-beta)
    else:
        sigma = seeing_fwhm_arcsec / (2 * math.sqrt(2 * math.log(2)))
        psf = np.exp(-0.5 * r2 / sigma**2) / (2 * math.pi * sigma**2)
    fraction = psf @ area
    fraction[-1] = 0.0
    return distance, fraction


def fiber_weights(
    east: np.ndarray,
    north: np.ndarray,
    fiber_east: float,
    fiber_north: float,
    seeing_fwhm_arcsec: float,
    profile: str = C.DESI_FIBER_PSF_PROFILE,
) -> np.ndarray:
    """K(|x - p|) on a pixel grid: fraction of each pixel's intrinsic light that enters the fiber at p.

    ``profile`` as :func:`fiber_kernel_table` ("gaussian" for the Legacy Surveys FIBERFLUX convention).
    """
    distance, fraction = fiber_kernel_table(round(float(seeing_fwhm_arcsec) / 0.02) * 0.02, profile=profile)
    d = np.hypot(east - fiber_east, north - fiber_north)
    return np.interp(d, distance, fraction, right=0.0)


def exponential_disk_fiber_fraction(
    half_light_radius_arcsec: float,
    seeing_fwhm_arcsec: float,
    offset_arcsec: float = 0.0,
    profile: str = C.DESI_FIBER_PSF_PROFILE,
) -> float:
    """Fraction of a round exponential disk's light that enters a fiber ``offset_arcsec`` from its centre.

    The source model desispec uses for non-PSF targets (desispec.fiberfluxcorr.psf_to_fiber_flux_correction,
    desimodel fast fiber acceptance "DISK"). Integrated on a polar grid (s, psi) around the source centre:
    sum of I(s) K(|x(s, psi) - p|) s ds dpsi, with I(s) = exp(-s/h) / (2 pi h^2), h = r_e / 1.678.
    A half-light radius below 0.005 arcsec is a point source, K(offset).
    """
    if half_light_radius_arcsec < 0 or seeing_fwhm_arcsec <= 0 or offset_arcsec < 0:
        raise ValueError("half_light_radius_arcsec and offset_arcsec must be >= 0, seeing_fwhm_arcsec > 0")
    distance, fraction = fiber_kernel_table(round(float(seeing_fwhm_arcsec) / 0.02) * 0.02, profile=profile)
    if half_light_radius_arcsec < 0.005:
        return float(np.interp(offset_arcsec, distance, fraction, right=0.0))
    h = half_light_radius_arcsec / 1.678
    reach = distance[-1] + offset_arcsec
    n_s = max(600, math.ceil(8 * reach / h))  # steps <= h / 8 resolve the cusp of small disks
    step = reach / n_s
    radius = (np.arange(n_s) + 0.5) * step  # (n_s,) distance from the source centre
    if offset_arcsec == 0:
        mean_kernel = np.interp(radius, distance, fraction, right=0.0)
    else:
        # K at distance sqrt(s^2 + p^2 - 2 s p cos psi) from the fiber, averaged over psi (16 midpoints on [0, pi])
        psi = (np.arange(16) + 0.5) / 16 * math.pi
        to_fiber = np.sqrt(np.maximum(radius[:, None] ** 2 + offset_arcsec**2
                                      - 2 * radius[:, None] * offset_arcsec * np.cos(psi)[None, :], 0.0))  # fmt: skip
        mean_kernel = np.interp(to_fiber, distance, fraction, right=0.0).mean(axis=1)
    # 2 pi s ds I(s) with I = exp(-s/h) / (2 pi h^2)
    return float((mean_kernel * np.exp(-radius / h) * radius).sum() * step / h**2)


# ------------------------------------------------------------------------------------------------
# Fiber spectrum
# ------------------------------------------------------------------------------------------------
def gaussian_lines_on_grid(
    edges: np.ndarray, centres_A: np.ndarray, sigmas_A: np.ndarray, fluxes: np.ndarray
) -> np.ndarray:
    """Sum of pixel-integrated Gaussians (flux per A) on a grid of pixel edges.

    Parameters
    ----------
    edges : (N + 1,) pixel edges, A. centres_A, sigmas_A, fluxes : (G,) line centres, widths and integrated fluxes.

    Returns
    -------
    (N,) flux density: integral over each pixel / pixel width.
    """
    out = np.zeros(edges.size - 1)
    keep = (fluxes != 0) & (centres_A + 6 * sigmas_A > edges[0]) & (centres_A - 6 * sigmas_A < edges[-1])
    if not np.any(keep):
        return out
    centres_A, sigmas_A, fluxes = centres_A[keep], sigmas_A[keep], fluxes[keep]
    lo = np.searchsorted(edges, (centres_A - 6 * sigmas_A).min()) - 1
    hi = np.searchsorted(edges, (centres_A + 6 * sigmas_A).max()) + 1
    lo, hi = max(lo, 0), min(hi, edges.size - 1)
    # evaluate line by line groups within the window that they span
    order = np.argsort(centres_A)
    centres_A, sigmas_A, fluxes = centres_A[order], sigmas_A[order], fluxes[order]
    # groups: runs of lines closer than 12 of the widest sigma to their neighbour
    breaks = np.flatnonzero(np.diff(centres_A) >= 12 * sigmas_A.max()) + 1
    for start, stop in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [centres_A.size]]), strict=True):
        c, s, f = centres_A[start:stop], sigmas_A[start:stop], fluxes[start:stop]
        i0 = max(int(np.searchsorted(edges, (c - 6 * s).min())) - 1, lo)
        i1 = min(int(np.searchsorted(edges, (c + 6 * s).max())) + 1, hi)
        window = edges[i0 : i1 + 1]
        cdf = 0.5 * (1 + erf((window[None, :] - c[:, None]) / (math.sqrt(2) * s[:, None])))
        out[i0:i1] += (f[:, None] * np.diff(cdf, axis=1)).sum(axis=0) / np.diff(window)
    return out


def fiber_model(
    galaxy: Galaxy,
    templates: TemplateSet,
    maps: dict,
    east: np.ndarray,
    north: np.ndarray,
    fiber_east: float | None = None,
    fiber_north: float | None = None,
    apply_resolution: bool = True,
) -> dict:
    """Noiseless spectrum that a DESI fiber records at a sky position, on the three arm grids.

    Parameters
    ----------
    galaxy, templates : the galaxy and its stellar populations.
    maps : :func:`galaxy.render_maps` on the grid ``east``, ``north`` (arcsec from the target).
    fiber_east, fiber_north : fiber centre, arcsec from the target (default: the galaxy's fiber position).
    apply_resolution : multiply by the arm resolution matrices (True for what the instrument records).

    Returns
    -------
    dict with 'flux' : {arm: (N_arm,) 1e-17 erg/s/cm2/A}, 'line_flux' : (L,) true line fluxes in the fiber
    (1e-17 erg/s/cm2, observed), 'bulge_fraction', 'disk_fraction' : fraction of each component's total light
    in the fiber, 'velocity_gas_kms' : H-alpha-weighted mean line-of-sight gas velocity in the fiber.
    """
    if fiber_east is None:
        fiber_east, fiber_north = galaxy.fiber_east_arcsec, galaxy.fiber_north_arcsec
    weights = fiber_weights(east, north, fiber_east, fiber_north, galaxy.fiber_seeing_fwhm_arcsec)
    inside = weights > 0
    w = weights[inside]
    bulge_fraction = float(maps["bulge"][inside] @ w)
    disk_w = maps["disk"][inside] * w
    disk_fraction = float(disk_w.sum())
    v_stars = float((disk_w @ maps["velocity_stars"][inside]) / disk_fraction) if disk_fraction > 0 else 0.0

    spectra = component_spectra_rest(templates, galaxy)
    z = galaxy.redshift
    scale = galaxy.continuum_scale / (1 + z)
    wave_rest = templates.wavelength_rest
    lines_sf = maps["lines_sf"][:, inside]  # (L, P)
    lines_sf *= w[None, :]
    # (L,): the whole grid (weights are 0 outside the kernel), without an (L, P) copy
    lines_agn = maps["lines_agn"].reshape(len(maps["lines_agn"]), -1) @ weights.ravel()
    v_gas = maps["velocity_gas"][inside]
    line_flux = lines_sf.sum(axis=1) + lines_agn
    halpha = LINE_NAMES.index("Halpha")
    v_mean = float((lines_sf[halpha] @ v_gas) / lines_sf[halpha].sum()) if lines_sf[halpha].sum() > 0 else 0.0

    # velocity histogram of each line's light in the fiber
    v_min = v_gas.min() if v_gas.size else 0.0
    bins = np.floor((v_gas - v_min) / VELOCITY_BIN_KMS).astype(np.int64) if v_gas.size else np.zeros(0, np.int64)
    n_bins = int(bins.max()) + 1 if bins.size else 1
    hist = np.stack([np.bincount(bins, weights=lines_sf[i], minlength=n_bins) for i in range(len(LINE_NAMES))])
    v_centres = v_min + (np.arange(n_bins) + 0.5) * VELOCITY_BIN_KMS
    nonzero = hist.sum(axis=0) > 0
    hist, v_centres = hist[:, nonzero], v_centres[nonzero]
    beta = v_centres / C.SPEED_OF_LIGHT_KMS
    doppler = np.sqrt((1 + beta) / (1 - beta))
    centres = (LINE_WAVELENGTHS_REST_A[:, None] * (1 + z) * doppler[None, :]).ravel()
    sigma_v = math.hypot(galaxy.sigma_gas_kms, VELOCITY_BIN_KMS / math.sqrt(12))
    sigmas = centres * sigma_v / C.SPEED_OF_LIGHT_KMS
    fluxes = hist.ravel()
    agn_centres = LINE_WAVELENGTHS_REST_A * (1 + z)
    agn_sigmas = agn_centres * galaxy.agn_sigma_kms / C.SPEED_OF_LIGHT_KMS
    all_centres = np.concatenate([centres, agn_centres])
    all_sigmas = np.concatenate([sigmas, agn_sigmas])
    all_fluxes = np.concatenate([fluxes, lines_agn])

    flux = {}
    disk_shift = math.sqrt((1 + v_stars / C.SPEED_OF_LIGHT_KMS) / (1 - v_stars / C.SPEED_OF_LIGHT_KMS))
    all_edges = _all_arm_edges()
    bulge_all = rebin_flux_conserving(wave_rest * (1 + z), spectra["bulge"], all_edges, keep_all=True)
    disk_all = rebin_flux_conserving(wave_rest * (1 + z) * disk_shift, spectra["disk"], all_edges, keep_all=True)
    start = 0
    for arm, wavelength in arm_wavelengths().items():
        edges = pixel_edges(wavelength)
        stop = start + edges.size
        bulge = np.diff(bulge_all[start:stop]) / np.diff(edges)
        disk = np.diff(disk_all[start:stop]) / np.diff(edges)
        start = stop
        model = scale * (bulge_fraction * bulge + disk_fraction * disk)
        model += gaussian_lines_on_grid(edges, all_centres, all_sigmas, all_fluxes)
        if apply_resolution:
            model = resolution_matrix(arm) @ model
        flux[arm] = model
    return {
        "flux": flux,
        "line_flux": line_flux,
        "bulge_fraction": bulge_fraction,
        "disk_fraction": disk_fraction,
        "velocity_gas_kms": v_mean,
        "velocity_stars_kms": v_stars,
    }


# ------------------------------------------------------------------------------------------------
# Sky and noise
# ------------------------------------------------------------------------------------------------
def air_to_vacuum(wavelength_air: np.ndarray) -> np.ndarray:
    """Air to vacuum wavelengths, Angstrom (Morton 1991, ApJS 77, 119, eq. 3 inverted iteratively)."""
    wavelength_air = np.asarray(wavelength_air, dtype=np.float64)
    vac = wavelength_air.copy()
    for _ in range(3):
        s2 = (1e4 / vac) ** 2
        n = 1 + 6.4328e-5 + 2.94981e-2 / (146 - s2) + 2.5540e-4 / (41 - s2)
        vac = wavelength_air * n
    return vac


#: Night-sky emission lines (air Angstrom, Rayleigh): [OI] 5577, 6300, 6364 (Osterbrock et al. 1996, PASP 108, 277),
#: Na D and Hg street-lamp lines (Massey & Foltz 2000, PASP 112, 566), and strong OH Meinel lines used as sky
#: calibrators (PypeIt's flexure list: 6553.617, 6912.62, 7340.885, 7913.708, 7993.332, 8344.602, 8430.174,
#: 8827.096, 8919.610, 9439.660). Intensities are typical values, rounded.
SKY_LINES_AIR_RAYLEIGH = (
    (4046.56, 20.0),
    (4358.34, 40.0),
    (5460.74, 40.0),
    (5577.338, 250.0),
    (5889.95, 60.0),
    (5895.92, 50.0),
    (6300.304, 150.0),
    (6363.776, 50.0),
    (6553.617, 60.0),
    (6912.62, 120.0),
    (7340.885, 150.0),
    (7913.708, 200.0),
    (7993.332, 250.0),
    (8344.602, 350.0),
    (8430.174, 300.0),
    (8827.096, 400.0),
    (8919.610, 350.0),
    (9439.660, 500.0),
)
#: OH Meinel band regions (air A, total Rayleigh of the schematic forest in each): the strongest OH emission in the
#: optical/near-IR (Rousselot et al. 2000, A&A 354, 1134, Fig. 1). Individual line positions inside each band are a
#: fixed pseudo-random draw (seed 0) -- a schematic forest, not the real line list.
OH_BANDS_AIR_RAYLEIGH = (
    ((6250.0, 6400.0), 150.0),
    ((6470.0, 6600.0), 200.0),
    ((6830.0, 7000.0), 500.0),
    ((7240.0, 7420.0), 800.0),
    ((7750.0, 8050.0), 1400.0),
    ((8280.0, 8550.0), 1800.0),
    ((8760.0, 9050.0), 2200.0),
    ((9300.0, 9850.0), 3000.0),
)
#: Bright-time (moon up, the BGS program) sky continuum, AB mag per arcsec^2, linear in between. Dark Kitt Peak sky
#: is V ~ 21.9 (Neugent & Massey 2010, PASP 122, 1246); scattered moonlight brightens it by ~2 mag, most in the blue
#: (Krisciunas & Schaefer 1991, PASP 103, 1033).
SKY_CONTINUUM_AB_MAG = ((3600.0, 19.8), (4500.0, 19.7), (5500.0, 19.8), (6500.0, 19.9), (8000.0, 19.7), (9824.0, 19.3))
#: Length of one DESI exposure for the read-noise term, s (BGS main survey exposures are ~180-400 s).
DESI_EXPOSURE_S = 360.0
#: Effective DESI system throughput per arm (atmosphere, telescope, fiber, spectrograph, CCD; fiber-aperture losses of
#: the sky-dominated noise folded in), calibrated so that the noise model at the real coadd's effective exposure time
#: (EFFTIME_BGS = 0.14 x TSNR2_BGS = 3095 s, TSNR2 of ../shared/data/desi/redrock-4-80613-*.fits; desispec tsnr) and
#: the bright-time sky below reproduces its measured median per-pixel sigma in 80 A windows. Peak values ~0.3-0.7
#: are the same order as DESI's measured total throughput (DESI Collaboration 2022, AJ 164, 207).
DESI_THROUGHPUT = {
    "b": (
        (3640.0, 0.015),
        (3943.0, 0.097),
        (4246.0, 0.151),
        (4549.0, 0.188),
        (4851.0, 0.232),
        (5154.0, 0.248),
        (5457.0, 0.250),
        (5760.0, 0.069),
    ),
    "r": (
        (5800.0, 0.329),
        (6054.0, 0.372),
        (6309.0, 0.399),
        (6563.0, 0.449),
        (6817.0, 0.423),
        (7071.0, 0.463),
        (7326.0, 0.468),
        (7580.0, 0.203),
    ),
    "z": (
        (7560.0, 0.148),
        (7878.0, 0.481),
        (8195.0, 0.615),
        (8513.0, 0.761),
        (8831.0, 0.696),
        (9149.0, 0.697),
        (9466.0, 0.324),
        (9784.0, 0.316),
    ),
}


@functools.lru_cache(maxsize=1)
def sky_surface_brightness() -> dict[str, np.ndarray]:
    """Sky f_lambda per arcsec^2 on each arm grid, 1e-17 erg/s/cm2/A/arcsec2, at DESI resolution."""
    rng = np.random.default_rng(0)
    lines = [(air_to_vacuum(np.array([w]))[0], i) for w, i in SKY_LINES_AIR_RAYLEIGH]
    for (lo, hi), total in OH_BANDS_AIR_RAYLEIGH:
        n = 24
        positions = np.sort(rng.uniform(lo, hi, n))
        strengths = rng.lognormal(0.0, 0.8, n)
        strengths *= total / strengths.sum()
        lines += list(zip(air_to_vacuum(positions), strengths, strict=True))
    line_wave = np.array([w for w, _ in lines])
    rayleigh = np.array([i for _, i in lines])
    # 1 R = 1e6 / (4 pi) photons/s/cm2/sr; 1 sr = 4.2545e10 arcsec2
    photons = rayleigh * 1e6 / (4 * math.pi) / 4.2545e10
    line_flux = photons * C.HC_ERG_A / line_wave / C.FLUX_UNIT_ERG_S_CM2_A
    knots_w, knots_m = np.array(SKY_CONTINUUM_AB_MAG).T
    out = {}
    for arm, wavelength in arm_wavelengths().items():
        mag = np.interp(wavelength, knots_w, knots_m)
        continuum = ab_mag_to_f_nu(mag) * C.SPEED_OF_LIGHT_A_PER_S / wavelength**2 / C.FLUX_UNIT_ERG_S_CM2_A
        edges = pixel_edges(wavelength)
        sigma = desi_sigma_pix(arm, wavelength).mean() * C.DESI_WAVELENGTH_STEP_A
        sky_lines = gaussian_lines_on_grid(edges, line_wave, np.full(line_wave.size, sigma), line_flux)
        out[arm] = continuum + sky_lines
    return out


def counts_per_flux(wavelength: np.ndarray, exptime_s: float) -> np.ndarray:
    """Detected electrons per pixel per unit flux density (1e-17 erg/s/cm2/A) in ``exptime_s`` seconds.

    ``wavelength`` is one arm's grid (the arm is recognised from its first pixel).
    """
    arm = "b" if wavelength[0] < 5000 else ("r" if wavelength[0] < 7000 else "z")
    knots_w, knots_t = np.array(DESI_THROUGHPUT[arm]).T
    throughput = np.interp(wavelength, knots_w, knots_t)
    area_cm2 = C.DESI_COLLECTING_AREA_M2 * 1e4
    photon_energy = C.HC_ERG_A / wavelength
    return exptime_s * area_cm2 * throughput * C.DESI_WAVELENGTH_STEP_A * C.FLUX_UNIT_ERG_S_CM2_A / photon_energy


def noise_sigma(arm: str, model_flux: np.ndarray, exptime_s: float) -> np.ndarray:
    """Per-pixel noise sigma (1e-17 erg/s/cm2/A) of a DESI fiber spectrum.

    Variance in electrons = object + sky (sky surface brightness x fiber area) + read noise over an
    effective 4-pixel extraction width per exposure of ``DESI_EXPOSURE_S``; converted back to flux units.
    """
    if exptime_s <= 0:
        raise ValueError(f"exptime_s must be > 0, got {exptime_s}")
    wavelength = arm_wavelengths()[arm]
    gain = counts_per_flux(wavelength, exptime_s)
    fiber_area = math.pi * (C.DESI_FIBER_DIAMETER_ARCSEC / 2) ** 2
    n_exp = max(1, math.ceil(exptime_s / DESI_EXPOSURE_S))
    electrons_var = (
        gain * np.maximum(model_flux, 0.0)
        + gain * sky_surface_brightness()[arm] * fiber_area
        + n_exp * 4.0 * C.DESI_READ_NOISE_E**2
    )
    return np.sqrt(electrons_var) / gain


def observe(model: dict[str, np.ndarray], exptime_s: float, rng: np.random.Generator) -> dict:
    """Add noise to a noiseless fiber spectrum; the ivar written is exactly 1 / variance of the noise drawn.

    Returns
    -------
    dict arm -> (flux float32, ivar float32).
    """
    out = {}
    for arm in ARMS:
        sigma = noise_sigma(arm, model[arm], exptime_s)
        flux = model[arm] + sigma * rng.standard_normal(sigma.size)
        out[arm] = (flux.astype(np.float32), (1.0 / sigma**2).astype(np.float32))
    return out


# ------------------------------------------------------------------------------------------------
# Coadd and redrock contents, written through galspec_hf.io.desi (the DESI data model's one home)
# ------------------------------------------------------------------------------------------------
#: desitarget bits: DESI_TARGET BGS_ANY = 2**60, BGS_TARGET BGS_BRIGHT = 2**1 (desitarget data/targetmask.yaml).
DESI_TARGET_BGS_ANY = 1 << 60
BGS_TARGET_BGS_BRIGHT = 1 << 1


def fibermap_values(galaxies: list[Galaxy], photometry: list[dict], tileid: int) -> dict:
    """FIBERMAP column values for a list of galaxies.

    Parameters
    ----------
    photometry : per galaxy, dict with 'flux' and 'fiberflux' (band -> nanomaggies) and 'flux_ivar'.
    """
    n = len(galaxies)
    ra = np.array([g.target_ra_deg for g in galaxies])
    dec = np.array([g.target_dec_deg for g in galaxies])
    fiber_ra, fiber_dec = fiber_sky_position(
        ra, dec, [g.fiber_east_arcsec for g in galaxies], [g.fiber_north_arcsec for g in galaxies]
    )
    fiber = np.arange(n, dtype=np.int32)
    values = {
        "TARGETID": np.array([g.targetid for g in galaxies], dtype=np.int64),
        "PETAL_LOC": fiber // 500,
        "DEVICE_LOC": fiber % 500,
        "LOCATION": (fiber // 500) * 1000 + fiber % 500,
        "FIBER": fiber,
        "COADD_FIBERSTATUS": np.zeros(n, np.int32),
        "TARGET_RA": ra,
        "TARGET_DEC": dec,
        "REF_EPOCH": np.full(n, 2015.5),
        "LAMBDA_REF": np.full(n, 5400.0),
        "FA_TYPE": np.ones(n, np.uint8),
        "OBJTYPE": np.array(["TGT"] * n),
        "PRIORITY": np.full(n, 2100),
        "OBSCONDITIONS": np.full(n, 4),  # BRIGHT
        "RELEASE": np.full(n, 9010),
        "MORPHTYPE": np.array(["SER"] * n),
        "PHOTSYS": np.array(["S"] * n),
        "DESI_TARGET": np.full(n, DESI_TARGET_BGS_ANY),
        "BGS_TARGET": np.full(n, BGS_TARGET_BGS_BRIGHT),
        "PLATE_RA": ra,
        "PLATE_DEC": dec,
        "TILEID": np.full(n, tileid),
        "COADD_NUMEXP": np.array([max(1, math.ceil(g.exptime_s / DESI_EXPOSURE_S)) for g in galaxies]),
        "COADD_EXPTIME": np.array([g.exptime_s for g in galaxies]),
        "COADD_NUMNIGHT": np.ones(n),
        "COADD_NUMTILE": np.ones(n),
        "MEAN_FIBER_RA": fiber_ra,
        "MEAN_FIBER_DEC": fiber_dec,
        "MEAN_PSF_TO_FIBER_SPECFLUX": psf_to_fiber_factors(galaxies),
        "SERSIC": np.array([g.bulge_sersic_n if g.bulge_light_fraction > 0.5 else 1.0 for g in galaxies]),
        "SHAPE_R": np.array([shape_r_arcsec(g) for g in galaxies]),
        "NUMOBS_INIT": np.ones(n),
        "PRIORITY_INIT": np.full(n, 2100),
    }
    for band in C.LEGACY_BANDS:
        values[f"FLUX_{band.upper()}"] = np.array([p["flux"][band] for p in photometry])
        values[f"FLUX_IVAR_{band.upper()}"] = np.array([p["flux_ivar"][band] for p in photometry])
        values[f"FIBERFLUX_{band.upper()}"] = np.array([p["fiberflux"][band] for p in photometry])
        values[f"FIBERTOTFLUX_{band.upper()}"] = np.array([p["fiberflux"][band] for p in photometry])
    return values


def _psf_to_fiber(seeing_fwhm_arcsec: float, offset_arcsec: float = 0.0) -> float:
    """Fraction of a point source's light that enters a DESI fiber centred ``offset_arcsec`` from it.

    The same kernel K(d) (:func:`fiber_kernel_table`, seeing rounded to 0.02 arcsec as in
    :func:`fiber_weights`) that puts galaxy light into the simulated fiber, evaluated at the fiber's
    offset from its target: the fraction by which DESI's point-source flux calibration divides.
    """
    distance, fraction = fiber_kernel_table(round(float(seeing_fwhm_arcsec) / 0.02) * 0.02)
    return float(np.interp(float(offset_arcsec), distance, fraction, right=0.0))


def shape_r_arcsec(galaxy: Galaxy) -> float:
    """Catalogue half-light radius written to FIBERMAP ``SHAPE_R``, arcsec: the circular radius enclosing half of
    the bulge (Sersic) + disk (exponential) light, L(<r) = B/T P(2n, b_n (r/r_b)^(1/n)) + (1 - B/T) P(2, r/h),
    P the regularised lower incomplete gamma function (Graham & Driver 2005, PASA 22, 118, eq. 2)."""
    from scipy.optimize import brentq  # noqa: PLC0415
    from scipy.special import gammainc  # noqa: PLC0415

    from .galaxy import sersic_bn  # noqa: PLC0415

    bt, n = float(galaxy.bulge_light_fraction), float(galaxy.bulge_sersic_n)
    re_b, h = max(galaxy.bulge_re_arcsec, 1e-4), max(galaxy.disk_scale_arcsec, 1e-4)
    b_n = sersic_bn(n)

    def excess(r: float) -> float:
        return bt * gammainc(2 * n, b_n * (r / re_b) ** (1 / n)) + (1 - bt) * gammainc(2.0, r / h) - 0.5

    lo, hi = min(re_b, galaxy.disk_re_arcsec) * 1e-3, max(re_b, galaxy.disk_re_arcsec) * 10
    return float(brentq(excess, lo, hi, xtol=1e-4))


def point_source_fractions(galaxies: list[Galaxy]) -> np.ndarray:
    """Point-source fraction of each galaxy's fiber in its exposure's seeing and at its offset, shape (N,).

    DESI's flux calibration (standard stars) makes spectra calibrated for point sources: the file's flux is the
    flux that entered the fiber divided by this fraction. The target is the origin of the galaxy frame, so the
    fiber's offset from its target is hypot(fiber_east_arcsec, fiber_north_arcsec).
    """
    return np.array(
        [
            _psf_to_fiber(g.fiber_seeing_fwhm_arcsec, math.hypot(g.fiber_east_arcsec, g.fiber_north_arcsec))
            for g in galaxies
        ]
    )


def psf_to_fiber_factors(galaxies: list[Galaxy]) -> np.ndarray:
    """``MEAN_PSF_TO_FIBER_SPECFLUX`` of each galaxy's fiber, shape (N,), float64, as desispec computes it.

    desispec.fiberfluxcorr.psf_to_fiber_flux_correction: the factor that turns the point-source-calibrated
    spectrum into the flux of the nominal fiber of the Legacy Surveys FIBERFLUX (1.5 arcsec, 1 arcsec FWHM
    Gaussian seeing, no offset), for an exponential disk of half-light radius SHAPE_R (saturated at 2 arcsec):

        factor = f_psf(seeing, offset) x f_disk(1", 0) x (0.789 / f_psf(1", 0)) / f_disk(seeing, offset)

    with the fiber acceptances f of the simulated DESI PSF (:func:`exponential_disk_fiber_fraction`); the
    point-source value is 0.789 whatever the seeing and offset.
    """
    nominal_psf = _psf_to_fiber(C.LEGACY_FIBERFLUX_SEEING_FWHM_ARCSEC)
    scale = C.DESISPEC_NOMINAL_POINT_FIBER_FRACTION / nominal_psf
    factors = []
    for galaxy, current_psf in zip(galaxies, point_source_fractions(galaxies), strict=True):
        offset = math.hypot(galaxy.fiber_east_arcsec, galaxy.fiber_north_arcsec)
        re = min(shape_r_arcsec(galaxy), C.DESISPEC_MAX_HALF_LIGHT_RADIUS_ARCSEC)
        current = exponential_disk_fiber_fraction(re, galaxy.fiber_seeing_fwhm_arcsec, offset)
        nominal = exponential_disk_fiber_fraction(re, C.LEGACY_FIBERFLUX_SEEING_FWHM_ARCSEC) * scale
        factors.append(current_psf * nominal / current if current > 0 else float("nan"))
    return np.array(factors)


def write_coadd(
    path: str | Path,
    galaxies: list[Galaxy],
    photometry: list[dict],
    observed: list[dict],
    tileid: int,
    fibermap: dict | None = None,
):
    """Write a DESI coadd file for many targets.

    Like DESI, the spectra written are calibrated for point sources: the flux that entered the
    fiber divided by the point-source fiber fraction in the exposure's seeing and at the fiber's
    offset (:func:`point_source_fractions`), and the inverse variance times its square. The
    FIBERMAP column ``MEAN_PSF_TO_FIBER_SPECFLUX`` is desispec's factor (:func:`psf_to_fiber_factors`):
    file flux x MEAN_PSF_TO_FIBER_SPECFLUX is the flux of the nominal fiber of the Legacy Surveys
    FIBERFLUX (1.5 arcsec in 1 arcsec Gaussian seeing), exactly for point sources and through
    desispec's exponential-disk model of SHAPE_R for galaxies.

    Parameters
    ----------
    observed : per galaxy, dict arm -> (flux, ivar) from :func:`observe`: the flux in the fiber,
        1e-17 erg/s/cm2/A, and its inverse variance.
    fibermap : :func:`fibermap_values` of these arguments if the caller has it already (computed when None).
    """
    from ..io.desi import write_desi_coadd  # noqa: PLC0415 (astropy: only when writing)

    n = len(galaxies)
    if n == 0 or len(photometry) != n or len(observed) != n:
        raise ValueError("galaxies, photometry and observed must be non-empty lists of the same length")
    factor = point_source_fractions(galaxies)  # (N,)
    if not np.all(np.isfinite(factor) & (factor > 0)):
        raise ValueError(f"galaxies: point-source fiber fraction must be finite and > 0, got {factor}")
    # point-source calibration, as DESI writes it: flux / point-source fraction, ivar * fraction^2
    observed = [
        {arm: (o[arm][0] / np.float32(f), o[arm][1] * np.float32(f) ** 2) for arm in ARMS}
        for o, f in zip(observed, factor, strict=True)
    ]
    header = {"SPGRP": "cumulative", "TILEID": tileid, "SURVEY": "main", "PROGRAM": "bright"}
    header["SYNTHETC"] = (True, "galspec-hf simulated survey")
    fibermap = fibermap_values(galaxies, photometry, tileid) if fibermap is None else fibermap
    exp_fibermap = {
        "TARGETID": np.array([g.targetid for g in galaxies]),
        "TILEID": np.full(n, tileid),
        "EXPTIME": np.array([g.exptime_s for g in galaxies]),
        "FIBER": np.arange(n),
        "FIBER_RA": fibermap["MEAN_FIBER_RA"],
        "FIBER_DEC": fibermap["MEAN_FIBER_DEC"],
    }
    arms = {
        arm: {
            "wavelength": arm_wavelengths()[arm],
            "flux": np.stack([o[arm][0] for o in observed]),
            "ivar": np.stack([o[arm][1] for o in observed]),
            "resolution": np.broadcast_to(resolution_data(arm), (n,) + resolution_data(arm).shape),
        }
        for arm in ARMS
    }
    scores = {"TARGETID": np.array([g.targetid for g in galaxies])}
    for arm in ARMS:
        scores[f"MEDIAN_COADD_FLUX_{arm.upper()}"] = np.array([float(np.median(o[arm][0])) for o in observed])
        snr = [float(np.median(o[arm][0] * np.sqrt(o[arm][1]))) for o in observed]
        scores[f"MEDIAN_COADD_SNR_{arm.upper()}"] = np.array(snr)
    return write_desi_coadd(
        path, arms, header=header, fibermap=fibermap, exp_fibermap=exp_fibermap, scores=scores, all_columns=True
    )


def write_redrock(path: str | Path, galaxies: list[Galaxy], photometry: list[dict], observed: list[dict], tileid: int,
                  rng: np.random.Generator, fibermap: dict | None = None):  # fmt: skip
    """Write a redrock-format catalogue: REDSHIFTS (true z plus a redrock-like error), FIBERMAP, EXP_FIBERMAP, TSNR2.

    No redshift fitting is run: Z is the true redshift perturbed by ZERR, ZERR = 1e-5 (1 + z)
    (DESI BGS redshift precision ~ 10 km/s; Lan et al. 2023, ApJ 943, 68), ZWARN = 0. ``fibermap`` as in
    :func:`write_coadd`.
    """
    from ..io.desi import write_redrock as write_redrock_file  # noqa: PLC0415 (astropy: only when writing)

    n = len(galaxies)
    if n == 0:
        raise ValueError("galaxies must be non-empty")
    z = np.array([g.redshift for g in galaxies])
    zerr = 1e-5 * (1 + z)
    npix = np.array([sum(int((o[arm][1] > 0).sum()) for arm in ARMS) for o in observed])
    chi2_min = npix * (1 + 0.05 * rng.standard_normal(n))
    snr2 = np.array([sum(float(((o[arm][0] ** 2) * o[arm][1]).sum()) for arm in ARMS) for o in observed])
    values = {
        "TARGETID": np.array([g.targetid for g in galaxies]),
        "Z": z + zerr * rng.standard_normal(n),
        "ZERR": zerr,
        "ZWARN": np.zeros(n, np.int64),
        "CHI2": chi2_min,
        "NPIXELS": npix,
        "SPECTYPE": np.array(["GALAXY"] * n),
        "SUBTYPE": np.array([""] * n),
        "NCOEFF": np.full(n, 10),
        "DELTACHI2": np.maximum(snr2 * 0.05, 26.0),
    }
    header = {"SPGRP": "cumulative", "TILEID": tileid}
    header["SYNTHETC"] = (True, "galspec-hf simulation: Z = true z + ZERR noise")
    return write_redrock_file(
        path,
        values,
        header=header,
        fibermap=fibermap_values(galaxies, photometry, tileid) if fibermap is None else fibermap,
        exp_fibermap={
            "TARGETID": values["TARGETID"],
            "TILEID": np.full(n, tileid),
            "EXPTIME": [g.exptime_s for g in galaxies],
        },
        tsnr2={"TARGETID": values["TARGETID"]},
        all_columns=True,
    )
