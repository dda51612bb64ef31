"""Stellar-population template spectra for the synthetic universe.

Two real template sets are supported:

* ``"kcorrect"`` (default when the ``kcorrect`` package is installed): the five NMF templates of
  Blanton & Roweis (2007, AJ 133, 734) shipped as ``kcorrect/data/templates/kcorrect-default-v4.fits``
  (BSD-3). Template 3 (no star formation in the last Gyr, Dn4000 = 1.76, line-free) is the old
  population; template 1 (all of its mass formed in the last 300 Myr, per the file's M300 HDU) is the
  young one, with its nebular emission lines interpolated out (this package adds its own lines).
  Template 4 (54% young, line-free) is not blue enough for a young population (f_lambda ratio
  2600-4200 A / 5500-7200 A = 1.5 against 6.0 for template 1).
* an FSPS simple-stellar-population file such as ``SSP_Padova_CKC14z_Kroupa_Z0.0190.fits``
  (fastspecfit test data, BSD-3): the old population is the 10 Gyr SSP and the young one a
  constant star formation rate over the last 100 Myr (SSPs of 5, 25 and 100 Myr weighted by the
  time each represents).

Both are resampled, flux-conservingly, onto one uniform log-lambda rest-frame grid so that
velocity broadening is a convolution with a fixed kernel in pixels.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import SPEED_OF_LIGHT_KMS
from ..spectral import rebin_flux_conserving

#: Rest-frame grid of the resampled templates: log10 step (20.7 km/s per pixel) and range (Angstrom).
TEMPLATE_LOGLAM_STEP = 3e-5
TEMPLATE_WAVELENGTH_REST_RANGE_A = (2000.0, 11600.0)
#: Rest wavelength at which templates are normalised to unit flux density (Angstrom).
TEMPLATE_NORM_WAVELENGTH_A = 5500.0


@dataclass(frozen=True)
class TemplateSet:
    """An old and a young stellar population on a uniform log-lambda rest-frame grid.

    Attributes
    ----------
    wavelength_rest : (N,) float64, vacuum Angstrom, uniform in log10 with step ``TEMPLATE_LOGLAM_STEP``.
    old, young : (N,) float64, flux density f_lambda normalised to 1 at 5500 A (rest).
    source : str, where the spectra came from.
    """

    wavelength_rest: np.ndarray
    old: np.ndarray
    young: np.ndarray
    source: str
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def velocity_per_pixel_kms(self) -> float:
        """Velocity width of one template pixel, km/s."""
        return float(SPEED_OF_LIGHT_KMS * np.log(10.0) * TEMPLATE_LOGLAM_STEP)

    def broadened(self, name: str, sigma_kms: float) -> np.ndarray:
        """Template ``name`` ('old' or 'young') convolved with a Gaussian of ``sigma_kms`` (cached, 10 km/s steps).

        Returns
        -------
        (N,) float64 array on ``wavelength_rest``.
        """
        if name not in ("old", "young"):
            raise ValueError(f"name must be 'old' or 'young', got {name!r}")
        if not np.isfinite(sigma_kms) or sigma_kms < 0:
            raise ValueError(f"sigma_kms must be finite and >= 0, got {sigma_kms}")
        key = (name, int(round(sigma_kms / 10.0)))
        if key not in self._cache:
            spectrum = getattr(self, name)
            sigma_pix = key[1] * 10.0 / self.velocity_per_pixel_kms
            if sigma_pix < 0.3:
                self._cache[key] = spectrum
            else:
                half = int(np.ceil(4 * sigma_pix))
                kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_pix) ** 2)
                kernel /= kernel.sum()
                padded = np.pad(spectrum, half, mode="edge")
                self._cache[key] = np.convolve(padded, kernel, mode="valid")
        return self._cache[key]


def _uniform_grid() -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.log10(TEMPLATE_WAVELENGTH_REST_RANGE_A)
    n = int(np.floor((hi - lo) / TEMPLATE_LOGLAM_STEP))
    centres = 10 ** (lo + TEMPLATE_LOGLAM_STEP * (np.arange(n) + 0.5))
    edges = 10 ** (lo + TEMPLATE_LOGLAM_STEP * np.arange(n + 1))
    return centres, edges


def _finish(wavelength_in: np.ndarray, old: np.ndarray, young: np.ndarray, source: str) -> TemplateSet:
    centres, edges = _uniform_grid()
    if wavelength_in[0] > edges[0] or wavelength_in[-1] < edges[-1]:
        raise ValueError(f"templates from {source} do not cover {TEMPLATE_WAVELENGTH_REST_RANGE_A} A (rest)")
    spectra = rebin_flux_conserving(wavelength_in, np.stack([old, young]).astype(np.float64), edges)
    norm = (
        np.interp(TEMPLATE_NORM_WAVELENGTH_A, centres, spectra[0]),
        np.interp(TEMPLATE_NORM_WAVELENGTH_A, centres, spectra[1]),
    )
    return TemplateSet(centres, spectra[0] / norm[0], spectra[1] / norm[1], source)


def kcorrect_template_path() -> Path | None:
    """Path of kcorrect's default v4 template file, or None when kcorrect is not installed."""
    try:
        import kcorrect  # noqa: PLC0415
    except ImportError:
        return None
    path = Path(os.path.dirname(kcorrect.__file__)) / "data" / "templates" / "kcorrect-default-v4.fits"
    return path if path.is_file() else None


