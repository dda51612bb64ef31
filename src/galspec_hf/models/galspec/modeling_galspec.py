"""PyTorch GalSpec model: a masked autoencoder over galaxy image patches and spectrum patches.

Walk-through
------------
1. Normalise from the image alone: images by the galaxy's central-aperture flux (``compute_flux_scale``)
   and an arcsinh stretch; spectra by each fiber's own aperture flux (``spectrum_scales``; ivar
   multiplied by the scale's square).
2. Tokenise (:class:`GalSpecEmbeddings`):
   - image patches, each carrying the sky position (arcsec east/north) of its centre;
   - spectrum patches of ``spectrum_patch_length`` pixels, each carrying a wavelength encoding of
     both log(lambda_obs) and log(lambda_obs / (1 + z)), plus the encoding of the fiber that
     observed it (sky offset and diameter).
3. Mask (:func:`generate_masks`): random spectrum patches, one contiguous wavelength chunk, or the
   whole spectrum (the inference case), and a fraction of the image patches. Masked tokens are
   *dropped* before the encoder (as in ViTMAE).
4. Encode the visible tokens (:class:`GalSpecEncoder`). With no visible spectrum the encoder sees
   only the image, so its output cannot depend on the fiber.
5. Decode (:class:`GalSpecDecoder`): visible tokens go back to their places and mask tokens fill
   the rest, carrying their sky position or wavelength encoding; a trunk of transformer layers
   decodes them. A fiber readout (:class:`GalSpecFiberReadout`) then reads the fiber's spectrum out
   of the trunk with one cross-attention step from the spectrum tokens (plus the fiber's encoding)
   to the image tokens (plus their sky positions); with ``config.readout_modulation`` what it read also
   scales and shifts every spectrum token of that fiber (FiLM). Heads predict, per spectral pixel, the mean and
   log sigma of the normalised flux, and per image pixel the mean and log sigma of the stretched
   image. Without a visible spectrum the trunk never sees the fiber, so it runs once per galaxy and
   each extra fiber costs only the readout.
   The decoder returns a :class:`GalSpecDecoderOutput`: the spectrum in physical units (times the
   fiber's flux scale) and the normalised head outputs that the loss compares.
6. Loss (:meth:`GalSpecForMaskedSpectra.forward_loss`): Gaussian negative log-likelihood with variance
   sigma_model**2 + 1/ivar (or beta-NLL; optionally a penalty on sigma**2 and extra weight on strong-line
   windows), averaged over pixels with ivar > 0 in masked patches; spectrum and image terms are reported
   separately.
7. Conditioning (:meth:`GalSpecForMaskedSpectra.predict_spectra` with ``observed_spectrum``): the observed
   fiber's spectrum is shown whole to the encoder, as visible patches are in training.

The IFU cube (a grid of fibers over a hexagonal footprint) is built from :meth:`predict_spectra` outside
this file, in ``galspec_hf.cube``.

This file imports only torch, transformers and the other files of this folder, so the folder can be
shipped to the Hub as custom code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .configuration_galspec import _LOSS_LINE_WAVELENGTHS_VACUUM_A, GalSpecConfig
from .processing_galspec import (
    compute_flux_scale,
    denormalize_spectra,
    fiber_colours_dex,
    model_wavelength_grid,
    normalize_images,
    normalize_spectra,
    spectrum_scales,
)

MASK_MODES = ("random", "chunk", "full")
#: The unit of the fiber colours in the readout's colour term (``config.readout_colours``) and the decoder's
#: photometry embedding (``config.decoder_photometry``), dex: about the spread of
#: log10(F_g / F_r) among galaxies (0.25 mag in g - r). In this unit a colour term of ~0.1 (a 10 % change of the
#: normalised spectrum per 0.1 dex) is a weight of ~0.1, which the optimiser reaches in a few hundred steps.
COLOUR_UNIT_DEX = 0.1


# ----------------------------------------------------------------------------------------
# Output dataclasses
# ----------------------------------------------------------------------------------------
@dataclass
class GalSpecModelOutput(ModelOutput):
    """
    Output of :class:`GalSpecModel` (the encoder).

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, num_visible, hidden_size)`):
            Encoder states of the visible tokens: visible image tokens first, then visible spectrum
            tokens, each group in its original order; rows past a sample's `num_visible` are padding.
        visible_ids (`torch.LongTensor` of shape `(batch, num_visible)`):
            Index of each row of `last_hidden_state` in the full token sequence
            (image tokens `0..num_image_tokens-1`, then spectrum tokens).
        visible_padding_mask (`torch.BoolTensor` of shape `(batch, num_visible)`):
            True where a row holds a real token, False where it is padding.
        image_mask (`torch.BoolTensor` of shape `(batch, num_image_tokens)`): True where an image token is masked.
        spectrum_mask (`torch.BoolTensor` of shape `(batch, num_spectrum_patches)`): True where a spectrum patch
            is masked.
        flux_scale (`torch.FloatTensor` of shape `(batch,)`): image flux scale, nanomaggies.
        spectrum_scale (`torch.FloatTensor` of shape `(batch,)`): spectrum flux scale of the observing fiber,
            1e-17 erg/s/cm2/A (see `GalSpecConfig.spectrum_normalization`).
        fiber_colours (`torch.FloatTensor` of shape `(batch, num_bands)`, *optional*): the colours of the image
            light inside the observing fiber (log10 flux ratios to the normalisation band), with
            `GalSpecConfig.readout_colours` or `readout_photometry`.
        galaxy_colours (`torch.FloatTensor` of shape `(batch, num_bands)`, *optional*): the same in a fiber of
            `GalSpecConfig.fiber_diameter` at the image centre, the same for every fiber of a galaxy, with
            `GalSpecConfig.decoder_photometry`.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): encoder states after each layer.
        attentions (`tuple(torch.FloatTensor)`, *optional*): attention weights of each layer (eager only).
    """

    last_hidden_state: torch.FloatTensor | None = None
    visible_ids: torch.LongTensor | None = None
    visible_padding_mask: torch.BoolTensor | None = None
    image_mask: torch.BoolTensor | None = None
    spectrum_mask: torch.BoolTensor | None = None
    flux_scale: torch.FloatTensor | None = None
    spectrum_scale: torch.FloatTensor | None = None
    fiber_colours: torch.FloatTensor | None = None
    galaxy_colours: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class GalSpecDecoderOutput(ModelOutput):
    """
    Output of :class:`GalSpecDecoder` (and, spectrum fields only, of :meth:`GalSpecDecoder.read_spectra`).

    Args:
        spectrum_mean (`torch.FloatTensor` of shape `(num_fibers, num_wavelengths)`): predicted flux,
            1e-17 erg/s/cm2/A (the normalised mean times the fiber's `spectrum_scale`).
        spectrum_sigma (`torch.FloatTensor` of shape `(num_fibers, num_wavelengths)`): predicted sigma_model,
            same unit.
        spectrum_log_sigma (`torch.FloatTensor` of shape `(num_fibers, num_wavelengths)`): raw log-sigma head
            output (normalised units; sigma_model / scale = sigma_floor + exp(log_sigma)).
        normalized_spectrum_mean (`torch.FloatTensor` of shape `(num_fibers, num_wavelengths)`): raw mean head
            output, normalised units (flux / spectrum_scale): what the spectrum likelihood compares.
        image_mean (`torch.FloatTensor` of shape `(batch, bands, image_size, image_size)`): reconstructed
            normalised (arcsinh-stretched) image.
        image_log_sigma (`torch.FloatTensor` of shape `(batch, bands, image_size, image_size)`): its log sigma.

    In :meth:`GalSpecDecoder.forward` there is one fiber per galaxy (`num_fibers` = `batch`), the observing one.
    """

    spectrum_mean: torch.FloatTensor | None = None
    spectrum_sigma: torch.FloatTensor | None = None
    spectrum_log_sigma: torch.FloatTensor | None = None
    normalized_spectrum_mean: torch.FloatTensor | None = None
    image_mean: torch.FloatTensor | None = None
    image_log_sigma: torch.FloatTensor | None = None


@dataclass
class GalSpecForMaskedSpectraOutput(ModelOutput):
    """
    Output of :class:`GalSpecForMaskedSpectra`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): spectrum_loss + image_loss_weight * image_loss,
            returned when a spectrum with its ivar is given.
        spectrum_loss (`torch.FloatTensor` of shape `()`, *optional*): Gaussian NLL per spectral pixel
            (normalised units), masked mean over pixels with ivar > 0 in masked patches.
        image_loss (`torch.FloatTensor` of shape `()`, *optional*): Gaussian NLL per image pixel, over masked
            image tokens.
        spectrum_mean (`torch.FloatTensor` of shape `(batch, num_wavelengths)`): predicted flux, 1e-17 erg/s/cm2/A.
        spectrum_sigma (`torch.FloatTensor` of shape `(batch, num_wavelengths)`): predicted sigma_model, same unit.
        spectrum_log_sigma (`torch.FloatTensor` of shape `(batch, num_wavelengths)`): raw log-sigma head output
            (normalised units; sigma_model / scale = sigma_floor + exp(log_sigma)).
        image_mean (`torch.FloatTensor` of shape `(batch, bands, image_size, image_size)`): reconstructed
            normalised (arcsinh-stretched) image.
        image_log_sigma (`torch.FloatTensor` of shape `(batch, bands, image_size, image_size)`): its log sigma.
        spectrum_mask (`torch.BoolTensor` of shape `(batch, num_spectrum_patches)`): True where masked.
        image_mask (`torch.BoolTensor` of shape `(batch, num_image_tokens)`): True where masked.
        spectrum_scale (`torch.FloatTensor` of shape `(batch,)`): flux scale of the spectra, 1e-17 erg/s/cm2/A.
        hidden_states, attentions: encoder states and attention weights, as in :class:`GalSpecModelOutput`.
    """

    loss: torch.FloatTensor | None = None
    spectrum_loss: torch.FloatTensor | None = None
    image_loss: torch.FloatTensor | None = None
    spectrum_mean: torch.FloatTensor | None = None
    spectrum_sigma: torch.FloatTensor | None = None
    spectrum_log_sigma: torch.FloatTensor | None = None
    image_mean: torch.FloatTensor | None = None
    image_log_sigma: torch.FloatTensor | None = None
    spectrum_mask: torch.BoolTensor | None = None
    image_mask: torch.BoolTensor | None = None
    spectrum_scale: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class GalSpecSpectraOutput(ModelOutput):
    """
    Output of :meth:`GalSpecForMaskedSpectra.predict_spectra`.

    Args:
        wavelength (`torch.FloatTensor` of shape `(L,)`): wavelengths, Angstrom (vacuum, observed frame).
        mean (`torch.FloatTensor` of shape `(batch, num_fibers, L)`): predicted flux, 1e-17 erg/s/cm2/A.
        sigma (`torch.FloatTensor` of shape `(batch, num_fibers, L)`): predicted sigma_model, same unit.
        fiber_offset (`torch.FloatTensor` of shape `(batch, num_fibers, 2)`): the fibers, arcsec east/north.
    """

    wavelength: torch.FloatTensor | None = None
    mean: torch.FloatTensor | None = None
    sigma: torch.FloatTensor | None = None
    fiber_offset: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------
# Encodings, patching and masking: small free functions
# ----------------------------------------------------------------------------------------
def fourier_features(x: torch.Tensor, num_features: int, min_period: float, max_period: float) -> torch.Tensor:
    """Sinusoidal features of a continuous coordinate.

    Periods are geometrically spaced between `min_period` and `max_period` (same unit as `x`).
    x: (...,) -> (..., 2 * num_features) = [sin(2 pi x / P_k), cos(2 pi x / P_k)].
    """
    periods = torch.logspace(
        math.log10(min_period), math.log10(max_period), num_features, device=x.device, dtype=torch.float64
    )
    angles = 2.0 * math.pi * x.double()[..., None] / periods
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).float()


def wavelength_encoding(wavelength: torch.Tensor, redshift: torch.Tensor, config: GalSpecConfig) -> torch.Tensor:
    """Redshift-aware encoding of observed wavelengths.

    Parameters
    ----------
    wavelength : (num_tokens,) or (batch, num_tokens), Angstrom, observed frame
    redshift : (batch,)

    Returns
    -------
    (batch, num_tokens, 4 * num_fourier_features)
        First half: features of log(lambda_obs) (the instrument and sky frame); second half: features of
        log(lambda_obs / (1 + z)) (the rest frame). Continuous, so valid for any wavelength grid.
    """
    wavelength = wavelength.to(redshift.device)
    if wavelength.dim() == 1:
        wavelength = wavelength[None, :].expand(redshift.shape[0], -1)
    log_observed = torch.log(wavelength.double())
    log_rest = log_observed - torch.log1p(redshift.double())[:, None]
    low, high = config.wavelength_encoding_periods
    features = config.num_fourier_features
    return torch.cat(
        [fourier_features(log_observed, features, low, high), fourier_features(log_rest, features, low, high)], dim=-1
    )


def sky_encoding(offset_arcsec: torch.Tensor, config: GalSpecConfig) -> torch.Tensor:
    """Encoding of sky offsets (..., 2) arcsec east/north -> (..., 4 * num_fourier_features)."""
    low, high = config.sky_encoding_periods
    features = config.num_fourier_features
    return torch.cat(
        [
            fourier_features(offset_arcsec[..., 0], features, low, high),
            fourier_features(offset_arcsec[..., 1], features, low, high),
        ],
        dim=-1,
    )


def image_patch_offsets(config: GalSpecConfig) -> torch.Tensor:
    """Sky offsets of the image patch centres, (num_image_patches, 2), arcsec east/north of the image centre.

    Patches are numbered row-major over the (row, col) patch grid; rows run north, columns west
    (standard orientation, see ``pixel_offsets_arcsec``).
    """
    patches_per_side = config.image_size // config.image_patch_size
    centre = (config.image_size - 1) / 2.0
    pixel_centre = (
        torch.arange(patches_per_side, dtype=torch.float32) * config.image_patch_size
        + (config.image_patch_size - 1) / 2.0
    )
    north = (pixel_centre - centre) * config.pixel_scale
    east = -(pixel_centre - centre) * config.pixel_scale
    grid_north, grid_east = torch.meshgrid(north, east, indexing="ij")
    return torch.stack([grid_east.reshape(-1), grid_north.reshape(-1)], dim=-1)


def image_token_offsets(config: GalSpecConfig) -> torch.Tensor:
    """Sky offsets of every image token, (num_image_tokens, 2) arcsec east/north (per-band tokens repeat the grid)."""
    offsets = image_patch_offsets(config)
    if config.image_tokens_per_band:
        offsets = offsets.repeat(len(config.bands), 1)
    return offsets


def image_position_features(config: GalSpecConfig) -> torch.Tensor:
    """Sky encoding of every image token, (num_image_tokens, 4F).

    Computed from the config on the fly (cheap), so nothing but weights lives in the state dict.
    """
    return sky_encoding(image_token_offsets(config), config)


def band_features(config: GalSpecConfig) -> torch.Tensor:
    """Wavelength encoding of each image token's band, (num_image_tokens, 2F) (per-band tokens only)."""
    band_log_wavelength = torch.log(torch.tensor(config.band_wavelengths, dtype=torch.float64))
    low, high = config.wavelength_encoding_periods
    features = fourier_features(band_log_wavelength, config.num_fourier_features, low, high)
    return features.repeat_interleave(config.num_image_patches, dim=0)


def readout_distance_bias(relative_offset: torch.Tensor, strength: torch.Tensor, patch_arcsec: float) -> torch.Tensor:
    """Additive attention bias of the local fiber readout: -strength_h * d^2 / (2 p^2).

    relative_offset (fibers, tokens, 2) arcsec of each image token from each fiber, strength (heads,)
    >= 0, p = patch size in arcsec -> (fibers, heads, 1, tokens), broadcast over the spectrum-token queries.
    """
    distance2 = (relative_offset**2).sum(-1) / patch_arcsec**2  # (fibers, tokens)
    return -0.5 * strength[None, :, None, None] * distance2[:, None, None, :]


def patchify_image(images: torch.Tensor, patch_size: int, per_band: bool) -> torch.Tensor:
    """(batch, bands, H, W) -> (batch, num_tokens, values_per_token).

    Joint: (batch, num_patches, bands * p * p). Per band: (batch, bands * num_patches, p * p), band-major.
    """
    batch, bands, height, width = images.shape
    rows, cols = height // patch_size, width // patch_size
    patches = images.reshape(batch, bands, rows, patch_size, cols, patch_size)
    if per_band:
        # (batch, bands, rows, cols, p, p)
        patches = patches.permute(0, 1, 2, 4, 3, 5)
        return patches.reshape(batch, bands * rows * cols, patch_size * patch_size)
    # (batch, rows, cols, bands, p, p)
    patches = patches.permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(batch, rows * cols, bands * patch_size * patch_size)


def unpatchify_image(
    tokens: torch.Tensor, bands: int, image_size: int, patch_size: int, per_band: bool
) -> torch.Tensor:
    """Inverse of :func:`patchify_image`: (batch, num_tokens, values) -> (batch, bands, H, W)."""
    batch = tokens.shape[0]
    side = image_size // patch_size
    if per_band:
        patches = tokens.reshape(batch, bands, side, side, patch_size, patch_size).permute(0, 1, 2, 4, 3, 5)
    else:
        patches = tokens.reshape(batch, side, side, bands, patch_size, patch_size).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(batch, bands, image_size, image_size)


def patchify_spectrum(values: torch.Tensor, patch_length: int) -> torch.Tensor:
    """(batch, L) -> (batch, num_patches, patch_length), zero-padded at the red end."""
    length = values.shape[-1]
    padded = -(-length // patch_length) * patch_length
    if padded != length:
        values = nn.functional.pad(values, (0, padded - length))
    return values.reshape(values.shape[0], -1, patch_length)


def patch_centre_wavelengths(wavelength: torch.Tensor, patch_length: int) -> torch.Tensor:
    """Mean wavelength of each spectrum patch, (num_patches,), extrapolating the grid over the padding."""
    length = wavelength.shape[0]
    num_patches = -(-length // patch_length)
    index = torch.arange(num_patches * patch_length, dtype=torch.float64, device=wavelength.device)
    # extend the grid linearly in log(lambda) past its last pixel (only matters for the padded tail)
    log_wave = torch.log(wavelength.double())
    step = log_wave[-1] - log_wave[-2]
    extended = torch.where(
        index < length, log_wave[index.clamp(max=length - 1).long()], log_wave[-1] + (index - (length - 1)) * step
    )
    return torch.exp(extended.reshape(num_patches, patch_length).mean(dim=-1))


def spectrum_patch_wavelengths(config: GalSpecConfig) -> torch.Tensor:
    """Mean wavelength of each spectrum patch of the model grid, (num_spectrum_patches,), Angstrom, float64."""
    return patch_centre_wavelengths(model_wavelength_grid(config, torch.float64), config.spectrum_patch_length)


def generate_masks(
    noise: torch.Tensor,
    num_spectrum_patches: int,
    num_image_tokens: int,
    config: GalSpecConfig,
) -> tuple[torch.BoolTensor, torch.BoolTensor, torch.LongTensor]:
    """Masks from uniform noise, deterministic for a given noise tensor.

    Parameters
    ----------
    noise : (batch, 2 + num_spectrum_patches + num_image_tokens), values in [0, 1)
        Column 0 picks the spectrum masking mode (by `config.mask_mode_probabilities`), column 1 the
        start of the chunk, the next `num_spectrum_patches` columns rank spectrum patches (the highest
        are masked) and the last `num_image_tokens` rank image tokens.

    Returns
    -------
    spectrum_mask : (batch, num_spectrum_patches), True = masked
    image_mask : (batch, num_image_tokens), True = masked (none when the whole spectrum is masked)
    mode : (batch,), index into ("random", "chunk", "full")
    """
    expected = 2 + num_spectrum_patches + num_image_tokens
    if noise.dim() != 2 or noise.shape[1] != expected:
        raise ValueError(
            f"`noise` must have shape (batch, {expected}) = (batch, 2 + num_spectrum_patches + num_image_tokens), "
            f"got {tuple(noise.shape)}"
        )
    batch = noise.shape[0]
    device = noise.device
    thresholds = torch.tensor(config.mask_mode_probabilities, device=device).cumsum(0)
    mode = torch.bucketize(noise[:, 0].contiguous(), thresholds[:-1], right=True).clamp(max=2)

    num_masked = int(round(config.spectrum_mask_ratio * num_spectrum_patches))
    spectrum_noise = noise[:, 2 : 2 + num_spectrum_patches]
    # random patches: the num_masked patches of highest noise
    rank = spectrum_noise.argsort(dim=1).argsort(dim=1)
    random_mask = rank >= (num_spectrum_patches - num_masked)
    # one contiguous chunk of num_masked patches
    start = (
        (noise[:, 1] * (num_spectrum_patches - num_masked + 1))
        .floor()
        .long()
        .clamp(max=num_spectrum_patches - num_masked)
    )
    position = torch.arange(num_spectrum_patches, device=device)[None, :]
    chunk_mask = (position >= start[:, None]) & (position < start[:, None] + num_masked)
    full_mask = torch.ones(batch, num_spectrum_patches, dtype=torch.bool, device=device)
    spectrum_mask = torch.where(
        (mode == 0)[:, None], random_mask, torch.where((mode == 1)[:, None], chunk_mask, full_mask)
    )

    num_image_masked = int(round(config.image_mask_ratio * num_image_tokens))
    image_noise = noise[:, 2 + num_spectrum_patches :]
    image_rank = image_noise.argsort(dim=1).argsort(dim=1)
    image_mask = (image_rank >= (num_image_tokens - num_image_masked)) & (mode != 2)[:, None]
    return spectrum_mask, image_mask, mode


def gaussian_nll(target, mean, sigma_model, observed_ivar=None):
    """Per-pixel Gaussian negative log-likelihood with variance sigma_model**2 + 1/ivar.

    Pixels with observed_ivar <= 0 get an undefined (zero-information) variance and must be
    excluded by the caller's weights; here their 1/ivar term is set to 0.
    """
    variance = sigma_model**2
    if observed_ivar is not None:
        variance = variance + noise_variance(observed_ivar)
    return 0.5 * (torch.log(2.0 * math.pi * variance) + (target - mean) ** 2 / variance)


def noise_variance(observed_ivar: torch.Tensor) -> torch.Tensor:
    """1 / ivar where ivar > 0, else 0 (pixels without information; the caller's weights exclude them)."""
    good = observed_ivar > 0
    return torch.where(good, 1.0 / torch.where(good, observed_ivar, torch.ones_like(observed_ivar)), 0.0)


def beta_nll(target, mean, sigma_model, observed_ivar, beta: float):
    """Beta-NLL (Seitzer et al. 2022, ICLR): the Gaussian NLL times the gradient-stopped variance**beta.

    Same variance as :func:`gaussian_nll` (sigma_model**2 + 1/ivar); beta = 0 gives the Gaussian NLL.
    """
    nll = gaussian_nll(target, mean, sigma_model, observed_ivar)
    if beta == 0:
        return nll
    return nll * (sigma_model.detach() ** 2 + noise_variance(observed_ivar)) ** beta


def line_window_mask(wavelength: torch.Tensor, redshift: torch.Tensor, config: GalSpecConfig) -> torch.Tensor:
    """True for the pixels within `config.line_window_half_width_kms` of a strong emission line, (batch, L).

    wavelength (L,) observed Angstrom; redshift (batch,). The lines are the configuration file's
    strong-line list (H-alpha, H-beta, [NII], [OIII], [OII], [SII]; vacuum rest wavelengths).
    """
    speed_of_light_kms = 299792.458  # CODATA 2018 (exact)
    rest = wavelength.to(redshift.device, torch.float64)[None, :] / (1.0 + redshift.double()[:, None])  # (batch, L)
    lines = torch.tensor(_LOSS_LINE_WAVELENGTHS_VACUUM_A, dtype=torch.float64, device=redshift.device)
    velocity_kms = speed_of_light_kms * (rest[..., None] / lines - 1.0)  # (batch, L, lines)
    return (velocity_kms.abs() <= config.line_window_half_width_kms).any(dim=-1)


def sigma_from_log_sigma(log_sigma: torch.Tensor, config: GalSpecConfig) -> torch.Tensor:
    """sigma_model (normalised units) of a log-sigma head output: sigma_floor + exp(log_sigma)."""
    return config.sigma_floor + torch.exp(log_sigma.clamp(max=20.0))


def split_spectrum_head(head_output: torch.Tensor, config: GalSpecConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectrum head output (num_fibers, num_patches, 2P) -> mean, log_sigma (num_fibers, num_wavelengths).

    Each patch's head gives P means then P log sigmas; the red-end padding is dropped. Normalised units.
    """
    fibers, patch = head_output.shape[0], config.spectrum_patch_length
    output = head_output.reshape(fibers, -1, 2, patch)
    mean = output[:, :, 0].reshape(fibers, -1)[:, : config.num_wavelengths]
    log_sigma = output[:, :, 1].reshape(fibers, -1)[:, : config.num_wavelengths]
    return mean, log_sigma


def masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(values * weights) / sum(weights), 0 when no weight."""
    weights = weights.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


# ----------------------------------------------------------------------------------------
# Transformer blocks
# ----------------------------------------------------------------------------------------
def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
):
    # (batch, heads, tokens, tokens)
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


def get_attention_interface(config: GalSpecConfig) -> Callable:
    """The attention function of `config._attn_implementation` ("eager", "sdpa", ...) from transformers' registry."""
    if config._attn_implementation in (None, "eager"):
        return eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[config._attn_implementation]


class GalSpecAttention(nn.Module):
    """Multi-head self-attention through transformers' attention interface (eager, SDPA, ...)."""

    def __init__(self, config: GalSpecConfig, hidden_size: int, num_heads: int):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=config.qkv_bias)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        batch, tokens, _ = hidden_states.shape
        # (3, batch, heads, tokens, head_dim)
        qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        attention_interface = get_attention_interface(self.config)
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            is_causal=False,
            **kwargs,
        )
        attn_output = attn_output.reshape(batch, tokens, -1).contiguous()
        return self.proj(attn_output), attn_weights


class GalSpecMLP(nn.Module):
    def __init__(self, config: GalSpecConfig, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class GalSpecPhotometryEmbedding(nn.Module):
    """Embeds colours of the image light (log10 band flux over the normalisation band's, dex; (..., num_bands)) as a
    hidden vector (..., hidden_size): the colours in units of :data:`COLOUR_UNIT_DEX`, then a two-layer MLP."""

    def __init__(self, config: GalSpecConfig, hidden_size: int):
        super().__init__()
        self.fc1 = nn.Linear(len(config.bands), hidden_size)
        # a few inputs of order one: initialised for unit-variance pre-activations (std 1/sqrt(num_bands), not
        # `initializer_range`), so the colours are a visible part of the tokens from the first step
        self.fc1.unit_variance_init = True
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, colours_dex: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1((colours_dex / COLOUR_UNIT_DEX).to(self.fc1.weight.dtype))))


class GalSpecLayer(GradientCheckpointingLayer):
    """Pre-norm transformer layer (attention, then MLP, each with a residual)."""

    def __init__(self, config: GalSpecConfig, hidden_size: int, num_heads: int, intermediate_size: int):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.attention = GalSpecAttention(config, hidden_size, num_heads)
        self.layernorm_after = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = GalSpecMLP(config, hidden_size, intermediate_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, attention_mask=None, output_attentions: bool = False):
        attention_output, attn_weights = self.attention(self.layernorm_before(hidden_states), attention_mask)
        hidden_states = hidden_states + self.dropout(attention_output)
        hidden_states = hidden_states + self.dropout(self.mlp(self.layernorm_after(hidden_states)))
        return hidden_states, attn_weights


class GalSpecEncoder(nn.Module):
    def __init__(self, config: GalSpecConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                GalSpecLayer(config, config.hidden_size, config.num_attention_heads, config.intermediate_size)
                for _ in range(config.num_hidden_layers)
            ]
        )
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False

    def forward(self, hidden_states, attention_mask=None, output_hidden_states=False, output_attentions=False):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, attn_weights = layer(hidden_states, attention_mask)
            if output_hidden_states:
                all_hidden_states = all_hidden_states + (hidden_states,)
            if output_attentions:
                all_attentions = all_attentions + (attn_weights,)
        return self.layernorm(hidden_states), all_hidden_states, all_attentions


# ----------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------
class GalSpecFiberEncoder(nn.Module):
    """Fiber position (arcsec east/north) and diameter (arcsec) -> (..., hidden_size)."""

    def __init__(self, config: GalSpecConfig, hidden_size: int):
        super().__init__()
        self.config = config
        in_features = 4 * config.num_fourier_features + 1
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, fiber_offset: torch.Tensor, fiber_diameter: torch.Tensor) -> torch.Tensor:
        features = torch.cat([sky_encoding(fiber_offset, self.config), torch.log(fiber_diameter)[..., None]], dim=-1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class GalSpecEmbeddings(nn.Module):
    """Turns normalised images and spectra into tokens with their sky / wavelength / fiber encodings."""

    def __init__(self, config: GalSpecConfig):
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        patch_values = config.image_patch_size**2
        if config.image_tokens_per_band:
            self.image_projection = nn.Linear(patch_values, hidden)
            self.band_projection = nn.Linear(2 * config.num_fourier_features, hidden)
        else:
            self.image_projection = nn.Linear(len(config.bands) * patch_values, hidden)
        self.sky_projection = nn.Linear(4 * config.num_fourier_features, hidden)
        # a spectrum patch is [flux * valid, valid]: the model sees which pixels carry information
        self.spectrum_projection = nn.Linear(2 * config.spectrum_patch_length, hidden)
        self.wavelength_projection = nn.Linear(4 * config.num_fourier_features, hidden)
        self.fiber_encoder = GalSpecFiberEncoder(config, hidden)
        self.image_type_embedding = nn.Parameter(torch.zeros(hidden))
        self.spectrum_type_embedding = nn.Parameter(torch.zeros(hidden))

    def embed_images(self, normalized_images: torch.Tensor) -> torch.Tensor:
        """(batch, bands, H, W) -> (batch, num_image_tokens, hidden)."""
        patches = patchify_image(normalized_images, self.config.image_patch_size, self.config.image_tokens_per_band)
        tokens = self.image_projection(patches)
        dtype = tokens.dtype
        tokens = tokens + self.sky_projection(image_position_features(self.config).to(tokens.device, dtype))
        if self.config.image_tokens_per_band:
            tokens = tokens + self.band_projection(band_features(self.config).to(tokens.device, dtype))
        return tokens + self.image_type_embedding

    def spectrum_position_embeddings(self, patch_wavelength, redshift, fiber_offset, fiber_diameter):
        """Wavelength + fiber embedding of each spectrum token, (batch, num_patches, hidden)."""
        dtype = self.wavelength_projection.weight.dtype
        encoding = self.wavelength_projection(wavelength_encoding(patch_wavelength, redshift, self.config).to(dtype))
        fiber = self.fiber_encoder(fiber_offset, fiber_diameter)  # (batch, hidden)
        return encoding + fiber[:, None, :] + self.spectrum_type_embedding

    def embed_spectra(self, flux_patches, valid_patches, patch_wavelength, redshift, fiber_offset, fiber_diameter):
        """(batch, num_patches, patch_length) x 2 -> (batch, num_patches, hidden)."""
        values = torch.cat([flux_patches * valid_patches, valid_patches], dim=-1).to(
            self.spectrum_projection.weight.dtype
        )
        tokens = self.spectrum_projection(values)
        return tokens + self.spectrum_position_embeddings(patch_wavelength, redshift, fiber_offset, fiber_diameter)


# ----------------------------------------------------------------------------------------
# Pretrained base class
# ----------------------------------------------------------------------------------------
class GalSpecPreTrainedModel(PreTrainedModel):
    config_class = GalSpecConfig
    config: GalSpecConfig
    base_model_prefix = "galspec"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["GalSpecLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "unit_variance_init", False):  # see GalSpecPhotometryEmbedding
                std = module.in_features**-0.5
            nn.init.trunc_normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, GalSpecEmbeddings):
            nn.init.trunc_normal_(module.image_type_embedding, std=std)
            nn.init.trunc_normal_(module.spectrum_type_embedding, std=std)
        elif isinstance(module, GalSpecFiberReadout):
            if module.modulation is not None:  # start as the identity: scale 1, shift 0
                nn.init.zeros_(module.modulation.weight)
                nn.init.zeros_(module.modulation.bias)
            if module.colour_slope is not None:  # start without a colour term
                nn.init.zeros_(module.colour_slope.weight)
            if module.local:
                # distance-penalty strengths from 4 down to 4 / 2^(heads - 1) (a range of localities, as ALiBi's
                # slopes), stored before softplus: softplus^-1(s) = log(expm1(s))
                heads = module.distance_strength.numel()
                strength = 4.0 * 2.0 ** -torch.arange(heads, dtype=torch.float32)
                module.distance_strength.copy_(torch.log(torch.expm1(strength)))
        elif isinstance(module, GalSpecDecoder):
            for parameter in (
                module.image_mask_token,
                module.spectrum_mask_token,
                module.image_type_embedding,
            ):
                nn.init.trunc_normal_(parameter, std=std)
            if module.image_summary is not None:  # start without the summary
                nn.init.zeros_(module.image_summary.weight)
                nn.init.zeros_(module.image_summary.bias)


def broadcast_fiber_diameter(fiber_diameter, batch: int, num_fibers: int, config: GalSpecConfig, device):
    """Fiber diameters (arcsec) for `batch` galaxies x `num_fibers` fibers, flattened to (batch * num_fibers,).

    Accepts None (``config.fiber_diameter``), a scalar, one value per galaxy (batch,), or one per fiber
    (batch * num_fibers,) / (batch, num_fibers). Raises ValueError for another shape or a value <= 0.
    """
    if fiber_diameter is None:
        fiber_diameter = config.fiber_diameter
    diameter = torch.as_tensor(fiber_diameter, dtype=torch.float32, device=device)
    total = batch * num_fibers
    diameter = diameter.expand(total) if diameter.dim() == 0 else diameter.reshape(-1)
    if diameter.shape[0] == batch and num_fibers != 1:
        diameter = diameter.repeat_interleave(num_fibers)
    if diameter.shape[0] != total:
        raise ValueError(
            f"`fiber_diameter` must be a scalar or one value per galaxy or fiber, got {diameter.shape[0]}"
        )
    if torch.any(diameter <= 0):
        raise ValueError(f"`fiber_diameter` must be positive (arcsec), got {diameter.tolist()}")
    return diameter


def check_observed_fiber(
    config: GalSpecConfig, batch: int, device, observed_spectrum, observed_ivar, observed_fiber_offset=None,
    observed_fiber_diameter=None,
):
    """One observed fiber per galaxy, checked and made tensors on `device`: the spectrum and ivar (batch, L) on the
    model grid, the offset (batch, 2) arcsec east/north (None stays None: the image centre) and the diameter
    (batch,) arcsec (None stays None: ``config.fiber_diameter``). Raises ValueError naming the argument."""
    if observed_ivar is None:
        raise ValueError("`observed_ivar` is required with `observed_spectrum`")
    observed = torch.as_tensor(observed_spectrum, dtype=torch.float32, device=device)
    observed_ivar = torch.as_tensor(observed_ivar, dtype=torch.float32, device=device)
    for name, value in (("observed_spectrum", observed), ("observed_ivar", observed_ivar)):
        if tuple(value.shape) != (batch, config.num_wavelengths):
            raise ValueError(
                f"`{name}` must have shape ({batch}, {config.num_wavelengths}) (the model grid), "
                f"got {tuple(value.shape)}"
            )
    if observed_fiber_offset is not None:
        observed_fiber_offset = torch.as_tensor(observed_fiber_offset, dtype=torch.float32, device=device)
        if tuple(observed_fiber_offset.shape) != (batch, 2):
            raise ValueError(
                f"`observed_fiber_offset` must have shape ({batch}, 2), got {tuple(observed_fiber_offset.shape)}"
            )
    if observed_fiber_diameter is not None:
        observed_fiber_diameter = broadcast_fiber_diameter(observed_fiber_diameter, batch, 1, config, device)
    return observed, observed_ivar, observed_fiber_offset, observed_fiber_diameter


def _check_inputs(config: GalSpecConfig, pixel_values, redshift, fiber_offset=None, spectrum=None, spectrum_ivar=None):
    """Shape checks with errors that name the argument."""
    expected_image = (len(config.bands), config.image_size, config.image_size)
    if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected_image:
        raise ValueError(
            f"`pixel_values` must have shape (batch, {expected_image[0]}, {expected_image[1]}, {expected_image[2]}) "
            f"(bands {config.bands}, image_size {config.image_size}), got {tuple(pixel_values.shape)}"
        )
    batch = pixel_values.shape[0]
    if redshift.dim() != 1 or redshift.shape[0] != batch:
        raise ValueError(f"`redshift` must have shape ({batch},), got {tuple(redshift.shape)}")
    if torch.any(redshift <= -1):
        raise ValueError("`redshift` must be greater than -1")
    if fiber_offset is not None and (fiber_offset.shape[0] != batch or fiber_offset.shape[-1] != 2):
        raise ValueError(
            f"`fiber_offset` must have shape ({batch}, 2) or ({batch}, K, 2), got {tuple(fiber_offset.shape)}"
        )
    if spectrum is not None:
        expected = (batch, config.num_wavelengths)
        if tuple(spectrum.shape) != expected:
            raise ValueError(f"`spectrum` must have shape {expected} (the model grid), got {tuple(spectrum.shape)}")
        if spectrum_ivar is None or tuple(spectrum_ivar.shape) != expected:
            got = None if spectrum_ivar is None else tuple(spectrum_ivar.shape)
            raise ValueError(f"`spectrum_ivar` must have shape {expected} like `spectrum`, got {got}")


# ----------------------------------------------------------------------------------------
# The encoder model
# ----------------------------------------------------------------------------------------
class GalSpecModel(GalSpecPreTrainedModel):
    """The GalSpec encoder: normalisation, tokenisation, masking (dropping masked tokens), transformer."""

    def __init__(self, config: GalSpecConfig):
        super().__init__(config)
        self.config = config
        self.embeddings = GalSpecEmbeddings(config)
        self.encoder = GalSpecEncoder(config)
        self.post_init()

    @property
    def wavelength(self) -> torch.Tensor:
        """The model's wavelength grid, (num_wavelengths,), Angstrom, float64 (computed from the config)."""
        return model_wavelength_grid(self.config, torch.float64)

    @property
    def patch_wavelength(self) -> torch.Tensor:
        """Mean wavelength of each spectrum patch, (num_spectrum_patches,), Angstrom, float64."""
        return spectrum_patch_wavelengths(self.config)

    def _fiber_inputs(self, batch: int, fiber_offset, fiber_diameter, device):
        if fiber_offset is None:
            fiber_offset = torch.zeros(batch, 2, device=device)
        return fiber_offset.float(), broadcast_fiber_diameter(fiber_diameter, batch, 1, self.config, device)

    def forward(
        self,
        pixel_values: torch.Tensor,
        redshift: torch.Tensor,
        spectrum: torch.Tensor | None = None,
        spectrum_ivar: torch.Tensor | None = None,
        fiber_offset: torch.Tensor | None = None,
        fiber_diameter: torch.Tensor | None = None,
        spectrum_mask: torch.BoolTensor | None = None,
        image_mask: torch.BoolTensor | None = None,
        noise: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> GalSpecModelOutput:
        r"""
        Encode a batch of galaxies.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, bands, image_size, image_size)`):
                Images in nanomaggies per pixel, centred, standard sky orientation.
            redshift (`torch.FloatTensor` of shape `(batch,)`): redshift of each galaxy.
            spectrum (`torch.FloatTensor` of shape `(batch, num_wavelengths)`, *optional*):
                Observed fiber spectrum on the model grid, 1e-17 erg/s/cm2/A. Without it the whole
                spectrum is masked and the encoder sees only the image.
            spectrum_ivar (`torch.FloatTensor` of shape `(batch, num_wavelengths)`, *optional*):
                Inverse variance of `spectrum`; pixels with ivar <= 0 carry no information.
            fiber_offset (`torch.FloatTensor` of shape `(batch, 2)`, *optional*, defaults to the image centre):
                Position of the observing fiber, arcsec east and north of the image centre.
            fiber_diameter (`torch.FloatTensor` of shape `(batch,)` or scalar, *optional*):
                Fiber diameter, arcsec; defaults to `config.fiber_diameter`.
            spectrum_mask (`torch.BoolTensor` of shape `(batch, num_spectrum_patches)`, *optional*):
                Explicit spectrum mask, True = masked. Overrides `noise` for the spectrum.
            image_mask (`torch.BoolTensor` of shape `(batch, num_image_tokens)`, *optional*):
                Explicit image mask, True = masked. Overrides `noise` for the image.
            noise (`torch.FloatTensor` of shape `(batch, 2 + num_spectrum_patches + num_image_tokens)`, *optional*):
                Uniform noise that makes the random masking deterministic (see :func:`generate_masks`).
                When neither masks nor noise are given, masks are drawn with `torch.rand`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_attentions = bool(output_attentions)
        output_hidden_states = bool(output_hidden_states)
        _check_inputs(self.config, pixel_values, redshift, fiber_offset, spectrum, spectrum_ivar)
        if fiber_offset is not None and fiber_offset.dim() != 2:
            raise ValueError(f"`fiber_offset` must have shape (batch, 2) in forward, got {tuple(fiber_offset.shape)}")
        batch, device = pixel_values.shape[0], pixel_values.device
        num_spectrum = self.config.num_spectrum_patches
        num_image = self.config.num_image_tokens
        fiber_offset, fiber_diameter = self._fiber_inputs(batch, fiber_offset, fiber_diameter, device)

        # 1. normalisation from the image alone
        flux_scale = compute_flux_scale(pixel_values, self.config)  # (batch,)
        galaxy_index = torch.arange(batch, device=device)
        # (batch,): the observing fiber's scale (its own aperture flux, or the central one)
        spectrum_scale = spectrum_scales(
            pixel_values, flux_scale, galaxy_index, fiber_offset, fiber_diameter, self.config
        )
        images = normalize_images(pixel_values, flux_scale, self.config)  # (batch, bands, H, W)
        colours = None
        if self.config.uses_fiber_colours:  # (batch, bands): the observing fiber's photometry, for the readout
            colours = fiber_colours_dex(pixel_values, galaxy_index, fiber_offset, fiber_diameter, self.config)
        galaxy_colours = None
        if self.config.decoder_photometry:  # (batch, bands): the central photometry, for the decoder's trunk
            centre = torch.zeros(batch, 2, device=device)
            diameter = torch.full((batch,), self.config.fiber_diameter, device=device)
            galaxy_colours = fiber_colours_dex(pixel_values, galaxy_index, centre, diameter, self.config)

        # 2. masks
        if spectrum_mask is None or image_mask is None:
            if noise is None:
                noise = torch.rand(batch, 2 + num_spectrum + num_image, device=device)
            noise_spectrum_mask, noise_image_mask, _ = generate_masks(noise, num_spectrum, num_image, self.config)
            spectrum_mask = noise_spectrum_mask if spectrum_mask is None else spectrum_mask
            image_mask = noise_image_mask if image_mask is None else image_mask
        if spectrum is None:
            spectrum_mask = torch.ones(batch, num_spectrum, dtype=torch.bool, device=device)
        for name, mask, size in (
            ("spectrum_mask", spectrum_mask, num_spectrum),
            ("image_mask", image_mask, num_image),
        ):
            if tuple(mask.shape) != (batch, size):
                raise ValueError(f"`{name}` must have shape ({batch}, {size}), got {tuple(mask.shape)}")
        spectrum_mask, image_mask = spectrum_mask.bool(), image_mask.bool()
        if torch.any(image_mask.all(dim=1) & spectrum_mask.all(dim=1)):
            raise ValueError(
                "`image_mask` masks every image token of a galaxy whose spectrum is masked too: nothing is visible"
            )

        # 3. tokens, (batch, num_image_tokens + num_spectrum_patches, hidden)
        image_tokens = self.embeddings.embed_images(images)
        if spectrum is not None:
            flux, ivar = normalize_spectra(spectrum.float(), spectrum_ivar.float(), spectrum_scale)
            valid = (ivar > 0) & torch.isfinite(flux) & torch.isfinite(ivar)
            flux = torch.where(valid, flux, torch.zeros_like(flux))
            spectrum_tokens = self.embeddings.embed_spectra(
                patchify_spectrum(flux, self.config.spectrum_patch_length),
                patchify_spectrum(valid.float(), self.config.spectrum_patch_length),
                self.patch_wavelength,
                redshift,
                fiber_offset,
                fiber_diameter,
            )
            tokens = torch.cat([image_tokens, spectrum_tokens], dim=1)
        else:
            tokens = image_tokens  # the encoder never sees the fiber when no spectrum is given
        visible = ~image_mask
        if spectrum is not None:
            visible = torch.cat([visible, ~spectrum_mask], dim=1)

        # 4. drop masked tokens: visible ones first, in order; pad to the longest visible set
        num_visible = visible.sum(dim=1)
        max_visible = int(num_visible.max())
        order = torch.argsort((~visible).to(torch.int8), dim=1, stable=True)
        visible_ids = order[:, :max_visible]  # (batch, max_visible)
        hidden_states = torch.gather(tokens, 1, visible_ids[..., None].expand(-1, -1, tokens.shape[-1]))
        padding_mask = torch.arange(max_visible, device=device)[None, :] < num_visible[:, None]
        attention_mask = None
        if not bool(padding_mask.all()):
            # additive mask over keys, (batch, 1, 1, max_visible)
            attention_mask = torch.zeros(batch, 1, 1, max_visible, dtype=hidden_states.dtype, device=device)
            attention_mask = attention_mask.masked_fill(
                ~padding_mask[:, None, None, :], torch.finfo(hidden_states.dtype).min
            )

        # 5. encoder
        last_hidden_state, all_hidden_states, all_attentions = self.encoder(
            hidden_states,
            attention_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        output = GalSpecModelOutput(
            last_hidden_state=last_hidden_state,
            visible_ids=visible_ids,
            visible_padding_mask=padding_mask,
            image_mask=image_mask,
            spectrum_mask=spectrum_mask,
            flux_scale=flux_scale,
            spectrum_scale=spectrum_scale,
            fiber_colours=colours,
            galaxy_colours=galaxy_colours,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------
# Decoder and the full model
# ----------------------------------------------------------------------------------------
class GalSpecFiberReadout(nn.Module):
    """Reads the spectrum of one fiber out of a galaxy's decoded tokens: one cross-attention step.

    Each spectrum token (a wavelength chunk of the galaxy, decoded without any fiber) asks the image
    tokens what lies under the fiber: its query is its own state plus the fiber's encoding (position
    and diameter), the keys are the image tokens' states plus their sky positions. Everything that
    does not depend on the fiber (the spectrum tokens' queries, the image keys and values) is
    computed once per galaxy by :meth:`prepare`; a fiber then costs one attention over the image
    tokens, an output projection and the head. This is what makes a cube cheap.

    With ``config.fiber_readout_local`` (the default) the readout is *local*: the keys carry each
    image token's sky offset relative to the fiber instead of its absolute position, the query
    carries only the fiber's diameter, and each head adds :func:`readout_distance_bias` (a learnt
    Gaussian penalty on the token-fiber distance) to its attention logits. The same sky around a
    fiber then reads out the same way anywhere on the galaxy, fibers between patch centres get a
    smooth weighting of the nearby patches, and positions far from any training fiber (the outskirts
    of an IFU footprint) are no extrapolation of an absolute-position encoding.
    """

    def __init__(self, config: GalSpecConfig):
        super().__init__()
        self.config = config
        hidden = config.decoder_hidden_size
        self.num_heads = config.decoder_num_attention_heads
        self.head_dim = hidden // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.attention_dropout = config.attention_probs_dropout_prob
        self.fiber_encoder = GalSpecFiberEncoder(config, hidden)
        self.query_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.key_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.q_proj = nn.Linear(hidden, hidden, bias=config.qkv_bias)
        self.fiber_query = nn.Linear(hidden, hidden, bias=False)
        self.k_proj = nn.Linear(hidden, hidden, bias=config.qkv_bias)
        self.key_position = nn.Linear(4 * config.num_fourier_features, hidden, bias=False)
        self.v_proj = nn.Linear(hidden, hidden, bias=config.qkv_bias)
        self.o_proj = nn.Linear(hidden, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.spectrum_head = nn.Linear(hidden, 2 * config.spectrum_patch_length)
        self.local = config.fiber_readout_local
        # per-fiber scale and shift of the spectrum tokens from the readout's pooled output (zero-initialised)
        self.modulation = nn.Linear(hidden, 2 * hidden) if config.readout_modulation else None
        # a linear term of the fiber's colours added to its normalised mean spectrum, per wavelength (zero-initialised)
        self.colour_slope = (
            nn.Linear(len(config.bands), config.num_spectrum_patches * config.spectrum_patch_length, bias=False)
            if config.readout_colours else None
        )  # fmt: skip
        # the fiber's colours, embedded and mixed into every spectrum token by one pre-norm MLP
        self.photometry_embedding, self.photometry_norm, self.photometry_mlp = (
            (GalSpecPhotometryEmbedding(config, hidden), nn.LayerNorm(hidden, eps=config.layer_norm_eps),
             GalSpecMLP(config, hidden, hidden))
            if config.readout_photometry else (None, None, None)
        )  # fmt: skip
        if self.local:
            # per-head strength of the distance penalty before softplus (set in _init_weights)
            self.distance_strength = nn.Parameter(torch.zeros(self.num_heads))

    def prepare(self, image_states, spectrum_states) -> dict[str, torch.Tensor]:
        """The fiber-independent part, once per galaxy.

        image_states (batch, num_image_tokens, hidden), spectrum_states (batch, num_patches, hidden)
        -> queries (batch, num_patches, hidden), keys and values (batch, num_image_tokens, hidden), and
        the spectrum states for the residual.
        """
        image = self.key_norm(image_states)
        key = self.k_proj(image)
        if not self.local:  # absolute positions; the local readout adds relative ones per fiber
            key = key + self.key_position(image_position_features(self.config).to(image.device, image.dtype))
        return {
            "query": self.q_proj(self.query_norm(spectrum_states)),
            "key": key,
            "value": self.v_proj(image),
            "residual": spectrum_states,
        }

    def forward(
        self, prepared: dict[str, torch.Tensor], galaxy_index, fiber_offset, fiber_diameter, colours=None
    ) -> torch.Tensor:
        """Spectrum head output for a batch of fibers, (num_fibers, num_patches, 2 * spectrum_patch_length).

        galaxy_index (num_fibers,) says which galaxy of `prepared` each fiber lies on; colours (num_fibers,
        num_bands), needed with `config.readout_colours` or `readout_photometry`: each fiber's
        :func:`~galspec_hf.models.galspec.processing_galspec.fiber_colours_dex`.
        """
        if self.config.uses_fiber_colours and colours is None:
            raise ValueError(
                "this model's readout uses the fibers' colours (config.readout_colours / readout_photometry): pass "
                "`colours`"
            )
        dtype = prepared["query"].dtype
        # the local readout's query knows the fiber's size, not where it is
        fiber = self.fiber_encoder(torch.zeros_like(fiber_offset) if self.local else fiber_offset, fiber_diameter)
        query = prepared["query"][galaxy_index] + self.fiber_query(fiber.to(dtype))[:, None, :]
        key, value = prepared["key"][galaxy_index], prepared["value"][galaxy_index]
        bias = None
        if self.local:
            token_offsets = image_token_offsets(self.config).to(fiber_offset.device)  # (tokens, 2) arcsec
            relative = token_offsets[None] - fiber_offset[:, None].float()  # (num_fibers, tokens, 2)
            key = key + self.key_position(sky_encoding(relative, self.config).to(dtype))
            patch_arcsec = self.config.image_patch_size * self.config.pixel_scale
            strength = nn.functional.softplus(self.distance_strength.float())
            bias = readout_distance_bias(relative, strength, patch_arcsec).to(dtype)
        fibers, patches, hidden = query.shape
        # (num_fibers, heads, tokens, head_dim)
        query = query.reshape(fibers, patches, self.num_heads, self.head_dim).transpose(1, 2)
        key = key.reshape(fibers, -1, self.num_heads, self.head_dim).transpose(1, 2)
        value = value.reshape(fibers, -1, self.num_heads, self.head_dim).transpose(1, 2)
        attention_interface = get_attention_interface(self.config)
        attn_output, _ = attention_interface(
            self,
            query,
            key,
            value,
            bias,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            is_causal=False,
        )
        attn_output = attn_output.reshape(fibers, patches, hidden)
        states = prepared["residual"][galaxy_index] + self.o_proj(attn_output)
        if self.photometry_mlp is not None:
            # (num_fibers, 1, hidden): the fiber's colours on every token, then an MLP, so their effect depends on
            # each token's rest wavelength
            coloured = states + self.photometry_embedding(colours)[:, None].to(dtype)
            states = states + self.photometry_mlp(self.photometry_norm(coloured))
        if self.modulation is not None:
            # (num_fibers, 1, hidden) each: what the fiber read, pooled over wavelength, reshapes every token
            scale, shift = self.modulation(attn_output.mean(dim=1, keepdim=True)).chunk(2, dim=-1)
            states = states * (1.0 + scale) + shift
        head_output = self.spectrum_head(self.output_norm(states))  # (num_fibers, num_patches, 2 * patch_length)
        if self.colour_slope is not None:
            # the fiber's colours in units of COLOUR_UNIT_DEX times a learnt spectrum per band, added to the means:
            # a linear SED term at every fiber
            term = self.colour_slope((colours / COLOUR_UNIT_DEX).to(dtype)).reshape(fibers, patches, 1, -1)
            head_output = (head_output.reshape(fibers, patches, 2, -1) + torch.cat([term, torch.zeros_like(term)], 2)
                           ).reshape(fibers, patches, -1)  # fmt: skip
        return head_output


class GalSpecDecoder(nn.Module):
    """Lighter transformer that fills in masked image patches and spectrum patches, with likelihood heads.

    As ViTMAE's decoder: :meth:`embed` puts the encoder's visible tokens back in their places, with mask
    tokens elsewhere, and adds the decoder's position embeddings; :meth:`trunk` runs the transformer layers
    over the image tokens and the spectrum tokens (wavelength encodings only: the fiber does not enter the
    trunk); :meth:`read_spectra` then reads each fiber's spectrum out of it (:class:`GalSpecFiberReadout`)
    and brings it to physical units. Visible spectrum tokens come from the encoder and carry the observing
    fiber; without them, the trunk's work is shared by every fiber on the galaxy
    (:meth:`GalSpecForMaskedSpectra.predict_spectra`).
    """

    def __init__(self, config: GalSpecConfig):
        super().__init__()
        self.config = config
        hidden = config.decoder_hidden_size
        features = config.num_fourier_features
        self.decoder_embed = nn.Linear(config.hidden_size, hidden)
        self.image_mask_token = nn.Parameter(torch.zeros(hidden))
        self.spectrum_mask_token = nn.Parameter(torch.zeros(hidden))
        self.image_type_embedding = nn.Parameter(torch.zeros(hidden))
        self.sky_projection = nn.Linear(4 * features, hidden)
        if config.image_tokens_per_band:
            self.band_projection = nn.Linear(2 * features, hidden)
        self.wavelength_projection = nn.Linear(4 * features, hidden)
        self.layers = nn.ModuleList(
            [
                GalSpecLayer(config, hidden, config.decoder_num_attention_heads, config.decoder_intermediate_size)
                for _ in range(config.decoder_num_hidden_layers)
            ]
        )
        self.layernorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        # heads: (mean, log sigma) for every pixel of a token
        image_values = config.image_patch_size**2 * (1 if config.image_tokens_per_band else len(config.bands))
        self.image_head = nn.Linear(hidden, 2 * image_values)
        self.readout = GalSpecFiberReadout(config)
        # the visible image tokens' mean state, projected onto every spectrum token (zero-initialised)
        self.image_summary = nn.Linear(hidden, hidden) if config.decoder_image_summary else None
        # the galaxy's central colours, embedded onto every spectrum token (trained from a random start)
        self.photometry_embedding = GalSpecPhotometryEmbedding(config, hidden) if config.decoder_photometry else None

    def image_positions(self) -> torch.Tensor:
        """Decoder position embedding of every image token, (num_image_tokens, hidden)."""
        dtype = self.sky_projection.weight.dtype
        device = self.sky_projection.weight.device
        position = self.sky_projection(image_position_features(self.config).to(device, dtype))
        if self.config.image_tokens_per_band:
            position = position + self.band_projection(band_features(self.config).to(position.device, dtype))
        return position + self.image_type_embedding

    def spectrum_positions(self, redshift: torch.Tensor) -> torch.Tensor:
        """Decoder wavelength embedding of the spectrum tokens, (batch, num_spectrum_patches, hidden)."""
        dtype = self.wavelength_projection.weight.dtype
        encoding = wavelength_encoding(spectrum_patch_wavelengths(self.config), redshift, self.config)
        return self.wavelength_projection(encoding.to(dtype))

    def embed(self, encoder_output: GalSpecModelOutput, redshift: torch.Tensor) -> torch.Tensor:
        """Decoder input, (batch, num_image_tokens + num_spectrum_patches, decoder_hidden_size).

        The encoder's visible tokens go back to their places (`encoder_output.visible_ids`), mask tokens
        fill the rest, and every token gets its decoder position: sky position for image tokens,
        wavelength encoding at `redshift` (batch,) for spectrum tokens.
        """
        visible_states = self.decoder_embed(encoder_output.last_hidden_state)
        batch, dtype = visible_states.shape[0], visible_states.dtype
        full = torch.cat(
            [
                self.image_mask_token.to(dtype).expand(batch, self.config.num_image_tokens, -1),
                self.spectrum_mask_token.to(dtype).expand(batch, self.config.num_spectrum_patches, -1),
            ],
            dim=1,
        )
        ids = encoder_output.visible_ids[..., None].expand(-1, -1, full.shape[-1])
        # padding rows write back the mask token they would overwrite
        values = torch.where(
            encoder_output.visible_padding_mask[..., None], visible_states, torch.gather(full, 1, ids)
        )
        full = full.scatter(1, ids, values)
        # (batch, hidden) vectors added to every spectrum token of a galaxy, so the spectrum starts from what the
        # whole image says rather than having to find it by attention
        per_galaxy = []
        num_image = self.config.num_image_tokens
        if self.image_summary is not None:  # the mean of the visible image tokens
            is_image = (encoder_output.visible_ids < num_image) & encoder_output.visible_padding_mask
            weight = is_image[..., None].to(dtype)
            summary = (visible_states * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)
            per_galaxy.append(self.image_summary(summary))
        if self.photometry_embedding is not None:  # the central colours, in units of COLOUR_UNIT_DEX
            if encoder_output.galaxy_colours is None:
                raise ValueError("this model's decoder uses the galaxy's central colours (config.decoder_photometry):"
                                 " `encoder_output.galaxy_colours` is None")  # fmt: skip
            per_galaxy.append(self.photometry_embedding(encoder_output.galaxy_colours).to(dtype))
        if per_galaxy:
            added = torch.stack(per_galaxy).sum(dim=0)[:, None]  # (batch, 1, hidden)
            full = torch.cat([full[:, :num_image], full[:, num_image:] + added], dim=1)
        positions = torch.cat(
            [self.image_positions()[None].expand(batch, -1, -1), self.spectrum_positions(redshift)], dim=1
        )
        return full + positions.to(dtype)

    def trunk(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the transformer layers on :meth:`embed`'s output: the fiber-independent work, once per galaxy.

        Returns the image head output (batch, num_image_tokens, 2 * values per token: means, then log
        sigmas) and the readout's preparation (see :meth:`GalSpecFiberReadout.prepare`).
        """
        for layer in self.layers:
            hidden_states, _ = layer(hidden_states)
        hidden_states = self.layernorm(hidden_states)
        num_image = self.config.num_image_tokens
        image_states, spectrum_states = hidden_states[:, :num_image], hidden_states[:, num_image:]
        return self.image_head(image_states), self.readout.prepare(image_states, spectrum_states)

    def read_spectra(
        self,
        prepared: dict[str, torch.Tensor],
        galaxy_index: torch.Tensor,
        fiber_offset: torch.Tensor,
        fiber_diameter: torch.Tensor,
        spectrum_scale: torch.Tensor,
        colours: torch.Tensor | None = None,
    ) -> GalSpecDecoderOutput:
        """The spectra of a batch of fibers, from :meth:`trunk`'s `prepared` readout.

        galaxy_index (num_fibers,) says which galaxy of `prepared` each fiber lies on; fiber_offset
        (num_fibers, 2) and fiber_diameter (num_fibers,) are in arcsec; spectrum_scale (num_fibers,) is each
        fiber's flux scale (1e-17 erg/s/cm2/A) that turns the normalised head output into physical units;
        colours (num_fibers, num_bands), with `config.readout_colours` or `readout_photometry`: each fiber's photometry
        (:func:`~galspec_hf.models.galspec.processing_galspec.fiber_colours_dex`).
        Returns a :class:`GalSpecDecoderOutput` with its spectrum fields.
        """
        head_output = self.readout(prepared, galaxy_index, fiber_offset, fiber_diameter, colours)
        mean_norm, log_sigma = split_spectrum_head(head_output, self.config)
        sigma_norm = sigma_from_log_sigma(log_sigma, self.config)
        mean, sigma = denormalize_spectra(mean_norm.float(), sigma_norm.float(), spectrum_scale.float())
        return GalSpecDecoderOutput(
            spectrum_mean=mean, spectrum_sigma=sigma, spectrum_log_sigma=log_sigma, normalized_spectrum_mean=mean_norm
        )

    def forward(
        self,
        encoder_output: GalSpecModelOutput,
        redshift: torch.Tensor,
        fiber_offset: torch.Tensor,
        fiber_diameter: torch.Tensor,
    ) -> GalSpecDecoderOutput:
        r"""
        Decode a batch of encoded galaxies: the spectrum of each galaxy's fiber and the reconstructed image.

        Args:
            encoder_output (:class:`GalSpecModelOutput`): the encoder's output for the batch (its visible
                tokens, their places, and the observing fibers' `spectrum_scale`).
            redshift (`torch.FloatTensor` of shape `(batch,)`).
            fiber_offset (`torch.FloatTensor` of shape `(batch, 2)`): each galaxy's fiber, arcsec east/north.
            fiber_diameter (`torch.FloatTensor` of shape `(batch,)`): its diameter, arcsec.
        """
        config = self.config
        image_output, prepared = self.trunk(self.embed(encoder_output, redshift))
        batch = image_output.shape[0]
        galaxy_index = torch.arange(batch, device=image_output.device)
        scale = encoder_output.spectrum_scale  # (batch,): the observing fiber's
        spectra = self.read_spectra(prepared, galaxy_index, fiber_offset, fiber_diameter, scale,
                                    encoder_output.fiber_colours)  # fmt: skip
        # (batch, num_image_tokens, mean / log sigma, values per token) -> two (batch, bands, H, W) images
        image_tokens = image_output.reshape(batch, config.num_image_tokens, 2, -1)
        image_mean, image_log_sigma = (
            unpatchify_image(
                image_tokens[:, :, part],
                len(config.bands),
                config.image_size,
                config.image_patch_size,
                config.image_tokens_per_band,
            )  # fmt: skip
            for part in range(2)
        )
        return GalSpecDecoderOutput(**spectra, image_mean=image_mean, image_log_sigma=image_log_sigma)


class GalSpecForMaskedSpectra(GalSpecPreTrainedModel):
    """GalSpec encoder + decoder with likelihood heads: masked-spectrum pretraining and spectrum prediction."""

    def __init__(self, config: GalSpecConfig):
        super().__init__(config)
        self.config = config
        self.galspec = GalSpecModel(config)
        self.decoder = GalSpecDecoder(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        redshift: torch.Tensor,
        spectrum: torch.Tensor | None = None,
        spectrum_ivar: torch.Tensor | None = None,
        fiber_offset: torch.Tensor | None = None,
        fiber_diameter: torch.Tensor | None = None,
        spectrum_mask: torch.BoolTensor | None = None,
        image_mask: torch.BoolTensor | None = None,
        noise: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> GalSpecForMaskedSpectraOutput:
        r"""
        Masked-spectrum forward pass. Arguments as in :meth:`GalSpecModel.forward`; with `spectrum` and
        `spectrum_ivar` given, the output carries the losses (:meth:`forward_loss`).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        encoder_output = self.galspec(
            pixel_values, redshift, spectrum, spectrum_ivar, fiber_offset, fiber_diameter, spectrum_mask,
            image_mask, noise, output_hidden_states, output_attentions, return_dict=True,
        )  # fmt: skip
        batch, device = pixel_values.shape[0], pixel_values.device
        fiber_offset, fiber_diameter = self.galspec._fiber_inputs(batch, fiber_offset, fiber_diameter, device)
        decoder_output = self.decoder(encoder_output, redshift, fiber_offset, fiber_diameter)
        loss = spectrum_loss = image_loss = None
        if spectrum is not None:
            loss, spectrum_loss, image_loss = self.forward_loss(
                pixel_values, spectrum, spectrum_ivar, encoder_output, decoder_output, redshift
            )
        output = GalSpecForMaskedSpectraOutput(
            loss=loss,
            spectrum_loss=spectrum_loss,
            image_loss=image_loss,
            spectrum_mean=decoder_output.spectrum_mean,
            spectrum_sigma=decoder_output.spectrum_sigma,
            spectrum_log_sigma=decoder_output.spectrum_log_sigma,
            image_mean=decoder_output.image_mean,
            image_log_sigma=decoder_output.image_log_sigma,
            spectrum_mask=encoder_output.spectrum_mask,
            image_mask=encoder_output.image_mask,
            spectrum_scale=encoder_output.spectrum_scale,
            hidden_states=encoder_output.hidden_states,
            attentions=encoder_output.attentions,
        )
        return output if return_dict else output.to_tuple()

    def forward_loss(
        self,
        pixel_values: torch.Tensor,
        spectrum: torch.Tensor,
        spectrum_ivar: torch.Tensor,
        encoder_output: GalSpecModelOutput,
        decoder_output: GalSpecDecoderOutput,
        redshift: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The negative log-likelihoods, in normalised units: (loss, spectrum_loss, image_loss).

        spectrum_loss: weighted mean over spectral pixels with ivar > 0 (and finite flux) in masked patches, or
        in every patch with `config.loss_on_visible_spectrum`, of the per-pixel loss `config.spectrum_loss`
        (Gaussian NLL with variance sigma_model**2 + 1/ivar, or beta-NLL), pixels in strong-line windows
        weighted `config.line_window_weight` (needs `redshift`, (batch,)), plus
        `config.sigma_penalty_weight` * the same mean of sigma_model**2; the observed spectrum
        (batch, num_wavelengths) is normalised by the fiber's `spectrum_scale`.
        image_loss: masked mean over the pixels of masked image tokens, against the normalised image.
        loss = spectrum_loss + config.image_loss_weight * image_loss.
        """
        config = self.config
        target, target_ivar = normalize_spectra(spectrum.float(), spectrum_ivar.float(), encoder_output.spectrum_scale)
        good = (target_ivar > 0) & torch.isfinite(target) & torch.isfinite(target_ivar)
        target = torch.where(good, target, torch.zeros_like(target))
        target_ivar = torch.where(good, target_ivar, torch.zeros_like(target_ivar))
        pixel_masked = encoder_output.spectrum_mask.repeat_interleave(config.spectrum_patch_length, dim=1)
        pixel_masked = pixel_masked[:, : config.num_wavelengths]
        weights = (good if config.loss_on_visible_spectrum else good & pixel_masked).float()
        if config.line_window_weight != 1.0:
            if redshift is None:
                raise ValueError("`redshift` is needed by forward_loss when config.line_window_weight != 1")
            in_window = line_window_mask(self.galspec.wavelength, redshift, config)
            weights = weights * torch.where(in_window, config.line_window_weight, 1.0).to(weights.dtype)
        sigma = sigma_from_log_sigma(decoder_output.spectrum_log_sigma, config).float()
        mean = decoder_output.normalized_spectrum_mean.float()
        if config.spectrum_loss == "beta_nll":
            pixel_loss = beta_nll(target, mean, sigma, target_ivar, config.beta_nll_beta)
        else:
            pixel_loss = gaussian_nll(target, mean, sigma, target_ivar)
        spectrum_loss = masked_mean(pixel_loss, weights)
        if config.sigma_penalty_weight > 0:
            spectrum_loss = spectrum_loss + config.sigma_penalty_weight * masked_mean(sigma**2, weights)

        patch, per_band = config.image_patch_size, config.image_tokens_per_band
        image_target = normalize_images(pixel_values, encoder_output.flux_scale, config)
        image_target = patchify_image(image_target, patch, per_band)
        image_mean = patchify_image(decoder_output.image_mean, patch, per_band)  # (batch, num_image_tokens, values)
        image_sigma = sigma_from_log_sigma(patchify_image(decoder_output.image_log_sigma, patch, per_band), config)
        image_nll = gaussian_nll(image_target, image_mean.float(), image_sigma.float())
        image_loss = masked_mean(image_nll, encoder_output.image_mask[..., None].expand_as(image_nll))
        return spectrum_loss + config.image_loss_weight * image_loss, spectrum_loss, image_loss

    # ------------------------------------------------------------------
    @torch.no_grad()
    def predict_spectra(
        self,
        pixel_values: torch.Tensor,
        redshift: torch.Tensor,
        fiber_offset: torch.Tensor,
        wavelength: torch.Tensor | None = None,
        fiber_diameter: float | torch.Tensor | None = None,
        fiber_batch_size: int = 256,
        progress: bool = False,
        observed_spectrum: torch.Tensor | None = None,
        observed_ivar: torch.Tensor | None = None,
        observed_fiber_offset: torch.Tensor | None = None,
        observed_fiber_diameter: float | torch.Tensor | None = None,
    ) -> GalSpecSpectraOutput:
        r"""
        Predict the spectra that fibers at the given positions would record (image in, spectrum out), optionally
        conditioned on one observed fiber spectrum per galaxy.

        The image of each galaxy (with its observed spectrum, when given) is encoded and decoded once; the
        fibers are then read out in batches of `fiber_batch_size`, each fiber in its own sequence, so a fiber's
        result does not depend on the other fibers asked for with it. Without `observed_spectrum` the encoder
        sees only the image (the whole spectrum is masked, the inference case of training); with it, every
        patch of the observed spectrum is visible to the encoder together with its fiber's position and
        diameter, as the visible patches are in masked training, and the decoder's trunk (still run once per
        galaxy) carries it to every fiber read out.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, bands, image_size, image_size)`): images, nanomaggies.
            redshift (`torch.FloatTensor` of shape `(batch,)`).
            fiber_offset (`torch.FloatTensor` of shape `(batch, num_fibers, 2)` or `(batch, 2)`):
                fiber positions, arcsec east and north of the image centre.
            wavelength (`torch.FloatTensor` of shape `(L,)`, *optional*): wavelengths (Angstrom) at which to
                return the prediction, inside the model grid; the model-grid prediction is interpolated
                linearly. Defaults to the model grid.
            fiber_diameter (`float` or tensor, *optional*, defaults to `config.fiber_diameter`): arcsec.
            fiber_batch_size (`int`, *optional*, defaults to 256): fibers read out per readout call.
            progress (`bool`, *optional*, defaults to `False`): show a tqdm progress bar over fiber batches.
            observed_spectrum (`torch.FloatTensor` of shape `(batch, num_wavelengths)`, *optional*): the galaxy's
                observed fiber spectrum on the model grid, 1e-17 erg/s/cm2/A, as the fiber received it (for a
                DESI coadd: the file's flux times `MEAN_PSF_TO_FIBER_SPECFLUX`, which the data set builder does).
            observed_ivar (`torch.FloatTensor` of shape `(batch, num_wavelengths)`, *optional*): its inverse
                variance; required with `observed_spectrum` (ivar <= 0: no information).
            observed_fiber_offset (`torch.FloatTensor` of shape `(batch, 2)`, *optional*, defaults to the image
                centre): the observed fiber's position, arcsec east/north.
            observed_fiber_diameter (`float` or `(batch,)`, *optional*, defaults to `config.fiber_diameter`): arcsec.

        Returns:
            :class:`GalSpecSpectraOutput` with `wavelength` (L,), `mean` and `sigma` (batch, num_fibers, L)
            in 1e-17 erg/s/cm2/A.
        """
        config = self.config
        redshift = torch.as_tensor(redshift, dtype=torch.float32, device=pixel_values.device).reshape(-1)
        fiber_offset = torch.as_tensor(fiber_offset, dtype=torch.float32, device=pixel_values.device)
        if fiber_offset.dim() == 2:
            fiber_offset = fiber_offset[:, None, :]
        if fiber_offset.dim() != 3:
            raise ValueError(f"`fiber_offset` must have shape (batch, num_fibers, 2), got {tuple(fiber_offset.shape)}")
        _check_inputs(config, pixel_values, redshift, fiber_offset)
        if not isinstance(fiber_batch_size, int) or fiber_batch_size < 1:
            raise ValueError(f"`fiber_batch_size` must be a positive integer, got {fiber_batch_size!r}")
        batch, num_fibers = fiber_offset.shape[:2]
        device = pixel_values.device

        # Encode each image once, with the observed spectrum fully visible when there is one.
        no_image_mask = torch.zeros(batch, config.num_image_tokens, dtype=torch.bool, device=device)
        if observed_spectrum is None:
            for name, value in (("observed_ivar", observed_ivar), ("observed_fiber_offset", observed_fiber_offset)):
                if value is not None:
                    raise ValueError(f"`{name}` was given without `observed_spectrum`")
            full_spectrum_mask = torch.ones(batch, config.num_spectrum_patches, dtype=torch.bool, device=device)
            encoder_output = self.galspec(
                pixel_values, redshift, image_mask=no_image_mask, spectrum_mask=full_spectrum_mask
            )
        else:
            observed, observed_ivar, observed_fiber_offset, observed_fiber_diameter = check_observed_fiber(
                config, batch, device, observed_spectrum, observed_ivar, observed_fiber_offset, observed_fiber_diameter
            )
            no_spectrum_mask = torch.zeros(batch, config.num_spectrum_patches, dtype=torch.bool, device=device)
            encoder_output = self.galspec(
                pixel_values, redshift, spectrum=observed, spectrum_ivar=observed_ivar,
                fiber_offset=observed_fiber_offset, fiber_diameter=observed_fiber_diameter,
                spectrum_mask=no_spectrum_mask, image_mask=no_image_mask,
            )  # fmt: skip
        # Decode each galaxy once; each fiber then costs only the readout.
        _, prepared = self.decoder.trunk(self.decoder.embed(encoder_output, redshift))

        flat_offset = fiber_offset.reshape(batch * num_fibers, 2)
        galaxy_index = torch.arange(batch, device=device).repeat_interleave(num_fibers)
        diameter = broadcast_fiber_diameter(fiber_diameter, batch, num_fibers, config, device)

        means, sigmas = [], []
        starts = range(0, batch * num_fibers, fiber_batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="decoding fibers", unit="batch")
        for start in starts:
            fibers = slice(start, min(start + fiber_batch_size, batch * num_fibers))
            galaxies, offsets, diameters = galaxy_index[fibers], flat_offset[fibers], diameter[fibers]
            # each fiber's own scale
            scale = spectrum_scales(pixel_values, encoder_output.flux_scale, galaxies, offsets, diameters, config)
            colours = None
            if config.uses_fiber_colours:  # each fiber's own photometry
                colours = fiber_colours_dex(pixel_values, galaxies, offsets, diameters, config)
            spectra = self.decoder.read_spectra(prepared, galaxies, offsets, diameters, scale, colours)
            means.append(spectra.spectrum_mean)
            sigmas.append(spectra.spectrum_sigma)
        mean = torch.cat(means).reshape(batch, num_fibers, -1)
        sigma = torch.cat(sigmas).reshape(batch, num_fibers, -1)

        grid = self.galspec.wavelength.to(device)
        if wavelength is not None:
            wavelength = torch.as_tensor(wavelength, dtype=torch.float64, device=device).reshape(-1)
            if wavelength.min() < grid[0] - 1e-6 or wavelength.max() > grid[-1] + 1e-6:
                raise ValueError(
                    f"`wavelength` must lie inside the model grid [{float(grid[0])}, {float(grid[-1])}] Angstrom, "
                    f"got [{float(wavelength.min())}, {float(wavelength.max())}]"
                )
            mean = _interpolate(grid, mean, wavelength)
            sigma = _interpolate(grid, sigma, wavelength)
            grid = wavelength
        return GalSpecSpectraOutput(wavelength=grid.float(), mean=mean, sigma=sigma, fiber_offset=fiber_offset)


def _interpolate(grid: torch.Tensor, values: torch.Tensor, wavelength: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of values (..., len(grid)) at wavelength (L,)."""
    right = torch.searchsorted(grid, wavelength).clamp(1, grid.shape[0] - 1)
    left = right - 1
    fraction = ((wavelength - grid[left]) / (grid[right] - grid[left])).to(values.dtype)
    return values[..., left] * (1 - fraction) + values[..., right] * fraction


__all__ = [
    "GalSpecDecoderOutput",
    "GalSpecForMaskedSpectra",
    "GalSpecForMaskedSpectraOutput",
    "GalSpecModel",
    "GalSpecModelOutput",
    "GalSpecPreTrainedModel",
    "GalSpecSpectraOutput",
]
