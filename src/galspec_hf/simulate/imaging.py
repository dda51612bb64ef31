"""Legacy Surveys-like g, r, z imaging: band fluxes through DECam curves, Moffat PSF, noise, cutout FITS.

Array orientation follows the real cutouts (``../shared/data/legacysurvey``): data[band, row, col] with
rows increasing to the north (+Dec) and columns increasing to the west (CD1_1 < 0, RA decreases).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from .. import constants as C
from .galaxy import (
    LINE_WAVELENGTHS_REST_A,
    Galaxy,
    component_spectra_rest,
    line_nanomaggies_each,
    template_band_nanomaggies,
)
from .templates import TemplateSet

#: DECam photometric zero points, AB magnitude giving 1 e-/s (DECam instrument pages / Dey et al. 2019, AJ 157,
#: 168: g 25.08, r 25.29, z 24.92), and a typical DECaLS exposure of ~90 s per pass and band.
DECAM_ZEROPOINT_AB = {"g": 25.08, "r": 25.29, "z": 24.92}
LEGACY_EXPOSURE_S = 90.0


def counts_per_nanomaggy(band: str, exposures: int = C.LEGACY_REFERENCE_EXPOSURES) -> float:
    """Detected electrons per nanomaggy in a Legacy DR9 coadd of ``exposures`` exposures (the source shot noise)."""
    return 10 ** (0.4 * (DECAM_ZEROPOINT_AB[band] - C.NANOMAGGY_AB_ZEROPOINT)) * LEGACY_EXPOSURE_S * exposures


def draw_image_exposures(
    rng: np.random.Generator, pass_coverage: float = C.DECAM_PASS_COVERAGE_PROBABILITY
) -> dict[str, int]:
    """Exposures per band of one cutout: Binomial(3 passes, ``pass_coverage``) drawn again until >= 1.

    The depth of Legacy Surveys coadds varies with how many of the survey's passes covered a position
    (constants.DECAM_PASS_COVERAGE_PROBABILITY). Returns {band: exposures}.
    """
    if not 0.0 < pass_coverage <= 1.0:
        raise ValueError(f"pass_coverage must be in (0, 1], got {pass_coverage}")
    exposures = {}
    for band in C.LEGACY_BANDS:
        n = 0
        while n == 0:
            n = int(rng.binomial(C.LEGACY_REFERENCE_EXPOSURES, pass_coverage))
        exposures[band] = n
    return exposures


def background_pixel_noise_nmgy(band: str, exposures: int = C.LEGACY_REFERENCE_EXPOSURES) -> float:
    """Per-pixel background sigma (nanomaggies) of a coadd of ``exposures`` exposures: the real cutout's measured
    sigma (constants.LEGACY_PIXEL_NOISE_NMGY, taken as the reference depth) x sqrt(reference / exposures)."""
    if exposures < 1:
        raise ValueError(f"exposures must be >= 1, got {exposures} for band {band!r}")
    return C.LEGACY_PIXEL_NOISE_NMGY[band] * math.sqrt(C.LEGACY_REFERENCE_EXPOSURES / exposures)


def pixel_grid(size_pix: int, pixel_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """Sky offsets (east, north) in arcsec of the centres of a size x size pixel grid centred on (0, 0).

    Returns
    -------
    east, north : (size, size) arrays; column index increases to the west, row index to the north.
    """
    if size_pix <= 0:
        raise ValueError(f"size_pix must be positive, got {size_pix}")
    centre = (size_pix - 1) / 2.0
    idx = np.arange(size_pix) - centre
    east = np.broadcast_to(-idx[None, :] * pixel_arcsec, (size_pix, size_pix))
    north = np.broadcast_to(idx[:, None] * pixel_arcsec, (size_pix, size_pix))
    return np.ascontiguousarray(east), np.ascontiguousarray(north)


@functools.lru_cache(maxsize=256)
def moffat_kernel(fwhm_arcsec: float, pixel_arcsec: float, beta: float = C.MOFFAT_BETA) -> np.ndarray:
    """Normalised Moffat PSF sampled (3x3 sub-pixels) on a square grid reaching 4 FWHM.

    Returns
    -------
    (K, K) array summing to 1.
    """
    if fwhm_arcsec <= 0 or pixel_arcsec <= 0:
        raise ValueError("fwhm_arcsec and pixel_arcsec must be > 0")
    alpha = fwhm_arcsec / (2 * math.sqrt(2 ** (1 / beta) - 1))
    half = int(math.ceil(4 * fwhm_arcsec / pixel_arcsec))
    sub = (np.arange(3) - 1) / 3.0
    idx = np.arange(-half, half + 1)
    kernel = np.zeros((idx.size, idx.size))
    for dy in sub:
        for dx in sub:
            r2 = ((idx[None, :] + dx) ** 2 + (idx[:, None] + dy) ** 2) * pixel_arcsec**2
            kernel += (1 + r2 / alpha**2) ** (-beta)
    return kernel / kernel.sum()


def gaussian_kernel(fwhm_arcsec: float, pixel_arcsec: float) -> np.ndarray:
    """Normalised circular Gaussian PSF reaching 3 FWHM. Returns (K, K) summing to 1."""
    sigma = fwhm_arcsec / C.FWHM_PER_SIGMA / pixel_arcsec
    half = int(math.ceil(3 * fwhm_arcsec / pixel_arcsec))
    idx = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (idx[None, :] ** 2 + idx[:, None] ** 2) / sigma**2)
    return kernel / kernel.sum()


def band_weights(galaxy: Galaxy, templates: TemplateSet) -> dict[str, np.ndarray]:
    """Nanomaggies per unit of each light component in each band.

    Returns
    -------
    dict band -> (2 + L,) array: [bulge total nmgy, disk total nmgy, nmgy per 1e-17 erg/s/cm2 of each line].
    """
    spectra = component_spectra_rest(templates, galaxy, broaden=False)
    line_wave_obs = LINE_WAVELENGTHS_REST_A * (1 + galaxy.redshift)
    out = {}
    for band in C.LEGACY_BANDS:
        values = [
            template_band_nanomaggies(templates, spectra[name], galaxy.redshift, galaxy.continuum_scale, band)
            for name in ("bulge", "disk")
        ]
        per_line = line_nanomaggies_each(line_wave_obs, C.FLUX_UNIT_ERG_S_CM2_A, band)
        out[band] = np.concatenate([values, per_line])
    return out


def render_image(
    galaxy: Galaxy,
    templates: TemplateSet,
    maps: dict,
    fine_pixel_arcsec: float,
    oversample: int,
    margin_fine: int,
    weights: dict | None = None,
    lines: np.ndarray | None = None,
) -> np.ndarray:
    """Noiseless seeing-convolved g, r, z image in nanomaggies per Legacy pixel.

    Parameters
    ----------
    maps : output of :func:`galaxy.render_maps` on a square fine grid of pixel ``fine_pixel_arcsec``.
    oversample : fine pixels per Legacy pixel along each axis.
    margin_fine : fine pixels cropped on every side after convolution (room for PSF wings).
    weights : precomputed :func:`band_weights` (computed when None).
    lines : precomputed ``maps["lines_sf"] + maps["lines_agn"]`` (computed when None).

    Returns
    -------
    (3, H, W) float64, H = (fine size - 2 margin) / oversample.
    """
    weights = band_weights(galaxy, templates) if weights is None else weights
    lines = maps["lines_sf"] + maps["lines_agn"] if lines is None else lines
    images = []
    for band in C.LEGACY_BANDS:
        w = weights[band]
        intrinsic = w[0] * maps["bulge"] + w[1] * maps["disk"] + np.tensordot(w[2:], lines, axes=1)
        fwhm = getattr(galaxy, f"psf_fwhm_{band}_arcsec")
        # one 2-D FFT convolution per band (pocketfft is ~2x slower on a (3, N, N) batch than on three (N, N))
        convolved = fftconvolve(intrinsic, moffat_kernel(round(fwhm, 3), fine_pixel_arcsec), mode="same")
        if margin_fine:
            convolved = convolved[margin_fine:-margin_fine, margin_fine:-margin_fine]
        n = convolved.shape[0] // oversample
        binned = convolved[: n * oversample, : n * oversample].reshape(n, oversample, n, oversample).sum(axis=(1, 3))
        images.append(binned)
    return np.stack(images)


def add_image_noise(
    image: np.ndarray, rng: np.random.Generator, exposures: dict[str, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Legacy-like noise: measured DR9 background noise plus source shot noise, at the depth of ``exposures``.

    Parameters
    ----------
    image : (3, H, W) noiseless nanomaggies (g, r, z).
    exposures : {band: exposures in the coadd} (:func:`draw_image_exposures`); None: the reference depth
        (constants.LEGACY_REFERENCE_EXPOSURES in every band).

    Returns
    -------
    noisy : (3, H, W) float32; ivar : (3, H, W) float32 inverse variance of the noise added.
    """
    if image.ndim != 3 or image.shape[0] != len(C.LEGACY_BANDS):
        raise ValueError(f"image must have shape (3, H, W), got {image.shape}")
    sigma = np.empty_like(image)
    for i, band in enumerate(C.LEGACY_BANDS):
        n = C.LEGACY_REFERENCE_EXPOSURES if exposures is None else exposures[band]
        background = background_pixel_noise_nmgy(band, n)
        variance = background**2 + np.maximum(image[i], 0.0) / counts_per_nanomaggy(band, n)
        sigma[i] = np.sqrt(variance)
    # correlated unit noise: white noise convolved with a kernel of unit sum of squares keeps a per-pixel sigma of 1,
    # so the ivar returned stays the per-pixel value while neighbouring pixels share noise as in resampled coadds
    kernel = noise_correlation_kernel()  # (K, K)
    half = kernel.shape[0] // 2
    white = rng.standard_normal((image.shape[0], image.shape[1] + 2 * half, image.shape[2] + 2 * half))
    unit = fftconvolve(white, kernel[None], mode="valid", axes=(1, 2))  # (3, H, W)
    noisy = image + sigma * unit
    return noisy.astype(np.float32), (1.0 / sigma**2).astype(np.float32)