def load_kcorrect_templates(path: str | Path | None = None) -> TemplateSet:
    """Old (template 3) and young (template 4) populations of kcorrect's default v4 templates.

    Parameters
    ----------
    path : optional path to ``kcorrect-default-v4.fits``; default: the file the kcorrect package ships.
    """
    from astropy.io import fits  # noqa: PLC0415

    path = Path(path) if path is not None else kcorrect_template_path()
    if path is None:
        raise ValueError("templates='kcorrect' needs the kcorrect package (pip install kcorrect)")
    with fits.open(path) as hdul:
        if "FLUX" not in hdul:
            raise ValueError(f"{path}: no FLUX HDU; not a kcorrect template file")
        wavelength = np.asarray(hdul["FLUX"].data["wave"][0], dtype=np.float64)
        flux = np.asarray(hdul["FLUX"].data["flux"][0], dtype=np.float64)
    return _finish(wavelength, flux[3], remove_nebular_lines(wavelength, flux[1]), f"kcorrect:{path.name}[3,1]")


#: Nebular emission lines (rest, Angstrom) removed from templates that include them: Mg II, [OII], [NeIII], Balmer
#: series, [OIII], He I/II, [OI], [NII], [SII], [ArIII], [OII] 7320, [SIII], Paschen series, He I 10830
#: (Osterbrock & Ferland 2006 line lists).
NEBULAR_LINES_REST_A = (
    2798.0, 3727.0, 3729.0, 3869.0, 3889.0, 3968.0, 3970.0, 4102.0, 4341.0, 4363.0, 4471.0, 4686.0, 4861.0, 4959.0,
    5007.0, 5876.0, 6300.0, 6363.0, 6548.0, 6563.0, 6584.0, 6678.0, 6716.0, 6731.0, 7065.0, 7136.0, 7320.0, 7330.0,
    9069.0, 9229.0, 9532.0, 9546.0, 10049.0, 10830.0, 10938.0,
)  # fmt: skip


def remove_nebular_lines(wavelength: np.ndarray, flux: np.ndarray, half_width_kms: float = 900.0) -> np.ndarray:
    """Replace the flux within +-``half_width_kms`` of each nebular line by a straight line between its edges.

    Parameters
    ----------
    wavelength : (N,) rest-frame Angstrom, increasing. flux : (N,) f_lambda.

    Returns
    -------
    (N,) copy of ``flux`` without the emission lines of ``NEBULAR_LINES_REST_A``.
    """
    if wavelength.shape != flux.shape:
        raise ValueError(f"wavelength and flux must have the same shape, got {wavelength.shape} and {flux.shape}")
    clean = np.array(flux, dtype=np.float64)
    masked = np.zeros(wavelength.size, dtype=bool)
    for line in NEBULAR_LINES_REST_A:
        half = line * half_width_kms / SPEED_OF_LIGHT_KMS
        masked |= np.abs(wavelength - line) < half
    clean[masked] = np.interp(wavelength[masked], wavelength[~masked], clean[~masked])
    return clean


