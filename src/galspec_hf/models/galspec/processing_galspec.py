"""GalSpec processing: image and spectrum normalisation, resampling onto the model grid.

The normalisation is a deterministic function of the image alone (the flux of one band in a central
aperture for images, in each fiber's own aperture for spectra), so it can be computed at inference,
when no spectrum exists, and predictions come back in absolute units (1e-17 erg/s/cm2/A). The model
calls the same functions internally; :class:`GalSpecProcessor` exposes them, prepares raw inputs
(crop, dtype, spectrum resampling with inverse-variance propagation) and saves as
``preprocessor_config.json``.

This file imports only torch, numpy, transformers and the configuration file, so it can be
shipped to the Hub as custom code. It therefore keeps its own copies of the library's pixel edges and AB
conversion (galspec_hf.spectral) and centred crop (galspec_hf.sky); tests/test_spectral.py and
tests/test_sky.py check that each copy equals the library's function.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from .configuration_galspec import GalSpecConfig

# AB system: 1 nanomaggy is AB magnitude 22.5, i.e. 3631 Jy * 10**(-0.4 * 22.5) = 3.631e-6 Jy
# (Oke & Gunn 1983, ApJ 266, 713; https://www.legacysurvey.org/dr10/description/#photometry).
NANOMAGGY_ERG_S_CM2_HZ = 3.631e-29
# Speed of light in Angstrom/s (CODATA, exact).
SPEED_OF_LIGHT_A_PER_S = 2.99792458e18
# The package's flux density unit, erg/s/cm2/A.
FLUX_UNIT = 1e-17


# ----------------------------------------------------------------------------------------
# Unit conversions and grids
# ----------------------------------------------------------------------------------------
def nanomaggies_to_flux_density(flux_nanomaggies, wavelength):
    """Convert a flux in nanomaggies to a mean flux density in 1e-17 erg/s/cm2/A.

    A copy of :func:`galspec_hf.spectral.nanomaggies_to_flux_density` (this file is self-contained).

    f_lambda = f_nu * c / lambda**2, with f_nu = flux_nanomaggies * 3.631e-29 erg/s/cm2/Hz.

    Parameters
    ----------
    flux_nanomaggies : float, numpy array or torch tensor
        Flux in nanomaggies (AB magnitude 22.5 = 1 nanomaggy).
    wavelength : float
        Effective wavelength of the band, Angstrom.
    """
    return flux_nanomaggies * (NANOMAGGY_ERG_S_CM2_HZ * SPEED_OF_LIGHT_A_PER_S / wavelength**2 / FLUX_UNIT)


def model_wavelength_grid(config: GalSpecConfig, dtype=torch.float64) -> torch.Tensor:
    """The model's wavelength grid, shape (num_wavelengths,), Angstrom (vacuum, observed frame)."""
    index = torch.arange(config.num_wavelengths, dtype=torch.float64)
    if config.wavelength_scale == "linear":
        grid = config.wavelength_min + index * config.wavelength_step
    else:
        grid = 10.0 ** (math.log10(config.wavelength_min) + index * config.wavelength_step)
    return grid.to(dtype)