def gaussian_noise_kernel(sigma_pix: float) -> np.ndarray:
    """Circular Gaussian of ``sigma_pix`` pixels reaching 4 sigma, normalised to unit sum of squares.

    Convolving unit white noise with it gives noise of unit per-pixel sigma whose autocorrelation is a Gaussian
    of sigma ``sigma_pix * sqrt(2)``. Returns (K, K) float64.
    """
    if sigma_pix <= 0:
        raise ValueError(f"sigma_pix must be > 0, got {sigma_pix}")
    half = max(int(math.ceil(4 * sigma_pix)), 1)
    idx = np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (idx[None, :] ** 2 + idx[:, None] ** 2) / sigma_pix**2)
    return kernel / np.sqrt((kernel**2).sum())


def binned_noise_ratio_of_kernel(kernel: np.ndarray, block: int = C.NOISE_BIN_BLOCK_PIX) -> float:
    """Exact binned-noise ratio (sigma of ``block`` x ``block`` means x block / per-pixel sigma) of white noise
    convolved with ``kernel``: R^2 = sum over pixel pairs of one block of the correlation rho(dx, dy), / block^2.

    Parameters
    ----------
    kernel : (K, K) convolution kernel (any normalisation). block : bin side, pixels (default 4).
    """
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be 2-D, got shape {kernel.shape}")
    autocorrelation = fftconvolve(kernel, kernel[::-1, ::-1], mode="full")
    autocorrelation = autocorrelation / autocorrelation.max()  # rho(0, 0) = 1 at the centre
    centre = np.array(autocorrelation.shape) // 2
    d = np.arange(-(block - 1), block)
    weight = (block - np.abs(d))[:, None] * (block - np.abs(d))[None, :]  # pixel pairs at each lag in a block
    padded = np.pad(autocorrelation, block)
    rho = padded[centre[0] + block + d[0] : centre[0] + block + d[-1] + 1, centre[1] + block + d[0] : centre[1] + block
                 + d[-1] + 1]  # fmt: skip
    return float(math.sqrt((weight * rho).sum()) / block)


