"""Spectra with known emission-line fluxes on real stellar continua, for checking a line fit against the truth.

The continua are the simulator's FSPS simple stellar populations (``../shared/data/templates``: Padova isochrones,
the theoretical C3K library, 0.46 A sampling), so their absorption lines are sharp and independent of the MILES-HC
templates the line fit (and the MaNGA DAP) uses. Used by tests/analysis/test_lines.py (recovery targets) and
examples/compare_with_dap.py (``--synthetic``: the same spectra through the DAP).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from .. import constants as C
from ..spectral import pixel_edges
from .lines import default_instrumental_sigma_kms, desi_instrumental_sigma_kms

__all__ = ["GALAXY_TYPES", "bracketing_ssp_templates", "stellar_line_spectra"]

#: Galaxy types: (fraction of the young template at 5500 A, stellar sigma km/s, H-alpha rest EW in A, line ratios to
#: H-alpha). Star-forming: H-beta at case B with ~0.9 attenuation, [NII]/Ha 0.35, [OIII]/Hb 1. LIER-like: old
#: population, EW(Ha) 3 A (the low-EW regime of retired galaxies, EW(Ha) < 3 A; Cid Fernandes et al. 2011, MNRAS
#: 413, 1687), [NII]/Ha 1.5, [OIII]/Hb 1.5. Quiescent: old population, no lines.
GALAXY_TYPES = {
    "star_forming": (0.7, 70.0, 30.0, {"Hbeta": 0.31, "NII_6585": 0.35, "OIII_5008": 0.31, "SII_6718": 0.2}),
    "lier": (0.0, 200.0, 3.0, {"Hbeta": 0.25, "NII_6585": 1.5, "OIII_5008": 0.37, "SII_6718": 0.5}),
    "quiescent": (0.0, 220.0, 0.0, {"Hbeta": 0.0, "NII_6585": 0.0, "OIII_5008": 0.0, "SII_6718": 0.0}),
}
INSTRUMENTS = ("desi", "manga")


def stellar_line_spectra(instrument: str, kind: str, n: int, rng, template_source):
    """n noisy spectra of one galaxy type on the DESI or MaNGA grid, stellar continuum from the simulator's templates.

    The continuum is the old/young mix (:data:`GALAXY_TYPES`) broadened by the stellar sigma and the instrument's
    sigma at each pixel, 5e-17 erg/s/cm2/A at rest 5500 A, per-pixel S/N 25; lines are pixel-integrated Gaussians (gas
    sigma 60 km/s, velocity +-50 km/s), at redshifts 0.03-0.08. `template_source`: the FSPS SSP file (see
    :func:`galspec_hf.simulate.templates.load_templates`).

    Returns (wavelength (L,), flux (n, L), ivar (n, L), redshift (n,), instrumental sigma (L,) km/s, true line
    fluxes {line: (n,)}).
    """
    from ..simulate.ifu import manga_wavelength  # noqa: PLC0415 (the simulator is only needed here)
    from ..simulate.templates import load_templates  # noqa: PLC0415

    if instrument not in INSTRUMENTS:
        raise ValueError(f"`instrument` must be one of {INSTRUMENTS}, got {instrument!r}")
    if kind not in GALAXY_TYPES:
        raise ValueError(f"`kind` must be one of {tuple(GALAXY_TYPES)}, got {kind!r}")
    if instrument == "desi":
        wavelength = np.arange(C.DESI_WAVELENGTH_MIN_A, C.DESI_WAVELENGTH_MAX_A + 0.01, C.DESI_WAVELENGTH_STEP_A)
        sigma_inst = desi_instrumental_sigma_kms(wavelength)
    else:
        wavelength = manga_wavelength()
        sigma_inst = default_instrumental_sigma_kms(wavelength)
    lines = C.EMISSION_LINES_VACUUM_A
    young, sigma_star, ew_ha, ratios = GALAXY_TYPES[kind]
    templates = load_templates(template_source)
    redshift = rng.uniform(0.03, 0.08, n)
    level = 5.0
    # the continuum broadened by the stellar sigma and the instrument's sigma at each observed pixel: broadened
    # at every 10 km/s between the smallest and largest total sigma, then interpolated per pixel in sigma
    sigma_tot = np.hypot(sigma_star, sigma_inst)  # (L,) km/s
    steps = np.arange(np.floor(sigma_tot.min() / 10.0), np.ceil(sigma_tot.max() / 10.0) + 1) * 10.0

    def mix(sigma):
        return (1 - young) * templates.broadened("old", sigma) + young * templates.broadened("young", sigma)

    rest = np.stack([mix(sigma) for sigma in steps])  # (S, N) on the rest-frame template grid
    # each pixel between two broadened versions: index `low` and `low + 1`, weight `frac` on the second
    at = np.interp(sigma_tot, steps, np.arange(steps.size))
    low = np.minimum(at.astype(int), max(steps.size - 2, 0))
    high = np.minimum(low + 1, steps.size - 1)
    frac = at - low
    columns = np.arange(wavelength.size)
    continuum = np.empty((n, wavelength.size))
    for i, z in enumerate(redshift):
        sampled = np.stack([np.interp(wavelength / (1 + z), templates.wavelength_rest, row) for row in rest])
        continuum[i] = sampled[low, columns] * (1 - frac) + sampled[high, columns] * frac
    continuum *= level
    # the EW's continuum: at H-alpha, broadened as at z = 0.05, the middle of the redshift range
    sigma_ha = float(np.hypot(sigma_star, np.interp(lines["Halpha"] * 1.05, wavelength, sigma_inst)))
    halpha = np.full(n, ew_ha * level * np.interp(lines["Halpha"], templates.wavelength_rest, mix(sigma_ha)))
    fluxes = {"Halpha": halpha, **{name: r * halpha for name, r in ratios.items()}}
    fluxes["SII_6733"] = 0.75 * fluxes["SII_6718"]
    fluxes["NII_6550"] = fluxes["NII_6585"] / C.NII_DOUBLET_RATIO
    fluxes["OIII_4960"] = fluxes["OIII_5008"] / C.OIII_DOUBLET_RATIO
    edges = pixel_edges(wavelength)
    model = continuum.copy()
    v_gas = rng.uniform(-50, 50, n)
    for name, flux in fluxes.items():
        centre = lines[name] * (1 + redshift) * (1 + v_gas / C.SPEED_OF_LIGHT_KMS)
        s = centre * np.hypot(60.0, np.interp(centre, wavelength, sigma_inst)) / C.SPEED_OF_LIGHT_KMS
        cdf = 0.5 * (1 + erf((edges[None] - centre[:, None]) / (np.sqrt(2) * s[:, None])))
        model += flux[:, None] * np.diff(cdf, axis=1) / np.diff(edges)
    noise = continuum / 25.0
    return wavelength, model + noise * rng.standard_normal(model.shape), noise**-2, redshift, sigma_inst, fluxes


def bracketing_ssp_templates(template_source):
    """A continuum-fit library of the simulator's FSPS SSPs *less the ones that make* :func:`stellar_line_spectra`'s
    populations (the 10 Gyr SSP and those up to 100 Myr): the populations lie between its templates, none of them
    is one (:func:`galspec_hf.analysis.continuum.ssp_continuum_templates`)."""
    from ..simulate.templates import read_ssp_file, ssp_population_ages  # noqa: PLC0415
    from .continuum import ssp_continuum_templates  # noqa: PLC0415

    ages_yr = read_ssp_file(template_source)[2]
    old, young = ssp_population_ages(ages_yr)
    return ssp_continuum_templates(template_source, exclude_ages_yr=[ages_yr[old], *ages_yr[young]])