def pixel_offsets_arcsec(image_size: int, pixel_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sky offsets of pixel centres from the image centre, arcsec.

    Images follow the standard sky orientation of Legacy Surveys cutouts (north up, east left in a
    display with row 0 at the bottom, i.e. FITS axis 1 runs towards -RA, axis 2 towards +Dec).
    :meth:`GalSpecProcessor.orient_image` brings any image to this orientation through its WCS.

    Returns
    -------
    east, north : torch.Tensor, each (image_size, image_size)
        Offset of pixel [row, col] east (+RA) and north (+Dec) of the image centre, arcsec.
    """
    centre = (image_size - 1) / 2.0
    index = torch.arange(image_size, dtype=torch.float32) - centre
    north = index[:, None].expand(image_size, image_size) * pixel_scale
    east = -index[None, :].expand(image_size, image_size) * pixel_scale
    return east, north


def circular_aperture_weights(
    image_size: int, pixel_scale: float, diameter: float, supersample: int = 5
) -> torch.Tensor:
    """Fraction of each pixel inside a circle of `diameter` arcsec centred on the image, (H, W).

    Computed by supersampling each pixel `supersample` x `supersample` times.
    """
    fine = image_size * supersample
    centre = (fine - 1) / 2.0
    coordinate = (torch.arange(fine, dtype=torch.float64) - centre) * (pixel_scale / supersample)
    inside = (coordinate[:, None] ** 2 + coordinate[None, :] ** 2) <= (diameter / 2.0) ** 2
    weights = inside.double().reshape(image_size, supersample, image_size, supersample).mean(dim=(1, 3))
    return weights.float()


# ----------------------------------------------------------------------------------------
# Normalisation (image only; used identically by the model and the processor)
# ----------------------------------------------------------------------------------------
def compute_flux_scale(pixel_values: torch.Tensor, config: GalSpecConfig) -> torch.Tensor:
    """Each galaxy's flux scale: its flux in a central aperture of the normalisation band.

    Parameters
    ----------
    pixel_values : torch.Tensor, (batch, num_bands, image_size, image_size)
        Images in nanomaggies per pixel.

    Returns
    -------
    torch.Tensor, (batch,)
        Aperture flux in nanomaggies, at least `config.normalization_floor`.
    """
    weights = circular_aperture_weights(config.image_size, config.pixel_scale, config.normalization_aperture_diameter)
    weights = weights.to(device=pixel_values.device, dtype=torch.float32)
    return aperture_flux(normalization_band_image(pixel_values, config), weights, config)


def normalization_band_image(pixel_values: torch.Tensor, config: GalSpecConfig) -> torch.Tensor:
    """The `normalization_band` plane of (batch, bands, H, W) images, float32, non-finite pixels set to 0."""
    return band_image(pixel_values, config, config.normalization_band)


def band_image(pixel_values: torch.Tensor, config: GalSpecConfig, band: str) -> torch.Tensor:
    """The `band` plane (one of `config.bands`) of (batch, bands, H, W) images, float32, non-finite pixels set to 0."""
    if band not in config.bands:
        raise ValueError(f"`band` must be one of the config's bands {config.bands}, got {band!r}")
    return torch.nan_to_num(pixel_values[:, config.bands.index(band)].float(), nan=0.0, posinf=0.0, neginf=0.0)


def aperture_flux(image: torch.Tensor, weights: torch.Tensor, config: GalSpecConfig) -> torch.Tensor:
    """Flux of (n, H, W) images in apertures of pixel weights (H, W) or (n, H, W), at least the floor: (n,)."""
    return (image * weights).sum(dim=(-2, -1)).clamp(min=config.normalization_floor)


def fiber_aperture_weights(
    fiber_offset: torch.Tensor, fiber_diameter: torch.Tensor, image_size: int, pixel_scale: float
) -> torch.Tensor:
    """Fraction of each pixel inside each fiber's circle, (num_fibers, H, W).

    fiber_offset (num_fibers, 2) arcsec east/north of the image centre, fiber_diameter (num_fibers,)
    arcsec. The edge is anti-aliased: a pixel's weight falls linearly from 1 to 0 as its centre
    crosses the circle over one pixel (the summed area matches the supersampled
    :func:`circular_aperture_weights` to about 1 % for DESI's 1.5" fibers at 0.262"/pixel: tested).
    """
    east, north = pixel_offsets_arcsec(image_size, pixel_scale)
    east, north = east.to(fiber_offset.device), north.to(fiber_offset.device)
    offset = fiber_offset.float()
    distance = torch.sqrt(
        (east[None] - offset[:, 0, None, None]) ** 2 + (north[None] - offset[:, 1, None, None]) ** 2
    )  # (num_fibers, H, W) arcsec
    radius = fiber_diameter.float()[:, None, None] / 2.0
    return ((radius - distance) / pixel_scale + 0.5).clamp(0.0, 1.0)


def aperture_light(
    band_image: torch.Tensor, offsets_arcsec: torch.Tensor, diameter_arcsec: float, pixel_scale: float,
    batch_size: int = 256,
) -> torch.Tensor:
    """Light of one (H, H) band image in circular apertures of `diameter_arcsec` at (N, 2) offsets (arcsec east/north
    of the image centre): (N,) float64, in the image's unit (nanomaggies). No floor: a faint aperture stays faint.
    The pixel weights are :func:`fiber_aperture_weights`'; apertures are summed `batch_size` at a time."""
    flat = offsets_arcsec.reshape(-1, 2)
    light = [
        (band_image[None] * fiber_aperture_weights(chunk, torch.full((chunk.shape[0],), float(diameter_arcsec)),
                                                   band_image.shape[-1], pixel_scale)).sum(dim=(-2, -1)).double()
        for chunk in flat.split(batch_size)
    ]  # fmt: skip
    return torch.cat(light) if light else torch.zeros(0, dtype=torch.float64)


def spectrum_scales(
    pixel_values: torch.Tensor,
    flux_scale: torch.Tensor,
    galaxy_index: torch.Tensor,
    fiber_offset: torch.Tensor,
    fiber_diameter: torch.Tensor,
    config: GalSpecConfig,
) -> torch.Tensor:
    """The flux-density scale of each fiber's spectrum, (num_fibers,), 1e-17 erg/s/cm2/A.

    `config.spectrum_normalization` = "fiber": the `normalization_band` flux in the fiber's own aperture;
    "central": the galaxy's central-aperture `flux_scale`. galaxy_index (num_fibers,) picks each fiber's
    galaxy in pixel_values (batch, bands, H, W) and flux_scale (batch,); fiber_offset (num_fibers, 2)
    and fiber_diameter (num_fibers,) are in arcsec.
    """
    if config.spectrum_normalization == "central":
        return spectrum_flux_scale(flux_scale[galaxy_index], config)
    image = normalization_band_image(pixel_values, config)[galaxy_index]  # (num_fibers, H, W)
    weights = fiber_aperture_weights(fiber_offset, fiber_diameter, image.shape[-1], config.pixel_scale)
    return spectrum_flux_scale(aperture_flux(image, weights, config), config)


def fiber_colours_dex(
    pixel_values: torch.Tensor,
    galaxy_index: torch.Tensor,
    fiber_offset: torch.Tensor,
    fiber_diameter: torch.Tensor,
    config: GalSpecConfig,
) -> torch.Tensor:
    """The colours of the image light inside each fiber in dex, (num_fibers, num_bands) float32: log10 of each band's
    aperture flux over the `normalization_band`'s (0 for that band), every flux at least `normalization_floor`
    nanomaggies (the model's input; :func:`galspec_hf.scoreboard.fiber_colours` is the scoreboard's g - r in AB mag
    of data-set rows). galaxy_index (num_fibers,) picks each fiber's galaxy in pixel_values (batch, bands, H, W);
    fiber_offset (num_fibers, 2) and fiber_diameter (num_fibers,) are in arcsec."""
    images = torch.nan_to_num(pixel_values[galaxy_index].float(), nan=0.0, posinf=0.0, neginf=0.0)
    weights = fiber_aperture_weights(fiber_offset, fiber_diameter, images.shape[-1], config.pixel_scale)
    fluxes = aperture_flux(images, weights[:, None], config)  # (num_fibers, bands)
    reference = fluxes[:, config.bands.index(config.normalization_band), None]
    return torch.log10(fluxes / reference)


def spectrum_flux_scale(flux_scale: torch.Tensor, config: GalSpecConfig) -> torch.Tensor:
    """The flux-density scale of the spectra, 1e-17 erg/s/cm2/A, from the image flux scale (nanomaggies)."""
    band = config.bands.index(config.normalization_band)
    return nanomaggies_to_flux_density(flux_scale, config.band_wavelengths[band])


def normalize_images(pixel_values: torch.Tensor, flux_scale: torch.Tensor, config: GalSpecConfig) -> torch.Tensor:
    """Scale images by their flux scale and apply an arcsinh stretch.

    x = asinh(image / (flux_scale * softening)); shape kept, (batch, bands, H, W). Non-finite
    pixels become 0.
    """
    image = torch.nan_to_num(pixel_values.float(), nan=0.0, posinf=0.0, neginf=0.0)
    scale = (flux_scale.float() * config.image_asinh_softening)[:, None, None, None]
    return torch.asinh(image / scale)


def normalize_spectra(flux, ivar, spectrum_scale):
    """Divide flux by the per-galaxy scale (batch,) and scale ivar accordingly (ivar * scale**2)."""
    scale = spectrum_scale[:, None]
    return flux / scale, ivar * scale**2


def denormalize_spectra(mean, sigma, spectrum_scale):
    """Inverse of :func:`normalize_spectra` for predictions: mean and sigma times the scale.

    `spectrum_scale` is (batch,); `mean` and `sigma` are (batch, ..., L).
    """
    shape = (-1,) + (1,) * (mean.dim() - 1)
    scale = spectrum_scale.reshape(shape)
    return mean * scale, sigma * scale


# ----------------------------------------------------------------------------------------
# Spectrum resampling with inverse-variance propagation
# ----------------------------------------------------------------------------------------
def _bin_edges(wavelength: np.ndarray) -> np.ndarray:
    """Pixel edges (L+1,) from pixel centres (L,): midpoints, with the end pixels mirrored.

    A copy of :func:`galspec_hf.spectral.pixel_edges` (this file is self-contained).
    """
    mid = 0.5 * (wavelength[1:] + wavelength[:-1])
    first = wavelength[0] - (mid[0] - wavelength[0])
    last = wavelength[-1] + (wavelength[-1] - mid[-1])
    return np.concatenate([[first], mid, [last]])


def resample_spectrum(wavelength_in, flux, ivar, wavelength_out):
    """Rebin spectra onto a new wavelength grid, conserving flux density, propagating ivar.

    Each output pixel is the overlap-weighted mean of the input pixels it covers (the scheme of
    SpectRes, Carnall 2017, arXiv:1705.05165), using only input pixels with ivar > 0. Its variance
    is sum(w_i**2 / ivar_i) / (sum w_i)**2. Output pixels with no valid input get flux 0 and ivar 0.
    When the output grid is finer than the input, neighbouring output pixels share input noise
    (correlated), which this per-pixel ivar does not describe.

    Parameters
    ----------
    wavelength_in : array, (L_in,)
        Input pixel centres, Angstrom, increasing.
    flux, ivar : array, (L_in,) or (N, L_in)
        Flux density and inverse variance on the input grid.
    wavelength_out : array, (L_out,)
        Output pixel centres, Angstrom, increasing.

    Returns
    -------
    flux_out, ivar_out : numpy arrays, (L_out,) or (N, L_out), float32
    """
    wavelength_in = np.asarray(wavelength_in, dtype=np.float64)
    wavelength_out = np.asarray(wavelength_out, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    ivar = np.asarray(ivar, dtype=np.float64)
    if wavelength_in.ndim != 1 or np.any(np.diff(wavelength_in) <= 0):
        raise ValueError("resample_spectrum: `wavelength_in` must be a 1-D strictly increasing array")
    if wavelength_out.ndim != 1 or np.any(np.diff(wavelength_out) <= 0):
        raise ValueError("resample_spectrum: `wavelength_out` must be a 1-D strictly increasing array")
    if flux.shape != ivar.shape or flux.shape[-1] != wavelength_in.shape[0]:
        raise ValueError(
            f"resample_spectrum: `flux` {flux.shape} and `ivar` {ivar.shape} must have the same shape, "
            f"ending in len(wavelength_in)={wavelength_in.shape[0]}"
        )
    squeeze = flux.ndim == 1
    flux2d = np.atleast_2d(flux)
    ivar2d = np.atleast_2d(ivar)
    good = np.isfinite(flux2d) & np.isfinite(ivar2d) & (ivar2d > 0)
    flux2d = np.where(good, flux2d, 0.0)
    var2d = np.where(good, 1.0 / np.where(good, ivar2d, 1.0), 0.0)

    edges_in = _bin_edges(wavelength_in)
    edges_out = _bin_edges(wavelength_out)
    # Overlap matrix, sparse by construction: each output pixel meets only neighbouring input pixels.
    # (L_out, L_in) overlap lengths in Angstrom, built band by band to keep memory small.
    first = np.clip(np.searchsorted(edges_in, edges_out[:-1], side="right") - 1, 0, len(wavelength_in) - 1)
    last = np.clip(np.searchsorted(edges_in, edges_out[1:], side="left") - 1, 0, len(wavelength_in) - 1)
    width = int((last - first).max()) + 1 if len(first) else 1
    columns = first[:, None] + np.arange(width)[None, :]  # (L_out, width)
    valid_column = columns <= last[:, None]
    columns = np.clip(columns, 0, len(wavelength_in) - 1)
    overlap = np.minimum(edges_out[1:, None], edges_in[columns + 1]) - np.maximum(
        edges_out[:-1, None], edges_in[columns]
    )
    overlap = np.where(valid_column, np.clip(overlap, 0.0, None), 0.0)  # (L_out, width)

    weights = overlap[None, :, :] * good[:, columns]  # (N, L_out, width)
    total = weights.sum(axis=-1)
    safe = np.where(total > 0, total, 1.0)
    flux_out = (weights * flux2d[:, columns]).sum(axis=-1) / safe
    var_out = (weights**2 * var2d[:, columns]).sum(axis=-1) / safe**2
    has_data = (total > 0) & (var_out > 0)
    flux_out = np.where(has_data, flux_out, 0.0).astype(np.float32)
    ivar_out = np.where(has_data, 1.0 / np.where(has_data, var_out, 1.0), 0.0).astype(np.float32)
    if squeeze:
        return flux_out[0], ivar_out[0]
    return flux_out, ivar_out


# ----------------------------------------------------------------------------------------
# The processor
# ----------------------------------------------------------------------------------------
class GalSpecProcessor(FeatureExtractionMixin):
    r"""
    Prepares inputs for GalSpec models and turns predictions back into physical units.

    Images go to the model in nanomaggies per pixel (bands, image_size, image_size), centred on the
    galaxy in the standard sky orientation; spectra on the model's wavelength grid in
    1e-17 erg/s/cm2/A with their inverse variance. The model normalises both internally from the
    image alone (:func:`compute_flux_scale` for images, :func:`spectrum_scales` for spectra);
    :meth:`normalize` and :meth:`postprocess` expose the same transform.

    Args:
        image_size (`int`, *optional*, defaults to 64): side of the model's image, pixels.
        bands (`list[str]`, *optional*, defaults to `["g", "r", "z"]`): band names, channel order.
        pixel_scale (`float`, *optional*, defaults to 0.262): arcsec per pixel.
        wavelength_min, wavelength_max, wavelength_step, wavelength_scale: the model's wavelength grid
            (see :class:`GalSpecConfig`).
        normalization_band, normalization_aperture_diameter, spectrum_normalization, normalization_floor,
            image_asinh_softening, band_wavelengths: the normalisation (see :class:`GalSpecConfig`).
    """

    model_input_names = ["pixel_values", "redshift", "fiber_offset", "spectrum", "spectrum_ivar"]

    def __init__(
        self,
        image_size: int = 64,
        bands: list[str] | None = None,
        band_wavelengths: list[float] | None = None,
        pixel_scale: float = 0.262,
        fiber_diameter: float = 1.5,
        wavelength_min: float = 3600.0,
        wavelength_max: float = 9824.0,
        wavelength_step: float = 0.8,
        wavelength_scale: str = "linear",
        normalization_band: str = "r",
        normalization_aperture_diameter: float = 3.0,
        spectrum_normalization: str = "fiber",
        normalization_floor: float = 0.05,
        image_asinh_softening: float = 0.05,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # A GalSpecConfig validates every value and provides the grid and normalisation.
        self._config = GalSpecConfig(
            image_size=image_size,
            bands=bands,
            band_wavelengths=band_wavelengths,
            pixel_scale=pixel_scale,
            fiber_diameter=fiber_diameter,
            wavelength_min=wavelength_min,
            wavelength_max=wavelength_max,
            wavelength_step=wavelength_step,
            wavelength_scale=wavelength_scale,
            normalization_band=normalization_band,
            normalization_aperture_diameter=normalization_aperture_diameter,
            spectrum_normalization=spectrum_normalization,
            normalization_floor=normalization_floor,
            image_asinh_softening=image_asinh_softening,
            image_patch_size=1,
        )
        self.image_size = image_size
        self.bands = self._config.bands
        self.band_wavelengths = self._config.band_wavelengths
        self.pixel_scale = pixel_scale
        self.fiber_diameter = fiber_diameter
        self.wavelength_min = wavelength_min
        self.wavelength_max = wavelength_max
        self.wavelength_step = wavelength_step
        self.wavelength_scale = wavelength_scale
        self.normalization_band = normalization_band
        self.normalization_aperture_diameter = normalization_aperture_diameter
        self.spectrum_normalization = spectrum_normalization
        self.normalization_floor = normalization_floor
        self.image_asinh_softening = image_asinh_softening

    @classmethod
    def from_config(cls, config: GalSpecConfig) -> GalSpecProcessor:
        """The processor that matches a model configuration."""
        names = (
            "image_size bands band_wavelengths pixel_scale fiber_diameter wavelength_min wavelength_max "
            "wavelength_step wavelength_scale normalization_band normalization_aperture_diameter "
            "spectrum_normalization normalization_floor image_asinh_softening"
        ).split()
        return cls(**{name: getattr(config, name) for name in names})

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("_config", None)
        return output

    @property
    def wavelength(self) -> np.ndarray:
        """The model's wavelength grid, (L,), Angstrom."""
        return model_wavelength_grid(self._config).numpy()

    # ------------------------------------------------------------------
    @staticmethod
    def orient_image(image: np.ndarray, cd_matrix) -> np.ndarray:
        """Bring a (bands, H, W) image to the standard sky orientation using its WCS CD matrix.

        Standard orientation (Legacy Surveys cutouts): FITS axis 1 (array columns) runs towards -RA
        (east to the left, CD1_1 < 0) and axis 2 (array rows) towards +Dec (CD2_2 > 0). Swapped axes
        are transposed and reversed axes flipped; a residual rotation that is not a multiple of
        90 degrees is not resampled.

        Parameters
        ----------
        image : (bands, H, W)
        cd_matrix : 2x2 [[CD1_1, CD1_2], [CD2_1, CD2_2]] (e.g. ``astropy.wcs.WCS.pixel_scale_matrix``)
        """
        cd = np.asarray(cd_matrix, dtype=np.float64)
        if cd.shape != (2, 2) or not np.all(np.isfinite(cd)) or abs(np.linalg.det(cd)) == 0:
            raise ValueError(
                f"GalSpecProcessor.orient_image: `cd_matrix` must be a finite invertible 2x2 matrix, got {cd!r}"
            )
        image = np.asarray(image)
        if abs(cd[0, 1]) > abs(cd[0, 0]):  # RA changes along array rows: swap the axes
            image = np.swapaxes(image, -1, -2)
            cd = cd[:, ::-1]
        if cd[0, 0] > 0:  # RA grows with column index: east must be to the left
            image = image[..., :, ::-1]
        if cd[1, 1] < 0:  # Dec falls with row index: north must be up
            image = image[..., ::-1, :]
        return np.ascontiguousarray(image)

    def orient_cutout(self, cutout) -> np.ndarray:
        """A cutout's (bands, H, W) image in the standard orientation, once its pixel scale is checked.

        ``cutout`` is a :class:`galspec_hf.io.legacy.LegacyCutout` (or anything with ``path``, ``image``,
        ``wcs`` and ``pixel_scale_arcsec``). Raises ``ValueError`` naming the file when its pixel scale
        differs from the model's by more than 1 % (images are not resampled).
        """
        if abs(cutout.pixel_scale_arcsec - self.pixel_scale) > 0.01 * self.pixel_scale:
            raise ValueError(
                f"{cutout.path}: pixel scale {cutout.pixel_scale_arcsec:.4f} arcsec differs from the model's "
                f"{self.pixel_scale} arcsec"
            )
        return self.orient_image(cutout.image, cutout.wcs.celestial.pixel_scale_matrix)

    def crop_image(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """Cut the central image_size x image_size pixels of a (bands, H, W) image.

        The crop of :func:`galspec_hf.sky.centred_crop` (copied: this file is self-contained).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[0] != len(self.bands):
            raise ValueError(
                f"GalSpecProcessor: `{name}` must have shape (bands={len(self.bands)}, H, W) for bands {self.bands}, "
                f"got {image.shape}"
            )
        height, width = image.shape[1:]
        if height < self.image_size or width < self.image_size:
            raise ValueError(
                f"GalSpecProcessor: `{name}` is {height}x{width} pixels, smaller than image_size={self.image_size}"
            )
        top = (height - self.image_size) // 2
        left = (width - self.image_size) // 2
        return image[:, top : top + self.image_size, left : left + self.image_size].astype(np.float32)

    def __call__(
        self,
        images,
        redshift,
        fiber_offset=None,
        spectrum_wavelength=None,
        spectrum=None,
        spectrum_ivar=None,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Prepare a batch.

        Parameters
        ----------
        images : array (B, bands, H, W) or list of (bands, H, W), nanomaggies
            Centred cutouts in the standard orientation; the central image_size pixels are kept.
        redshift : array (B,)
        fiber_offset : array (B, 2) or (B, K, 2), arcsec east/north, optional
        spectrum_wavelength : array (L_in,), Angstrom, optional
            Grid of `spectrum`; when given, spectra are resampled onto the model grid.
        spectrum, spectrum_ivar : arrays (B, L_in), optional
        """
        batch = [self.crop_image(image, name=f"images[{i}]") for i, image in enumerate(images)]
        data: dict[str, Any] = {"pixel_values": np.stack(batch)}
        redshift = np.asarray(redshift, dtype=np.float32).reshape(-1)
        if redshift.shape[0] != len(batch):
            raise ValueError(
                f"GalSpecProcessor: `redshift` must have one value per image ({len(batch)}), got {redshift.shape}"
            )
        data["redshift"] = redshift
        if fiber_offset is not None:
            fiber_offset = np.asarray(fiber_offset, dtype=np.float32)
            if fiber_offset.shape[0] != len(batch) or fiber_offset.shape[-1] != 2:
                raise ValueError(
                    f"GalSpecProcessor: `fiber_offset` must be (B, 2) or (B, K, 2) arcsec with B={len(batch)}, "
                    f"got {fiber_offset.shape}"
                )
            data["fiber_offset"] = fiber_offset
        if spectrum is not None:
            if spectrum_ivar is None:
                raise ValueError("GalSpecProcessor: `spectrum_ivar` is required with `spectrum`")
            flux = np.asarray(spectrum, dtype=np.float64)
            ivar = np.asarray(spectrum_ivar, dtype=np.float64)
            if spectrum_wavelength is not None:
                flux, ivar = resample_spectrum(spectrum_wavelength, flux, ivar, self.wavelength)
            elif flux.shape[-1] != self._config.num_wavelengths:
                raise ValueError(
                    f"GalSpecProcessor: `spectrum` has {flux.shape[-1]} pixels but the model grid has "
                    f"{self._config.num_wavelengths}; pass `spectrum_wavelength` to resample it"
                )
            data["spectrum"] = np.asarray(flux, dtype=np.float32)
            data["spectrum_ivar"] = np.asarray(ivar, dtype=np.float32)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def normalize(self, pixel_values: torch.Tensor, fiber_offset=None, fiber_diameter=None):
        """The model's internal view of a batch: (normalised images, image flux scale, spectrum flux scale).

        One fiber per galaxy: fiber_offset (batch, 2) arcsec (default the centre), fiber_diameter
        (batch,) arcsec (default ``fiber_diameter``); the spectrum scale is (batch,).
        """
        batch = pixel_values.shape[0]
        flux_scale = compute_flux_scale(pixel_values, self._config)
        if fiber_offset is None:
            fiber_offset = torch.zeros(batch, 2)
        if fiber_diameter is None:
            fiber_diameter = torch.full((batch,), float(self.fiber_diameter))
        index = torch.arange(batch)
        scale = spectrum_scales(
            pixel_values,
            flux_scale,
            index,
            torch.as_tensor(fiber_offset),
            torch.as_tensor(fiber_diameter),
            self._config,
        )
        return normalize_images(pixel_values, flux_scale, self._config), flux_scale, scale

    def postprocess(
        self, mean_normalized, sigma_normalized, pixel_values: torch.Tensor, fiber_offset=None, fiber_diameter=None
    ):
        """Turn normalised predictions (B, ..., L) back into 1e-17 erg/s/cm2/A using the images alone."""
        _, _, scale = self.normalize(pixel_values, fiber_offset, fiber_diameter)
        return denormalize_spectra(mean_normalized, sigma_normalized, scale)


__all__ = [
    "GalSpecProcessor",
    "compute_flux_scale",
    "denormalize_spectra",
    "fiber_aperture_weights",
    "model_wavelength_grid",
    "nanomaggies_to_flux_density",
    "normalize_images",
    "normalize_spectra",
    "pixel_offsets_arcsec",
    "resample_spectrum",
    "spectrum_flux_scale",
    "spectrum_scales",
]