@functools.lru_cache(maxsize=1)
def noise_correlation_kernel() -> np.ndarray:
    """The kernel that correlates simulated cutout noise: a Gaussian whose width is solved so that the exact binned
    ratio (:func:`binned_noise_ratio_of_kernel`) equals ``constants.LEGACY_BINNED_NOISE_RATIO`` (the real DR9
    cutout's). Returns (K, K), unit sum of squares."""
    from scipy.optimize import brentq  # noqa: PLC0415

    sigma_pix = brentq(
        lambda s: binned_noise_ratio_of_kernel(gaussian_noise_kernel(s)) - C.LEGACY_BINNED_NOISE_RATIO, 0.2, 3.0
    )
    return gaussian_noise_kernel(sigma_pix)


#: Header cards of a simulated cutout beyond the real DR9 cutout's (galspec_hf.io.legacy.cutout_header).
SIMULATED_CUTOUT_CARDS = {
    "VERSION": ("DR9", "galspec-hf synthetic"),
    "BUNIT": ("nanomaggy", "flux per pixel; 1 nmgy = AB 22.5"),
    "SYNTHETC": (True, "galspec-hf simulated galaxy"),
}


def write_cutout(path: str | Path, image: np.ndarray, ra_deg: float, dec_deg: float) -> Path:
    """Write a (3, N, N) nanomaggy image as a Legacy Surveys DR9 grz cutout FITS file (primary HDU only).

    Written by :func:`galspec_hf.io.legacy.write_legacy_cutout` (the real cutout's header, 0.262" pixels, east
    left) with :data:`SIMULATED_CUTOUT_CARDS`.
    """
    from ..io.legacy import write_legacy_cutout  # noqa: PLC0415 (astropy: only when writing)

    if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] != image.shape[2]:
        raise ValueError(f"image must have shape (3, N, N), got {image.shape}")
    if not (np.isfinite(ra_deg) and np.isfinite(dec_deg)):
        raise ValueError(f"ra_deg and dec_deg must be finite, got {ra_deg}, {dec_deg}")
    return write_legacy_cutout(path, image, ra_deg=ra_deg, dec_deg=dec_deg, cards=SIMULATED_CUTOUT_CARDS)