def read_ssp_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The spectra of an FSPS simple-stellar-population FITS file (fastspecfit's layout).

    Parameters
    ----------
    path : FITS file with HDUs FLUX (n_wave x n_age, erg/s/cm2/A), WAVE (n_wave,) vacuum Angstrom and METADATA
        (column ``age`` in yr).

    Returns
    -------
    (wavelength (n_wave,) A, flux (n_wave, n_age) float64, ages_yr (n_age,))
    """
    from astropy.io import fits  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"templates: SSP file {path} not found")
    with fits.open(path) as hdul:
        for name in ("FLUX", "WAVE", "METADATA"):
            if name not in hdul:
                raise ValueError(f"{path}: HDU {name} missing; not an SSP template file")
        flux = np.asarray(hdul["FLUX"].data, dtype=np.float64)
        wavelength = np.asarray(hdul["WAVE"].data, dtype=np.float64)
        ages_yr = np.asarray(hdul["METADATA"].data["age"], dtype=np.float64)
    if flux.shape[0] != wavelength.size:
        flux = flux.T
    if flux.shape != (wavelength.size, ages_yr.size):
        raise ValueError(
            f"{path}: FLUX has shape {flux.shape}, expected (n_wave, n_age) = ({wavelength.size}, {ages_yr.size})"
        )
    return wavelength, flux, ages_yr


def ssp_population_ages(ages_yr: np.ndarray) -> tuple[int, np.ndarray]:
    """Which SSPs of a file make the two populations: (index of the old one, the 10 Gyr SSP; mask of the young
    ones, ages up to 100 Myr)."""
    ages_yr = np.asarray(ages_yr, dtype=np.float64)
    return int(np.argmin(np.abs(np.log10(ages_yr) - 10.0))), ages_yr <= 1.01e8


def load_ssp_templates(path: str | Path) -> TemplateSet:
    """Old (10 Gyr) and young (constant SFR over 100 Myr) populations from an FSPS SSP file.

    Parameters
    ----------
    path : FITS file with HDUs FLUX (n_wave x n_age), WAVE (n_wave,) and METADATA (column ``age`` in yr).
    """
    wavelength, flux, ages_yr = read_ssp_file(path)
    old_index, young = ssp_population_ages(ages_yr)
    if not young.any():
        raise ValueError(f"{path}: no SSP younger than 100 Myr for the young population")
    # time each young SSP represents in a constant-SFR history over 0-100 Myr: midpoints between ages
    young_ages = ages_yr[young]
    bounds = np.concatenate([[0.0], 0.5 * (young_ages[1:] + young_ages[:-1]), [1e8]])
    weights = np.diff(bounds)
    young_spectrum = flux[:, young] @ weights
    return _finish(wavelength, flux[:, old_index], young_spectrum, f"ssp:{Path(path).name}")


@functools.lru_cache(maxsize=4)
def load_templates(source: str | None = None) -> TemplateSet:
    """Load a template set.

    Parameters
    ----------
    source : ``None`` or ``"kcorrect"`` for kcorrect's shipped templates (``None`` falls back to the SSP
        file named by the environment variable ``GALSPEC_SSP_TEMPLATES`` when kcorrect is missing), or a path
        to an FSPS SSP FITS file.
    """
    if source is None:
        if kcorrect_template_path() is not None:
            return load_kcorrect_templates()
        env = os.environ.get("GALSPEC_SSP_TEMPLATES")
        if env:
            return load_ssp_templates(env)
        raise ValueError(
            "templates: kcorrect is not installed; pass an SSP file (e.g. SSP_Padova_CKC14z_Kroupa_Z0.0190.fits) "
            "or set GALSPEC_SSP_TEMPLATES"
        )
    if str(source) == "kcorrect":
        return load_kcorrect_templates()
    return load_ssp_templates(source)
