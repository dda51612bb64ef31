"""Galaxies: structure (Sersic bulge + exponential disk), stellar populations, dust, emission lines,
kinematics, and their parameter distributions.

Every galaxy is described by a :class:`Galaxy` (its true parameters, all written to the truth
table) and rendered onto any grid of sky offsets by :func:`render_maps`. Conventions: sky offsets
are tangent-plane arcsec east (+RA) and north (+Dec) of the *target* (the cutout centre and the
nominal fiber position); position angles are measured east of north; wavelengths are vacuum
Angstrom; line fluxes are 1e-17 erg/s/cm2 (observed, after dust).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import numpy as np
from scipy.special import gamma as gamma_function

from .. import constants as C
from ..spectral import f_nu_to_nanomaggies
from .dust import calzetti_k, calzetti_transmission
from .templates import TemplateSet

#: Emission lines simulated, keyed as in constants.EMISSION_LINES_VACUUM_A.
LINE_NAMES = C.MODELLED_EMISSION_LINES
LINE_WAVELENGTHS_REST_A = np.array([C.EMISSION_LINES_VACUUM_A[name] for name in LINE_NAMES])


@dataclass
class Galaxy:
    """True parameters of one simulated galaxy and its target (all written to the truth table).

    Lengths on the sky in arcsec, angles in degrees, velocities in km/s, fluxes in 1e-17 erg/s/cm2
    (lines) or 1e-17 erg/s/cm2/A (continuum normalisations, observed frame).
    """

    targetid: int
    target_ra_deg: float
    target_dec_deg: float
    redshift: float
    luminosity_distance_mpc: float
    arcsec_per_kpc: float
    absmag_r: float
    log_mstar: float
    log_sfr: float
    star_forming: bool
    bulge_light_fraction: float  # intrinsic light fraction of the bulge at rest 5500 A
    bulge_sersic_n: float
    bulge_re_arcsec: float
    bulge_axis_ratio: float
    disk_scale_arcsec: float
    disk_re_arcsec: float
    inclination_deg: float
    disk_axis_ratio: float
    position_angle_deg: float  # east of north, major axis (receding side at +major axis)
    centre_east_arcsec: float  # galaxy centre relative to the target
    centre_north_arcsec: float
    offcentre_target: bool
    young_light_fraction: float  # of the disk at rest 5500 A
    ebv_bulge: float
    ebv_disk: float
    ebv_gas: float
    halpha_flux_sf_intrinsic: float  # total, before dust
    oxygen_central: float  # 12 + log(O/H)
    oxygen_gradient_dex_per_re: float
    agn: bool
    agn_halpha_flux: float  # observed (after dust)
    agn_sigma_kms: float
    vmax_kms: float
    rotation_turnover_arcsec: float
    sigma_gas_kms: float
    sigma_bulge_kms: float
    sigma_disk_kms: float
    continuum_scale: float  # A of the rest SED: observed f_lambda = continuum_scale * SED(lambda/(1+z))
    psf_fwhm_g_arcsec: float
    psf_fwhm_r_arcsec: float
    psf_fwhm_z_arcsec: float
    fiber_seeing_fwhm_arcsec: float
    fiber_east_arcsec: float  # fiber centre relative to the target
    fiber_north_arcsec: float
    exptime_s: float
    # resolved star formation and ionisation (defaults: a smooth disk with no clumps, arms, LIER or dust gradient)
    halpha_size_ratio: float = 1.0  # H-alpha / stellar disk scale length (inside-out star formation)
    clump_halpha_fraction: float = 0.0  # of the star-forming H-alpha, emitted by HII-region complexes
    clump_number: int = 0
    clump_sigma_kpc: float = 0.5
    clump_seed: int = 0  # seeds the clump positions (a galaxy renders the same clumps on every grid)
    spiral_arms: int = 2
    spiral_pitch_deg: float = 20.0
    spiral_amplitude: float = 0.0  # H-alpha modulation 1 + A cos(m (theta - ln(r / h) / tan(pitch)) - phase)
    spiral_phase_rad: float = 0.0
    lier_halpha_flux_bulge: float = 0.0  # observed LIER/DIG H-alpha of the whole bulge (follows the bulge light)
    lier_halpha_flux_disk: float = 0.0  # observed LIER/DIG H-alpha of the whole disk (follows the old disk light)
    lier_nii_halpha: float = 1.5  # [NII]6584 / H-alpha of the LIER gas
    dust_gradient_dex_per_re: float = 0.0  # E(B-V)_gas(r) = ebv_gas 10**(-g (r/re - 1)), capped at 3 ebv_gas
    # Legacy imaging depth: exposures in the g, r, z coadds (default: the reference depth of the measured noise)
    image_exposures_g: int = C.LEGACY_REFERENCE_EXPOSURES
    image_exposures_r: int = C.LEGACY_REFERENCE_EXPOSURES
    image_exposures_z: int = C.LEGACY_REFERENCE_EXPOSURES

    def to_dict(self) -> dict:
        """Every field by name (all are scalars, so a shallow copy equals dataclasses.asdict, ~20x faster)."""
        return {name: getattr(self, name) for name in _GALAXY_FIELDS}


_GALAXY_FIELDS = tuple(field.name for field in fields(Galaxy))


# ------------------------------------------------------------------------------------------------
# Cosmology tables (Planck 2018, astropy.cosmology.Planck18)
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _cosmology_table() -> dict[str, np.ndarray]:
    from astropy.cosmology import Planck18  # noqa: PLC0415

    z = np.linspace(0.001, 0.7, 700)
    return {
        "z": z,
        "dl_mpc": Planck18.luminosity_distance(z).value,
        "da_mpc": Planck18.angular_diameter_distance(z).value,
        "dvdz": Planck18.differential_comoving_volume(z).value,
        "age_gyr": Planck18.age(z).value,
    }


def cosmology(z: np.ndarray) -> dict[str, np.ndarray]:
    """Luminosity distance (Mpc), arcsec per kpc and cosmic age (Gyr) at redshift ``z`` (Planck18, interpolated)."""
    z = np.asarray(z, dtype=np.float64)
    if np.any(z <= 0) or np.any(z > 0.7):
        raise ValueError("z must be in (0, 0.7]")
    table = _cosmology_table()
    da = np.interp(z, table["z"], table["da_mpc"])
    return {
        "dl_mpc": np.interp(z, table["z"], table["dl_mpc"]),
        "arcsec_per_kpc": 206264.806 / (da * 1e3),
        "age_gyr": np.interp(z, table["z"], table["age_gyr"]),
    }


# ------------------------------------------------------------------------------------------------
# Photometry helpers
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def decam_filters() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """DECam g, r, z response curves from speclite: band -> (wavelength_A, response)."""
    import speclite.filters  # noqa: PLC0415

    out = {}
    for band in C.LEGACY_BANDS:
        response = speclite.filters.load_filter(C.LEGACY_SPECLITE_FILTERS[band])
        out[band] = (np.asarray(response.wavelength, dtype=np.float64), np.asarray(response.response, np.float64))
    return out


def ab_nanomaggies(wavelength: np.ndarray, flux_lambda: np.ndarray, band: str) -> np.ndarray:
    """Broadband flux in nanomaggies of a spectrum through a DECam band.

    Parameters
    ----------
    wavelength : (N,) observed-frame Angstrom.
    flux_lambda : (..., N) flux density in erg/s/cm2/A (not 1e-17 units).
    band : 'g', 'r' or 'z'.

    Returns
    -------
    (...,) nanomaggies (1 nmgy = AB 22.5).
    """
    if band not in C.LEGACY_BANDS:
        raise ValueError(f"band must be one of {C.LEGACY_BANDS}, got {band!r}")
    integrator = _band_integrator(wavelength, band)
    return _integrate_band(flux_lambda[..., integrator[0] : integrator[1]], integrator)


def _band_integrator(wavelength: np.ndarray, band: str) -> tuple:
    """What :func:`ab_nanomaggies` needs of a wavelength grid: (lo, hi, wavelength[lo:hi], response, denominator);
    only the samples under the filter (plus one on each side) contribute."""
    filter_wave, filter_resp = decam_filters()[band]
    lo = max(int(np.searchsorted(wavelength, filter_wave[0])) - 1, 0)
    hi = int(np.searchsorted(wavelength, filter_wave[-1])) + 1
    wavelength = wavelength[lo:hi]
    response = np.interp(wavelength, filter_wave, filter_resp, left=0.0, right=0.0)
    denominator = np.trapezoid(response * C.SPEED_OF_LIGHT_A_PER_S / wavelength, wavelength)
    return lo, hi, wavelength, response, denominator


def _integrate_band(flux_lambda: np.ndarray, integrator: tuple) -> np.ndarray:
    """Nanomaggies of ``flux_lambda`` (..., hi - lo), erg/s/cm2/A on the samples of ``integrator``
    (:func:`_band_integrator`)."""
    _, _, wavelength, response, denominator = integrator
    numerator = np.trapezoid(flux_lambda * response * wavelength, wavelength, axis=-1)
    return f_nu_to_nanomaggies(numerator / denominator)


#: Template-grid band integrators kept per TemplateSet (one per redshift and band; galaxies come one at a time).
_BAND_CACHE_SIZE = 12


def template_band_integrator(templates: TemplateSet, redshift: float, band: str) -> tuple:
    """:func:`_band_integrator` of ``templates.wavelength_rest * (1 + redshift)`` (the observed template grid),
    cached on the template set for the last few (redshift, band) pairs."""
    if band not in C.LEGACY_BANDS:
        raise ValueError(f"band must be one of {C.LEGACY_BANDS}, got {band!r}")
    cache = templates._cache.setdefault("band_integrators", {})
    key = (float(redshift), band)
    if key not in cache:
        if len(cache) >= _BAND_CACHE_SIZE:
            del cache[next(iter(cache))]
        cache[key] = _band_integrator(templates.wavelength_rest * (1 + redshift), band)
    return cache[key]


def template_band_nanomaggies(
    templates: TemplateSet, flux_rest: np.ndarray, redshift: float, scale: float, band: str
) -> float:
    """Nanomaggies through ``band`` of a rest-frame SED on ``templates.wavelength_rest`` (1e-17 units times
    ``scale``, as :attr:`Galaxy.continuum_scale`) observed at ``redshift``: the same number as
    ``ab_nanomaggies(*observed_frame(wavelength_rest, flux_rest, redshift, scale) x 1e-17, band)``, computed on the
    samples under the filter only."""
    integrator = template_band_integrator(templates, redshift, band)
    flux_obs = flux_rest[..., integrator[0] : integrator[1]] * scale / (1 + redshift)
    return float(_integrate_band(flux_obs * C.FLUX_UNIT_ERG_S_CM2_A, integrator))


def line_nanomaggies(wavelength_obs: np.ndarray, line_flux_cgs: np.ndarray, band: str) -> np.ndarray:
    """Broadband flux (nanomaggies) of emission lines of integrated flux ``line_flux_cgs`` (erg/s/cm2).

    Parameters
    ----------
    wavelength_obs : (L,) observed-frame Angstrom. line_flux_cgs : (..., L).
    """
    filter_wave, filter_resp = decam_filters()[band]
    response = np.interp(wavelength_obs, filter_wave, filter_resp, left=0.0, right=0.0)
    return f_nu_to_nanomaggies((line_flux_cgs * response * wavelength_obs).sum(axis=-1) / _line_denominator(band))


def line_nanomaggies_each(wavelength_obs: np.ndarray, line_flux_cgs: float, band: str) -> np.ndarray:
    """(L,) nanomaggies of each line of ``wavelength_obs`` (observed A) alone, of integrated flux ``line_flux_cgs``
    (erg/s/cm2): ``line_nanomaggies(wavelength_obs[i:i+1], [line_flux_cgs], band)`` for every i at once."""
    filter_wave, filter_resp = decam_filters()[band]
    response = np.interp(wavelength_obs, filter_wave, filter_resp, left=0.0, right=0.0)
    return f_nu_to_nanomaggies(line_flux_cgs * response * wavelength_obs / _line_denominator(band))


@functools.lru_cache(maxsize=8)
def _line_denominator(band: str) -> float:
    filter_wave, filter_resp = decam_filters()[band]
    return np.trapezoid(filter_resp * C.SPEED_OF_LIGHT_A_PER_S / filter_wave, filter_wave)


# ------------------------------------------------------------------------------------------------
# Component spectra
# ------------------------------------------------------------------------------------------------
#: Component spectra kept per TemplateSet (a galaxy asks for the same ones several times).
_SPECTRA_CACHE_SIZE = 4


def component_spectra_rest(templates: TemplateSet, galaxy: Galaxy, broaden: bool = True) -> dict[str, np.ndarray]:
    """Rest-frame bulge and disk continua (dust-attenuated), in units of ``continuum_scale``.

    The last few results are cached on ``templates`` (keyed by the parameters they depend on) and returned
    read-only.

    Returns
    -------
    dict with 'bulge' and 'disk': (N,) arrays on ``templates.wavelength_rest``; the total rest SED is their sum.
    """
    fb = galaxy.bulge_light_fraction
    fy = galaxy.young_light_fraction
    sigmas = (float(galaxy.sigma_bulge_kms), float(galaxy.sigma_disk_kms)) if broaden else None
    key = (sigmas, float(fb), float(fy), float(galaxy.ebv_bulge), float(galaxy.ebv_disk))
    cache = templates._cache.setdefault("component_spectra", {})
    if key in cache:
        return dict(cache[key])
    old_b = templates.broadened("old", galaxy.sigma_bulge_kms) if broaden else templates.old
    old_d = templates.broadened("old", galaxy.sigma_disk_kms) if broaden else templates.old
    young_d = templates.broadened("young", galaxy.sigma_disk_kms) if broaden else templates.young
    if "calzetti_k" not in templates._cache:
        templates._cache["calzetti_k"] = calzetti_k(templates.wavelength_rest)
    k = templates._cache["calzetti_k"]
    bulge = fb * old_b * _stellar_dust(templates, k, galaxy.ebv_bulge)
    disk = (1 - fb) * ((1 - fy) * old_d + fy * young_d) * _stellar_dust(templates, k, galaxy.ebv_disk)
    bulge.setflags(write=False)
    disk.setflags(write=False)
    if len(cache) >= _SPECTRA_CACHE_SIZE:
        del cache[next(iter(cache))]
    cache[key] = {"bulge": bulge, "disk": disk}
    return dict(cache[key])


def _stellar_dust(templates: TemplateSet, k: np.ndarray, ebv: float) -> np.ndarray:
    """10**(-0.4 k E(B-V)) on the template grid, cached for the last few E(B-V).

    Evaluated as exp(-0.4 ln(10) E(B-V) k): 6x faster than the power on the 25,000-pixel grid, equal to it to a
    few 1e-16 (relative)."""
    cache = templates._cache.setdefault("stellar_dust", {})
    ebv = float(ebv)
    if ebv not in cache:
        if len(cache) >= 2 * _SPECTRA_CACHE_SIZE:
            del cache[next(iter(cache))]
        cache[ebv] = np.exp(k * (-0.4 * math.log(10.0) * ebv))
    return cache[ebv]


def observed_frame(wavelength_rest: np.ndarray, flux_rest: np.ndarray, z: float, scale: float) -> tuple:
    """Redshift a rest-frame SED: lambda_obs = (1+z) lambda_rest, f_obs = scale * f_rest / (1+z)."""
    return wavelength_rest * (1 + z), flux_rest * scale / (1 + z)


# ------------------------------------------------------------------------------------------------
# Emission-line physics
# ------------------------------------------------------------------------------------------------
def star_forming_line_ratios(oxygen: np.ndarray, line_axis: int = -1) -> np.ndarray:
    """Intrinsic (dust-free) line fluxes relative to H-alpha of HII regions with abundance ``oxygen``.

    Parameters
    ----------
    oxygen : (...,) 12 + log(O/H) on the PP04 scale.

    Returns
    -------
    (..., len(LINE_NAMES)) ratios to H-alpha, ordered as ``LINE_NAMES`` (along ``line_axis``: 0 gives
    (len(LINE_NAMES), ...), the same numbers). Sources: Case B Ha/Hb
    (Osterbrock & Ferland 2006), PP04 N2 and O3N2, Dopita et al. (2016) N2S2, Maiolino et al. (2008) R2,
    Storey & Zeippen (2000) doublets, low-density [OII] and [SII] ratios.
    """
    oxygen = np.asarray(oxygen, dtype=np.float64)
    n2 = np.clip((oxygen - C.PP04_N2_INTERCEPT) / C.PP04_N2_SLOPE, -2.5, -0.2)
    o3n2 = (oxygen - C.PP04_O3N2_INTERCEPT) / C.PP04_O3N2_SLOPE
    hbeta = 1.0 / C.CASE_B_HALPHA_HBETA
    nii_6585 = 10**n2
    oiii_5008 = hbeta * 10 ** np.clip(o3n2 + n2, -1.5, 1.0)
    log_nii_sii = oxygen - C.DOPITA16_INTERCEPT - C.DOPITA16_N2_COEFF * n2
    sii_total = nii_6585 / 10**log_nii_sii
    x = oxygen - C.SOLAR_OXYGEN_ABUNDANCE
    log_r2 = np.polyval(C.MAIOLINO08_R2_COEFFS[::-1], x)
    oii_total = hbeta * 10**log_r2
    return _assemble_ratios(hbeta, oii_total, oiii_5008, nii_6585, sii_total, line_axis)


_OXYGEN_TABLE = np.linspace(C.PP04_N2_OXYGEN_RANGE[0], C.PP04_N2_OXYGEN_RANGE[1], 341)


@functools.lru_cache(maxsize=1)
def _ratio_table() -> np.ndarray:
    return star_forming_line_ratios(_OXYGEN_TABLE)


def star_forming_line_ratios_fast(oxygen: np.ndarray) -> np.ndarray:
    """:func:`star_forming_line_ratios` by linear interpolation in a 0.0025-dex table; returns (L, ...)."""
    table = _ratio_table()
    position = np.clip(
        (oxygen - C.PP04_N2_OXYGEN_RANGE[0]) / (_OXYGEN_TABLE[1] - _OXYGEN_TABLE[0]), 0, _OXYGEN_TABLE.size - 1
    )
    low = np.minimum(position.astype(np.int64), _OXYGEN_TABLE.size - 2)
    frac = position - low
    return table[low].T * (1 - frac)[None] + table[low + 1].T * frac[None]


def agn_line_ratios() -> np.ndarray:
    """Line fluxes relative to H-alpha of a Seyfert-like narrow-line region (Kewley et al. 2006 locus)."""
    hbeta = 1.0 / C.CASE_B_HALPHA_HBETA
    return _assemble_ratios(
        hbeta,
        hbeta * 10**C.AGN_LOG_OII_HBETA,
        hbeta * 10**C.AGN_LOG_OIII_HBETA,
        np.asarray(10**C.AGN_LOG_NII_HALPHA),
        np.asarray(10**C.AGN_LOG_SII_HALPHA),
    )


def _assemble_ratios(hbeta, oii_total, oiii_5008, nii_6585, sii_total, line_axis: int = -1) -> np.ndarray:
    shape = np.broadcast(hbeta, oii_total, oiii_5008, nii_6585, sii_total).shape
    r_oii = C.OII_DOUBLET_RATIO_LOW_DENSITY  # 3729/3726
    r_sii = C.SII_DOUBLET_RATIO_LOW_DENSITY  # 6716/6731
    columns = {
        "OII_3727": oii_total / (1 + r_oii),
        "OII_3730": oii_total * r_oii / (1 + r_oii),
        "Hbeta": hbeta,
        "OIII_4960": oiii_5008 / C.OIII_DOUBLET_RATIO,
        "OIII_5008": oiii_5008,
        "NII_6550": nii_6585 / C.NII_DOUBLET_RATIO,
        "Halpha": 1.0,
        "NII_6585": nii_6585,
        "SII_6718": sii_total * r_sii / (1 + r_sii),
        "SII_6733": sii_total / (1 + r_sii),
    }
    columns = [np.broadcast_to(np.asarray(columns[name], dtype=np.float64), shape) for name in LINE_NAMES]
    return np.stack(columns, line_axis)


def lier_line_ratios(nii_halpha: float) -> np.ndarray:
    """Line fluxes relative to H-alpha of LIER-like diffuse gas ionised by old stars (constants.LIER_*), with
    [NII]6584 / H-alpha = ``nii_halpha``; ordered as LINE_NAMES."""
    hbeta = 1.0 / C.CASE_B_HALPHA_HBETA
    return _assemble_ratios(
        hbeta,
        hbeta * 10**C.LIER_LOG_OII_HBETA,
        hbeta * 10**C.LIER_LOG_OIII_HBETA,
        nii_halpha,
        10**C.LIER_LOG_SII_HALPHA,
    )


def gas_ebv_at_radius(galaxy: Galaxy, radius_re: np.ndarray) -> np.ndarray:
    """Gas colour excess at deprojected radius ``radius_re`` (units of the disk r_e), constants.DUST_GRADIENT_*."""
    factor = np.minimum(10.0 ** (-galaxy.dust_gradient_dex_per_re * (np.asarray(radius_re) - 1.0)), 3.0)
    return galaxy.ebv_gas * factor


def clump_positions(galaxy: Galaxy) -> dict[str, np.ndarray]:
    """HII-region complexes of ``galaxy`` in its disk plane, drawn from ``galaxy.clump_seed``.

    Radii follow the H-alpha exponential disk (Gamma(2) in r / h_Ha); azimuths lie on the spiral arms with a
    Gaussian scatter of constants.CLUMP_ARM_SCATTER_RAD. Returns dict with 'x', 'y' ((N,) arcsec along the major axis
    and along the minor axis deprojected, galaxy plane), 'radius' ((N,) arcsec), 'weight' ((N,) summing to 1).
    """
    n = int(galaxy.clump_number)
    rng = np.random.default_rng([int(galaxy.clump_seed), 7])
    h_ha = galaxy.disk_scale_arcsec * galaxy.halpha_size_ratio
    radius = rng.gamma(2.0, h_ha, n)
    arm = rng.integers(0, max(galaxy.spiral_arms, 1), n)
    theta = (
        (
            galaxy.spiral_phase_rad
            + np.log(np.maximum(radius, 1e-3 * h_ha) / h_ha) / math.tan(math.radians(galaxy.spiral_pitch_deg))
        )
        + 2 * math.pi * arm / max(galaxy.spiral_arms, 1)
        + rng.normal(0.0, C.CLUMP_ARM_SCATTER_RAD, n)
    )
    weight = rng.lognormal(0.0, 0.7, n)  # HII-region luminosity function: a few bright complexes dominate
    weight = weight / weight.sum() if n else weight
    return {"x": radius * np.cos(theta), "y": radius * np.sin(theta), "radius": radius, "weight": weight}


def _spiral_wave(
    galaxy: Galaxy, major: np.ndarray, minor_deprojected: np.ndarray, h: float, radius: np.ndarray | None = None
) -> np.ndarray:
    """The spiral modulation of the star formation minus 1: A cos(m (theta - ln(r/h) / tan p) - m phase) times a
    taper to 0 inside ~h; the modulation 1 + this has an azimuthal mean of 1.

    ``radius`` : hypot(major, minor_deprojected) if the caller has it already (same shape), else computed.
    The phase is computed in float64 and reduced to [-pi, pi] there; only the cosine is evaluated in float32
    (numpy's float64 cosine is ~20x slower): the modulation is within 1e-6 of the float64 one."""
    if radius is None:
        radius = np.hypot(major, minor_deprojected)
    theta = np.arctan2(minor_deprojected, major)
    m = max(int(galaxy.spiral_arms), 1)
    arg = m * (theta - galaxy.spiral_phase_rad - np.log(np.maximum(radius, 1e-6) / h)
               / math.tan(math.radians(galaxy.spiral_pitch_deg)))  # fmt: skip
    arg -= (2 * math.pi) * np.rint(arg * (1 / (2 * math.pi)))
    cosine = np.cos(arg.astype(np.float32)).astype(np.float64)
    # 1 - exp(-x) is exactly 1.0 in float64 for x > 38; the cap keeps exp off its slow underflow path
    taper = 1.0 - np.exp(-np.minimum((radius / h) ** 2, 40.0))
    return galaxy.spiral_amplitude * taper * cosine


def _point_symmetric_half(galaxy: Galaxy, east: np.ndarray, north: np.ndarray) -> int | None:
    """H // 2 if the galaxy is centred at (0, 0) and the (H, W) grid, H even, is point-symmetric about it (the
    pixel at row i, column j is minus the pixel at H - 1 - i, W - 1 - j), else None."""
    if galaxy.centre_east_arcsec != 0 or galaxy.centre_north_arcsec != 0:
        return None
    if east.ndim != 2 or east.shape != north.shape or east.shape[0] % 2:
        return None
    if not (np.array_equal(east, -east[::-1, ::-1]) and np.array_equal(north, -north[::-1, ::-1])):
        return None
    return east.shape[0] // 2


def _grid_axes(east: np.ndarray, north: np.ndarray):
    """(column east offsets (W,), row north offsets (H,)) if the grid is a regular mesh (east constant down the
    columns, north constant along the rows, as :func:`imaging.pixel_grid` makes it), else None."""
    if east.ndim != 2 or east.shape != north.shape:
        return None
    if not (np.all(east == east[:1, :]) and np.all(north == north[:, :1])):
        return None
    return east[0, :], north[:, 0]


def _index_windows(axis: np.ndarray, centres: np.ndarray, half_width: float) -> list[slice]:
    """For each of ``centres`` (N,), the indices of a monotonic 1-D ``axis`` within ``half_width`` of it, as a slice
    (empty if none)."""
    inside = np.abs(axis[None, :] - np.asarray(centres, dtype=np.float64)[:, None]) <= half_width  # (N, A)
    any_inside = inside.any(axis=1)
    first = inside.argmax(axis=1)
    last = axis.size - inside[:, ::-1].argmax(axis=1)
    return [slice(int(a), int(b)) if ok else slice(0, 0) for a, b, ok in zip(first, last, any_inside, strict=True)]


def _clump_light(
    galaxy: Galaxy,
    east: np.ndarray,
    north: np.ndarray,
    pixel_arcsec: float,
    major: np.ndarray,
    minor: np.ndarray,
    ratios: np.ndarray,
    lines_out: np.ndarray,
) -> np.ndarray:
    """Light of the HII-region complexes on a grid; their line flux is added to ``lines_out``.

    Each clump is a circular Gaussian in the disk plane (projected: sigma and sigma q), sampled at pixel centres
    after adding (0.7 pixel)^2 in quadrature so that the pixel sum equals the analytic integral to < 1e-4. On a
    regular grid each clump is evaluated only within 7 sigma of its centre (the rest is < 1e-10 of its peak).

    Parameters
    ----------
    major, minor : (H, W) :func:`galaxy_frame` of ``east``, ``north``. ratios : (L, N) line flux of each clump
        per unit of its light. lines_out : (L, H, W), updated in place: += ratios[:, i] x clump i's light fraction.

    Returns
    -------
    total : (H, W) sum of the clumps' light fractions (sum -> 1 on an infinite grid).
    """
    clumps = clump_positions(galaxy)
    total = np.zeros(east.shape)
    if galaxy.clump_number <= 0:
        return total
    q = galaxy.disk_axis_ratio
    sigma = galaxy.clump_sigma_kpc * galaxy.arcsec_per_kpc
    extra2 = (0.7 * pixel_arcsec) ** 2
    s_major2, s_minor2 = sigma**2 + extra2, (sigma * q) ** 2 + extra2
    norm = pixel_arcsec**2 / (2 * math.pi * math.sqrt(s_major2 * s_minor2))
    axes = _grid_axes(east, north)
    reach = 7.0 * math.sqrt(max(s_major2, s_minor2))
    pa = math.radians(galaxy.position_angle_deg)
    if axes is not None:
        # clump centres on the sky (the inverse of galaxy_frame's rotation) and their windows, all clumps at once
        x, y = clumps["x"], clumps["y"]
        e_c = galaxy.centre_east_arcsec + x * math.sin(pa) + y * q * math.cos(pa)
        n_c = galaxy.centre_north_arcsec + x * math.cos(pa) - y * q * math.sin(pa)
        rows, columns = _index_windows(axes[1], n_c, reach), _index_windows(axes[0], e_c, reach)
    scratch = np.empty(lines_out.size)  # the (L, window) line images of one clump, reused
    for i, (x, y, w) in enumerate(zip(clumps["x"], clumps["y"], clumps["weight"], strict=True)):
        window = (slice(None), slice(None)) if axes is None else (rows[i], columns[i])
        light = (w * norm) * np.exp(
            -0.5 * ((major[window] - x) ** 2 / s_major2 + (minor[window] - y * q) ** 2 / s_minor2)
        )
        total[window] += light
        line_light = scratch[: ratios.shape[0] * light.size].reshape(ratios.shape[0], *light.shape)
        np.multiply(ratios[:, i, None, None], light[None], out=line_light)
        lines_out[(slice(None), *window)] += line_light
    return total


def star_forming_ratios_after_dust(galaxy: Galaxy, radius_arcsec: np.ndarray) -> np.ndarray:
    """Observed star-forming line fluxes relative to intrinsic H-alpha at deprojected radii ``radius_arcsec`` (R,):
    the abundance gradient's ratios times the radial dust transmission. Returns (L, R)."""
    r_re = np.asarray(radius_arcsec, dtype=np.float64) / galaxy.disk_re_arcsec
    oxygen = np.clip(galaxy.oxygen_central + galaxy.oxygen_gradient_dex_per_re * r_re, *C.PP04_N2_OXYGEN_RANGE)
    k_lines = _line_calzetti_k()  # (L,)
    ebv = gas_ebv_at_radius(galaxy, r_re)
    return star_forming_line_ratios_fast(oxygen) * 10.0 ** (-0.4 * k_lines[:, None] * ebv[None])


@functools.lru_cache(maxsize=1)
def _line_calzetti_k() -> np.ndarray:
    k = calzetti_k(LINE_WAVELENGTHS_REST_A)
    k.setflags(write=False)
    return k


def line_dust_transmission(ebv_gas: float) -> np.ndarray:
    """(len(LINE_NAMES),) transmission of each line through the Calzetti law with E(B-V)_gas."""
    return calzetti_transmission(LINE_WAVELENGTHS_REST_A, ebv_gas)


# ------------------------------------------------------------------------------------------------
# Structure and kinematics on a grid
# ------------------------------------------------------------------------------------------------
def sersic_bn(n: float) -> float:
    """Sersic b_n from Ciotti & Bertin (1999), eq. 18 (accurate to <1e-4 for n > 0.36)."""
    return 2 * n - 1.0 / 3 + 4.0 / (405 * n) + 46.0 / (25515 * n**2) + 131.0 / (1148175 * n**3)


def _sersic_total(n: float, re: float, q: float) -> float:
    """Integral over the plane of exp(-b_n ((r/re)^(1/n) - 1)) for elliptical radius r with axis ratio q."""
    bn = sersic_bn(n)
    return 2 * math.pi * q * re**2 * n * math.exp(bn) * gamma_function(2 * n) / bn ** (2 * n)


def galaxy_frame(galaxy: Galaxy, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets along the major (receding side positive) and minor axis, arcsec, from the galaxy centre."""
    de = east - galaxy.centre_east_arcsec
    dn = north - galaxy.centre_north_arcsec
    pa = math.radians(galaxy.position_angle_deg)
    major = de * math.sin(pa) + dn * math.cos(pa)
    minor = de * math.cos(pa) - dn * math.sin(pa)
    return major, minor


def render_maps(galaxy: Galaxy, east: np.ndarray, north: np.ndarray, pixel_arcsec: float, subsample: int = 2) -> dict:
    """Intrinsic (pre-seeing) maps of one galaxy on a grid of pixel centres.

    Parameters
    ----------
    galaxy : the galaxy.
    east, north : (H, W) arcsec offsets of pixel centres from the target.
    pixel_arcsec : pixel side, arcsec (for the flux normalisation and sub-sampling).
    subsample : profiles are averaged over subsample x subsample points per pixel.

    Returns
    -------
    dict with
      'bulge', 'disk' : (H, W) fraction of the component's total light in each pixel (sum -> 1 on an infinite grid);
      'lines_sf' : (L, H, W) star-forming line flux per pixel, 1e-17 erg/s/cm2, observed (after dust);
      'lines_agn' : (L, H, W) AGN nucleus line flux per pixel (zeros without AGN);
      'velocity_gas', 'velocity_stars' : (H, W) line-of-sight velocity relative to systemic, km/s;
      'radius_disk_re' : (H, W) deprojected radius in units of the disk effective radius.
    """
    if pixel_arcsec <= 0:
        raise ValueError(f"pixel_arcsec must be > 0, got {pixel_arcsec}")
    offsets = (np.arange(subsample) + 0.5) / subsample - 0.5
    log_r_table = np.linspace(-4.0, 2.5, 1301)  # log10(r / re)
    n = galaxy.bulge_sersic_n
    sersic_table = np.exp(-sersic_bn(n) * (10 ** (log_r_table / n) - 1.0))
    re_b, q_b = galaxy.bulge_re_arcsec, galaxy.bulge_axis_ratio
    h, q_d = galaxy.disk_scale_arcsec, galaxy.disk_axis_ratio
    h_ha = h * galaxy.halpha_size_ratio
    with_arms = galaxy.spiral_amplitude > 0
    # a galaxy centred on a point-symmetric grid (imaging.pixel_grid around a centred target) is the same after a
    # 180-degree rotation, but for the sign of the spiral pattern when the number of arms is odd: the sub-pixel loop
    # then runs over the first half of the rows and the rest is that half rotated
    half_rows = _point_symmetric_half(galaxy, east, north)
    east_loop, north_loop = (east, north) if half_rows is None else (east[:half_rows], north[:half_rows])
    bulge = np.zeros(east_loop.shape)
    disk = np.zeros(east_loop.shape)
    halpha_disk = np.zeros(east_loop.shape)
    # spiral arms: sums of exp(-r/h) x (modulation - 1), so that exp x modulation = disk + disk_wave
    halpha_wave = np.zeros(east_loop.shape) if with_arms else None
    disk_wave = np.zeros(east_loop.shape) if with_arms else None
    re_b2 = re_b**2
    for dy in offsets:
        for dx in offsets:
            # east decreases with column index, so a sub-pixel step in +x is -dx in east
            major, minor = galaxy_frame(galaxy, east_loop - dx * pixel_arcsec, north_loop + dy * pixel_arcsec)
            major2 = np.square(major)
            work = np.divide(minor, q_b)
            np.square(work, out=work)
            np.add(major2, work, out=work)
            np.divide(work, re_b2, out=work)  # r2_b
            # profile from a fine log-radius table (interpolation error < 1e-3 relative)
            np.maximum(work, 1e-8, out=work)
            np.log10(work, out=work)
            np.multiply(work, 0.5, out=work)
            bulge += np.interp(work, log_r_table, sersic_table, right=0.0)
            minor_deprojected = np.divide(minor, q_d, out=minor)
            r_d = np.square(minor_deprojected, out=work)
            np.add(major2, r_d, out=r_d)
            np.sqrt(r_d, out=r_d)
            exp_disk = np.divide(r_d, -h, out=major2)
            np.exp(exp_disk, out=exp_disk)
            exp_halpha = np.exp(np.divide(r_d, -h_ha))
            disk += exp_disk
            halpha_disk += exp_halpha
            if with_arms:
                wave = _spiral_wave(galaxy, major, minor_deprojected, h_ha, radius=r_d)
                np.multiply(exp_halpha, wave, out=exp_halpha)
                halpha_wave += exp_halpha
                np.multiply(exp_disk, wave, out=exp_disk)
                disk_wave += exp_disk
    if half_rows is not None:
        bulge, disk, halpha_disk = (np.concatenate([a, a[::-1, ::-1]]) for a in (bulge, disk, halpha_disk))
        if with_arms:
            sign = -1.0 if max(int(galaxy.spiral_arms), 1) % 2 else 1.0
            halpha_wave, disk_wave = (np.concatenate([a, sign * a[::-1, ::-1]]) for a in (halpha_wave, disk_wave))
    # the Sersic cusp is undersampled by a few points per pixel when re ~ a pixel (a 0.3" bulge on 0.5" spaxels
    # loses 7% of its light at subsample=3): the pixels within 1.5 pixels of the centre get 15 x 15 points
    centre_major, centre_minor = galaxy_frame(galaxy, east, north)
    near = np.hypot(centre_major, centre_minor) < 1.5 * pixel_arcsec
    if subsample < 15 and near.any():
        fine = (np.arange(15) + 0.5) / 15 - 0.5
        # all 15 x 15 sub-points of the M pixels at once: (M, 15, 15), rows dy and columns dx
        e_sub = east[near][:, None, None] - fine[None, None, :] * pixel_arcsec
        n_sub = north[near][:, None, None] + fine[None, :, None] * pixel_arcsec
        major, minor = galaxy_frame(galaxy, e_sub, n_sub)
        r2_b = (major**2 + (minor / q_b) ** 2) / re_b**2
        profile = np.interp(0.5 * np.log10(np.maximum(r2_b, 1e-8)), log_r_table, sersic_table, right=0.0)
        bulge[near] = profile.sum(axis=(1, 2)) * subsample**2 / 15**2
    area = pixel_arcsec**2 / subsample**2
    bulge *= area / _sersic_total(n, re_b, q_b)
    if with_arms:
        halpha_arms = (halpha_disk + halpha_wave) * (area / (2 * math.pi * q_d * h_ha**2))
        disk_arms = (disk + disk_wave) * (area / (2 * math.pi * q_d * h**2))
    disk *= area / (2 * math.pi * q_d * h**2)
    halpha_disk *= area / (2 * math.pi * q_d * h_ha**2)

    major, minor = galaxy_frame(galaxy, east, north)
    radius = np.sqrt(major**2 + (minor / q_d) ** 2)
    cos_phi = np.divide(major, radius, out=np.zeros_like(radius), where=radius > 0)
    sin_i = math.sin(math.radians(galaxy.inclination_deg))
    rotation = (2 / math.pi) * galaxy.vmax_kms * np.arctan(radius / galaxy.rotation_turnover_arcsec)
    velocity_gas = rotation * sin_i * cos_phi
    # stars: same curve with asymmetric drift ~20% (e.g. Martinsson et al. 2013, A&A 557, A130)
    velocity_stars = 0.8 * velocity_gas

    # star formation: smooth inside-out disk modulated by spiral arms, plus HII-region complexes; the young stars
    # (young_light_fraction of the disk light) follow the same arms and clumps, so they show in g and H-alpha together
    f_clump = galaxy.clump_halpha_fraction if galaxy.clump_number > 0 else 0.0
    if with_arms or f_clump > 0:
        halpha_disk = (1 - f_clump) * (halpha_arms if with_arms else halpha_disk)
    radius_re = radius / galaxy.disk_re_arcsec
    oxygen = np.clip(
        galaxy.oxygen_central + galaxy.oxygen_gradient_dex_per_re * radius_re,
        C.PP04_N2_OXYGEN_RANGE[0],
        C.PP04_N2_OXYGEN_RANGE[1],
    )
    lines_sf = star_forming_line_ratios(oxygen, line_axis=0)  # (L, H, W)
    ebv = gas_ebv_at_radius(galaxy, radius_re)
    halpha_sf = galaxy.halpha_flux_sf_intrinsic * halpha_disk
    for i, k_line in enumerate(_line_calzetti_k()):
        # (F x halpha_disk) x ratio x dust transmission, line by line (no (L, H, W) temporaries)
        np.multiply(halpha_sf, lines_sf[i], out=lines_sf[i])
        lines_sf[i] *= 10.0 ** ((-0.4 * k_line) * ebv)
    old_disk = disk
    clump_total = None
    if f_clump > 0:
        # each HII complex has the abundance and dust of its own radius, added to lines_sf clump by clump
        clump_ratios = star_forming_ratios_after_dust(galaxy, clump_positions(galaxy)["radius"])  # (L, N)
        clump_ratios *= galaxy.halpha_flux_sf_intrinsic * f_clump
        clump_total = _clump_light(galaxy, east, north, pixel_arcsec, major, minor, clump_ratios, lines_sf)
    if with_arms or f_clump > 0:
        smooth_young = disk_arms if with_arms else disk
        young_light = (1 - f_clump) * smooth_young
        if clump_total is not None:
            young_light = young_light + f_clump * clump_total
        fy = galaxy.young_light_fraction
        disk = (1 - fy) * disk + fy * young_light
    if galaxy.lier_halpha_flux_bulge > 0 or galaxy.lier_halpha_flux_disk > 0:
        # LIER / diffuse gas ionised by old stars: follows the old light at a fixed EW (observed, after dust)
        lier = galaxy.lier_halpha_flux_bulge * bulge + galaxy.lier_halpha_flux_disk * old_disk
        for i, ratio in enumerate(lier_line_ratios(galaxy.lier_nii_halpha)):
            lines_sf[i] += lier * ratio
    lines_agn = np.zeros_like(lines_sf)
    if galaxy.agn:
        # unresolved nucleus: a Gaussian of 0.05 arcsec sigma, far below any PSF here
        sigma = 0.05
        de = east - galaxy.centre_east_arcsec
        dn = north - galaxy.centre_north_arcsec
        nucleus = np.zeros(east.shape)
        for dy in offsets:
            for dx in offsets:
                exponent = -0.5 * ((de - dx * pixel_arcsec) ** 2 + (dn + dy * pixel_arcsec) ** 2) / sigma**2
                # exp is exactly 0 in float64 below -746; the floor keeps it off its slow underflow path
                nucleus += np.exp(np.maximum(exponent, -800.0))
        nucleus *= area / (2 * math.pi * sigma**2)
        lines_agn = (galaxy.agn_halpha_flux * nucleus)[None] * agn_line_ratios()[:, None, None]
    return {
        "bulge": bulge,
        "disk": disk,
        "lines_sf": lines_sf,
        "lines_agn": lines_agn,
        "velocity_gas": velocity_gas,
        "velocity_stars": velocity_stars,
        "radius_disk_re": radius_re,
    }


# ------------------------------------------------------------------------------------------------
# Sampling a population
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _schechter_cdf(mag_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(*mag_range, 2001)
    x = 10 ** (-0.4 * (grid - C.SCHECHTER_MSTAR_R))
    pdf = x ** (C.SCHECHTER_ALPHA + 1) * np.exp(-x)
    cdf = np.cumsum(pdf)
    cdf /= cdf[-1]
    return cdf, grid


def _sample_schechter(rng: np.random.Generator, size: int, mag_range=(-23.5, -17.0)) -> np.ndarray:
    cdf, grid = _schechter_cdf(tuple(mag_range))
    return np.interp(rng.random(size), cdf, grid)


@functools.lru_cache(maxsize=1)
def _volume_redshift_cdf() -> tuple[np.ndarray, np.ndarray]:
    table = _cosmology_table()
    keep = (table["z"] >= C.SIMULATED_REDSHIFT_RANGE[0]) & (table["z"] <= C.SIMULATED_REDSHIFT_RANGE[1])
    z, dvdz = table["z"][keep], table["dvdz"][keep]
    cdf = np.cumsum(dvdz)
    cdf = (cdf - cdf[0]) / (cdf[-1] - cdf[0])
    return cdf, z


def _sample_volume_redshift(rng: np.random.Generator, size: int) -> np.ndarray:
    cdf, z = _volume_redshift_cdf()
    return np.interp(rng.random(size), cdf, z)


def sample_galaxy(rng: np.random.Generator, templates: TemplateSet, targetid: int, **options) -> Galaxy:
    """Draw one BGS-like galaxy (r < 19.5) and its target/fiber placement; ``options`` as in
    :func:`sample_galaxy_and_lines`, which also returns the galaxy's total line fluxes."""
    return sample_galaxy_and_lines(rng, templates, targetid, **options)[0]


def check_offcentre_fraction(offcentre_fraction: float | None) -> float:
    """``offcentre_fraction`` as a float, ``constants.SIMULATED_OFFCENTRE_FRACTION`` for None; a ValueError naming
    the argument unless it lies in [0, 1]."""
    if offcentre_fraction is None:
        return C.SIMULATED_OFFCENTRE_FRACTION
    value = float(offcentre_fraction)
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"offcentre_fraction must be between 0 and 1, got {offcentre_fraction}")
    return value


def offcentre_draw_probability(offcentre_fraction: float | None = None) -> float:
    """Probability that an eligible galaxy (disk R_e > ``constants.SIMULATED_OFFCENTRE_MIN_RE_ARCSEC``) becomes an
    off-centre target, so that ``offcentre_fraction`` of ALL targets are off-centre (None: the documented default,
    ``constants.SIMULATED_OFFCENTRE_FRACTION``).

    It is ``offcentre_fraction / constants.SIMULATED_OFFCENTRE_ELIGIBLE_FRACTION`` (the measured share of BGS-selected
    draws that are eligible), capped at 1: fractions above ~0.40 give every eligible galaxy an off-centre target and
    a realised fraction of ~0.40, not the request. The default gives 0.12, the simulator's earlier behaviour.
    """
    return min(1.0, check_offcentre_fraction(offcentre_fraction) / C.SIMULATED_OFFCENTRE_ELIGIBLE_FRACTION)


def sample_galaxy_and_lines(
    rng: np.random.Generator,
    templates: TemplateSet,
    targetid: int,
    offcentre: bool | None = None,
    max_tries: int = 2000,
    r_mag_limit: float = C.BGS_R_MAG_LIMIT,
    offcentre_fraction: float | None = None,
) -> tuple[Galaxy, np.ndarray]:
    """Draw one BGS-like galaxy and its :func:`total_line_fluxes` (computed for the selection anyway).

    Parameters
    ----------
    rng : random generator (the only source of randomness, so a seed fixes the galaxy).
    templates : stellar population templates.
    targetid : DESI-like TARGETID to assign.
    offcentre : force (True) or forbid (False) an off-centre target; None draws it (see ``offcentre_fraction``).
    max_tries : draws before giving up (about 16 draws are rejected per kept galaxy).
    r_mag_limit : apparent r-band selection limit (default BGS bright, 19.5).
    offcentre_fraction : fraction of all targets that are off-centre pieces of large galaxies when ``offcentre`` is
        None, in [0, 1] (None: ``constants.SIMULATED_OFFCENTRE_FRACTION``); see :func:`offcentre_draw_probability`.
        The default reproduces the earlier simulator draw for draw. Another fraction changes which galaxies are
        pieces and, because placing a piece takes more random numbers, the rest of those galaxies' draws (and the
        whole galaxy where a try rejected by the magnitude cut became a piece): a survey is the same for the same
        seed and fraction.
    """
    offcentre_probability = offcentre_draw_probability(offcentre_fraction)
    for _ in range(max_tries):
        absmag = float(_sample_schechter(rng, 1)[0])
        z = float(_sample_volume_redshift(rng, 1)[0])
        table = _cosmology_table()
        dl_mpc = float(np.interp(z, table["z"], table["dl_mpc"]))  # = cosmology(z)["dl_mpc"]
        # quick screen with a distance modulus only (the K-correction and dust are applied exactly below)
        if absmag + 5 * math.log10(dl_mpc * 1e5) - 2.5 * math.log10(1 + z) > r_mag_limit + 0.6:
            continue
        cosmo = cosmology(np.array([z]))
        galaxy = _draw_parameters(rng, templates, targetid, z, cosmo, absmag, offcentre, offcentre_probability)
        line_total = total_line_fluxes(galaxy)
        r_nmgy = _total_band_nanomaggies(galaxy, templates, line_total, ("r",))["r"]
        m_r = C.NANOMAGGY_AB_ZEROPOINT - 2.5 * math.log10(max(r_nmgy, 1e-12))
        if C.BGS_R_MAG_BRIGHT < m_r < r_mag_limit:
            return galaxy, line_total
    raise RuntimeError(f"could not draw a galaxy brighter than r = {r_mag_limit} in {max_tries} tries")


def _draw_parameters(rng, templates, targetid, z, cosmo, absmag, offcentre, offcentre_probability) -> Galaxy:
    dl_mpc = float(cosmo["dl_mpc"][0])
    arcsec_per_kpc = float(cosmo["arcsec_per_kpc"][0])
    age_gyr = float(cosmo["age_gyr"][0])
    bulge_fraction = float(np.clip(rng.beta(1.2, 2.5), 0.0, 0.95))
    # star formation: quenched with probability rising with bulge fraction
    star_forming = bool(rng.random() > min(0.9, bulge_fraction * 1.2))
    log_l_r = -0.4 * (absmag - C.SUN_ABSMAG_R_AB)
    # first pass at mass with a typical colour, refined once the young fraction is known
    g_r_guess = 0.75 if not star_forming else 0.5
    log_mstar = log_l_r + C.BELL03_MLR_R[0] + C.BELL03_MLR_R[1] * g_r_guess
    a, b, c, d = C.SPEAGLE14_COEFFS
    log_sfr_ms = (a + b * age_gyr) * log_mstar - (c + d * age_gyr)
    if star_forming:
        log_sfr = log_sfr_ms + rng.normal(0.0, C.SPEAGLE14_SCATTER_DEX)
    else:
        # quenched: log sSFR ~ 2 dex below the star-forming sequence (GALEX, Salim et al. 2007, ApJS 173, 267: red
        # sequence at log sSFR ~ -12 against ~ -10), so their H-alpha is mostly LIER-like (Cid Fernandes et al. 2011)
        log_sfr = log_sfr_ms - 1.5 - rng.uniform(0.0, 1.0)
    disk_mass = 10**log_mstar * (1 - bulge_fraction) + 1.0
    x = C.YOUNG_TO_OLD_LIGHT_PER_MASS_5500 * 10**log_sfr * C.YOUNG_POPULATION_AGE_YR / disk_mass
    young = float(np.clip(x / (1 + x), 0.0, 0.95))

    # sizes (Shen et al. 2003 late types) and structure
    gamma_, alpha, beta, m0 = C.SHEN03_LATE
    mstar = 10**log_mstar
    r50_kpc = gamma_ * mstar**alpha * (1 + mstar / m0) ** (beta - alpha)
    r50_kpc *= math.exp(rng.normal(0.0, C.SHEN03_SCATTER_LN))
    disk_re = r50_kpc * arcsec_per_kpc
    disk_h = disk_re / 1.678
    bulge_re = max(disk_h * rng.uniform(*C.BULGE_RE_PER_DISK_H), 0.05)
    inclination = math.degrees(math.acos(rng.uniform(0.0, 1.0)))  # random orientations
    q0 = C.DISK_INTRINSIC_AXIS_RATIO
    disk_q = math.sqrt(math.cos(math.radians(inclination)) ** 2 * (1 - q0**2) + q0**2)
    bulge_q = rng.uniform(0.6, 1.0)
    pa = rng.uniform(0.0, 180.0)

    # dust: more for star-forming and inclined disks (Calzetti stars / gas = 0.44)
    # dust: H-alpha attenuation of star-forming galaxies from stellar mass (Garn & Best 2010), converted to the
    # gas colour excess with the Calzetti curve and to the stars with E_s = 0.44 E_g; quenched disks get little dust
    x_mass = log_mstar - 10.0
    a_halpha = sum(c * x_mass**i for i, c in enumerate(C.GARN_BEST10_AHALPHA)) + rng.normal(0.0, C.GARN_BEST10_SCATTER)
    if not star_forming:
        a_halpha = rng.uniform(0.0, 0.3)
    k_halpha = float(_line_calzetti_k()[LINE_NAMES.index("Halpha")])
    ebv_gas = float(np.clip(a_halpha, 0.0, 3.0)) / k_halpha
    ebv_gas *= min(1.0 / max(disk_q, 0.2), 3.0) ** 0.3  # more dust through inclined disks
    ebv_disk = C.CALZETTI_STELLAR_TO_GAS_EBV * ebv_gas
    ebv_bulge = float(np.clip(rng.normal(0.02, 0.02), 0.0, 0.1))

    # kinematics
    tf0, tf1, tf2 = C.REYES11_TF
    vmax = 10 ** (tf0 + tf1 * (log_mstar - tf2) + rng.normal(0.0, 0.05))
    s0, s1, s2 = C.ZAHID16_SIGMA
    sigma_bulge = 10 ** (s0 + s1 * (log_mstar - s2) + rng.normal(0.0, 0.05))

    # metallicity (PP04 scale) with a CALIFA-like negative gradient
    t0, t1, t2 = C.TREMONTI04_MZR
    oxygen = float(np.clip(t0 + t1 * log_mstar + t2 * log_mstar**2 + C.MZR_PP04_OFFSET_DEX, *C.PP04_N2_OXYGEN_RANGE))
    gradient = float(rng.normal(C.OXYGEN_GRADIENT_DEX_PER_RE, 0.05))

    # H-alpha from the SFR (Kennicutt 1998)
    dl_cm = dl_mpc * 3.0857e24
    l_halpha = 10**log_sfr / C.KENNICUTT_SFR_PER_HALPHA_ERG_S
    halpha_sf = l_halpha / (4 * math.pi * dl_cm**2) / C.FLUX_UNIT_ERG_S_CM2_A

    # continuum scale: rest SED (unit at 5500 A) normalised to M_r at 10 pc, then dimmed to D_L
    galaxy = Galaxy(
        targetid=int(targetid),
        target_ra_deg=float(rng.uniform(150.0, 250.0)),
        target_dec_deg=float(np.degrees(np.arcsin(rng.uniform(0.0, math.sin(math.radians(60.0)))))),
        redshift=z,
        luminosity_distance_mpc=dl_mpc,
        arcsec_per_kpc=arcsec_per_kpc,
        absmag_r=absmag,
        log_mstar=float(log_mstar),
        log_sfr=float(log_sfr),
        star_forming=star_forming,
        bulge_light_fraction=bulge_fraction,
        bulge_sersic_n=float(rng.uniform(1.5, 4.0)),
        bulge_re_arcsec=float(bulge_re),
        bulge_axis_ratio=float(bulge_q),
        disk_scale_arcsec=float(disk_h),
        disk_re_arcsec=float(disk_re),
        inclination_deg=float(inclination),
        disk_axis_ratio=float(disk_q),
        position_angle_deg=float(pa),
        centre_east_arcsec=0.0,
        centre_north_arcsec=0.0,
        offcentre_target=False,
        young_light_fraction=young,
        ebv_bulge=ebv_bulge,
        ebv_disk=float(ebv_disk),
        ebv_gas=float(ebv_gas),
        halpha_flux_sf_intrinsic=float(halpha_sf),
        oxygen_central=oxygen,
        oxygen_gradient_dex_per_re=gradient,
        agn=False,
        agn_halpha_flux=0.0,
        agn_sigma_kms=float(rng.uniform(*C.AGN_SIGMA_KMS_RANGE)),
        vmax_kms=float(vmax),
        rotation_turnover_arcsec=float(disk_h * rng.uniform(0.2, 0.8)),
        sigma_gas_kms=float(rng.uniform(*C.GAS_SIGMA_KMS_RANGE)),
        sigma_bulge_kms=float(sigma_bulge),
        sigma_disk_kms=float(rng.uniform(40.0, 80.0)),
        continuum_scale=1.0,
        psf_fwhm_g_arcsec=0.0,
        psf_fwhm_r_arcsec=0.0,
        psf_fwhm_z_arcsec=0.0,
        fiber_seeing_fwhm_arcsec=float(rng.uniform(*C.DESI_FIBER_SEEING_FWHM_RANGE_ARCSEC)),
        fiber_east_arcsec=0.0,
        fiber_north_arcsec=0.0,
        exptime_s=float(rng.uniform(*C.BGS_EXPTIME_RANGE_S)),
    )
    # normalise: absolute magnitude in DECam r of the rest SED at 10 pc
    spectra = component_spectra_rest(templates, galaxy, broaden=False)
    r_at_rest = template_band_integrator(templates, 0.0, "r")
    lo, hi = r_at_rest[0], r_at_rest[1]
    nmgy_10pc = _integrate_band(spectra["bulge"][lo:hi] + spectra["disk"][lo:hi], r_at_rest)
    target_nmgy = 10 ** (-0.4 * (absmag - C.NANOMAGGY_AB_ZEROPOINT))
    scale_10pc = target_nmgy / nmgy_10pc  # erg/s/cm2/A per unit SED at 10 pc
    galaxy.continuum_scale = float(scale_10pc * (10.0 / (dl_mpc * 1e6)) ** 2 / C.FLUX_UNIT_ERG_S_CM2_A)

    # AGN nucleus in bulgy galaxies: H-alpha EW 3-30 A against the bulge continuum
    if bulge_fraction > 0.3 and rng.random() < C.SIMULATED_AGN_FRACTION:
        galaxy.agn = True
        ha_rest = C.EMISSION_LINES_VACUUM_A["Halpha"]
        bulge_cont_rest = np.interp(ha_rest, templates.wavelength_rest, spectra["bulge"])
        # observed line flux = EW_rest * f_lambda,rest * scale (the 1/(1+z) of f_lambda and (1+z) of EW cancel)
        galaxy.agn_halpha_flux = float(rng.uniform(3.0, 30.0) * bulge_cont_rest * galaxy.continuum_scale)

    # seeing: FWHM ~ lambda^-0.2 (Kolmogorov; Fried 1966), r-band drawn from the 1.0-1.6 arcsec
    fwhm_r = rng.uniform(*C.LEGACY_SEEING_FWHM_RANGE_ARCSEC)
    galaxy.psf_fwhm_r_arcsec = float(fwhm_r)
    galaxy.psf_fwhm_g_arcsec = float(fwhm_r * (4800.0 / 6400.0) ** -0.2)
    galaxy.psf_fwhm_z_arcsec = float(fwhm_r * (9200.0 / 6400.0) ** -0.2)

    # target placement: an eligible (large) galaxy is a piece with offcentre_probability (offcentre_draw_probability);
    # the uniform number is drawn for every galaxy, as before the fraction became a parameter (same default stream)
    if offcentre is None:
        offcentre = bool(rng.random() < offcentre_probability) and disk_re > C.SIMULATED_OFFCENTRE_MIN_RE_ARCSEC
    if offcentre:
        radius = rng.uniform(0.5, 2.0) * max(disk_re, 1.0)
        if rng.random() < C.SIMULATED_OFFCENTRE_MAJOR_AXIS_FRACTION:
            phi = 0.0 if rng.random() < 0.5 else math.pi
        else:
            phi = rng.uniform(0.0, 2 * math.pi)
        major, minor = radius * math.cos(phi), radius * math.sin(phi) * disk_q
        pa_rad = math.radians(pa)
        target_east = major * math.sin(pa_rad) + minor * math.cos(pa_rad)
        target_north = major * math.cos(pa_rad) - minor * math.sin(pa_rad)
        galaxy.centre_east_arcsec = float(-target_east)
        galaxy.centre_north_arcsec = float(-target_north)
        galaxy.offcentre_target = True
    sigma_axis = C.DESI_FIBER_POINTING_RMS_ARCSEC / math.sqrt(2.0)
    galaxy.fiber_east_arcsec = float(rng.normal(0.0, sigma_axis))
    galaxy.fiber_north_arcsec = float(rng.normal(0.0, sigma_axis))
    _draw_resolved_emission(rng, galaxy, spectra, templates)
    return galaxy


def _draw_resolved_emission(rng: np.random.Generator, galaxy: Galaxy, spectra: dict, templates: TemplateSet) -> None:
    """Draw the resolved star formation and ionisation of ``galaxy`` in place (constants.NELSON16_*, CLUMP_*,
    SPIRAL_*, LIER_*, DUST_GRADIENT_*); ``spectra`` is :func:`component_spectra_rest` of the galaxy (unbroadened)."""
    ratio = C.NELSON16_HALPHA_SIZE_RATIO * (10 ** (galaxy.log_mstar - 10.0)) ** C.NELSON16_HALPHA_SIZE_MASS_SLOPE
    galaxy.halpha_size_ratio = float(ratio * 10 ** rng.normal(0.0, C.HALPHA_SIZE_RATIO_SCATTER_DEX))
    galaxy.clump_halpha_fraction = float(rng.uniform(*C.CLUMP_HALPHA_FRACTION_RANGE))
    galaxy.clump_number = int(rng.integers(C.CLUMP_NUMBER_RANGE[0], C.CLUMP_NUMBER_RANGE[1] + 1))
    galaxy.clump_sigma_kpc = float(rng.uniform(*C.CLUMP_SIGMA_KPC_RANGE))
    galaxy.clump_seed = int(rng.integers(0, 2**31 - 1))
    galaxy.spiral_arms = int(rng.choice(C.SPIRAL_ARM_NUMBERS))
    galaxy.spiral_pitch_deg = float(rng.uniform(*C.SPIRAL_PITCH_DEG_RANGE))
    galaxy.spiral_amplitude = float(rng.uniform(*C.SPIRAL_AMPLITUDE_RANGE))
    galaxy.spiral_phase_rad = float(rng.uniform(0.0, 2 * math.pi))
    galaxy.dust_gradient_dex_per_re = float(rng.uniform(*C.DUST_GRADIENT_DEX_PER_RE_RANGE))
    # LIER gas: observed H-alpha = EW_rest x the component's rest f_lambda at H-alpha x continuum_scale
    ha_rest = C.EMISSION_LINES_VACUUM_A["Halpha"]
    bulge_cont = float(np.interp(ha_rest, templates.wavelength_rest, spectra["bulge"])) * galaxy.continuum_scale
    disk_cont = float(np.interp(ha_rest, templates.wavelength_rest, spectra["disk"])) * galaxy.continuum_scale
    if galaxy.star_forming:
        galaxy.lier_halpha_flux_bulge = float(rng.uniform(*C.LIER_HALPHA_EW_A_BULGE_OF_STAR_FORMING) * bulge_cont)
        galaxy.lier_halpha_flux_disk = 0.0
    else:
        ew = float(rng.uniform(*C.LIER_HALPHA_EW_A_QUIESCENT))
        galaxy.lier_halpha_flux_bulge = ew * bulge_cont
        galaxy.lier_halpha_flux_disk = ew * disk_cont
    galaxy.lier_nii_halpha = float(rng.uniform(*C.LIER_NII_HALPHA_RANGE))


def total_band_nanomaggies(
    galaxy: Galaxy, templates: TemplateSet, include_lines: bool = True, bands: tuple[str, ...] = C.LEGACY_BANDS
) -> dict[str, float]:
    """Total fluxes (nanomaggies) of the whole galaxy in ``bands``: continuum plus emission lines."""
    line_total = total_line_fluxes(galaxy) if include_lines else np.zeros(len(LINE_NAMES))
    return _total_band_nanomaggies(galaxy, templates, line_total, bands)


def _total_band_nanomaggies(
    galaxy: Galaxy, templates: TemplateSet, line_total: np.ndarray, bands: tuple[str, ...]
) -> dict[str, float]:
    spectra = component_spectra_rest(templates, galaxy, broaden=False)
    out = {}
    for band in bands:
        integrator = template_band_integrator(templates, galaxy.redshift, band)
        lo, hi = integrator[:2]
        rest_total = spectra["bulge"][lo:hi] + spectra["disk"][lo:hi]
        flux_obs = rest_total * galaxy.continuum_scale / (1 + galaxy.redshift)
        out[band] = float(_integrate_band(flux_obs * C.FLUX_UNIT_ERG_S_CM2_A, integrator))
        line_wave_obs = LINE_WAVELENGTHS_REST_A * (1 + galaxy.redshift)
        out[band] += float(line_nanomaggies(line_wave_obs, line_total * C.FLUX_UNIT_ERG_S_CM2_A, band))
    return out


def total_line_fluxes(galaxy: Galaxy, n_radial: int = 600) -> np.ndarray:
    """Total observed (dust-attenuated) line fluxes of the galaxy, 1e-17 erg/s/cm2, ordered as LINE_NAMES.

    The star-forming part integrates the exponential disk light over deprojected radius with the radial
    abundance gradient (exact up to the radial quadrature); the AGN part is added at its own ratios.
    """
    h = galaxy.disk_scale_arcsec * galaxy.halpha_size_ratio
    radius = np.linspace(0.0, 15 * h, n_radial + 1)
    weight = radius * np.exp(-radius / h) / h**2  # light per unit radius of an exponential disk, integrates to 1

    def ratios_after_dust(r_arcsec: np.ndarray) -> np.ndarray:  # (L, R)
        return star_forming_ratios_after_dust(galaxy, r_arcsec)

    # spiral arms average to 1 over azimuth at every radius; clumps carry their own radii
    f_clump = galaxy.clump_halpha_fraction if galaxy.clump_number > 0 else 0.0
    mean_ratios = (1 - f_clump) * np.trapezoid(weight[None, :] * ratios_after_dust(radius), radius, axis=1)
    if f_clump > 0:
        clumps = clump_positions(galaxy)
        mean_ratios = mean_ratios + f_clump * (ratios_after_dust(clumps["radius"]) * clumps["weight"][None]).sum(1)
    sf = galaxy.halpha_flux_sf_intrinsic * mean_ratios
    lier = (galaxy.lier_halpha_flux_bulge + galaxy.lier_halpha_flux_disk) * lier_line_ratios(galaxy.lier_nii_halpha)
    agn = galaxy.agn_halpha_flux * agn_line_ratios() if galaxy.agn else 0.0
    return sf + lier + agn
