"""GalSpec model configuration.

This file imports only ``transformers`` (and the standard library) so that it can be shipped to
the Hugging Face Hub as custom code next to ``modeling_galspec.py`` and ``processing_galspec.py``.
The physical defaults below mirror :mod:`galspec_hf.constants` (a test checks that they agree).
"""

from __future__ import annotations

import json
import math
from importlib import resources

from transformers import PreTrainedConfig

# Defaults that mirror galspec_hf.constants (kept here so the Hub custom code is self-contained).
_DESI_WAVELENGTH_MIN_A = 3600.0
_DESI_WAVELENGTH_MAX_A = 9824.0
_DESI_WAVELENGTH_STEP_A = 0.8
_DESI_FIBER_DIAMETER_ARCSEC = 1.5
_LEGACY_PIXEL_SCALE_ARCSEC = 0.262
# Effective wavelengths of the DECam g, r, z filters in Angstrom, as computed by speclite
# (`FilterResponse.effective_wavelength`) from the decam2014-{g,r,z} curves; tests/test_config.py
# recomputes them.
_DECAM_EFFECTIVE_WAVELENGTHS_A = (4890.0, 6469.6, 9196.5)
# Strong emission lines whose windows `line_window_weight` up-weights in the spectrum loss: vacuum rest Angstrom
# of [OII] 3727,3730, H-beta, [OIII] 4960,5008, [NII] 6550, H-alpha, [NII] 6585, [SII] 6718,6733, from the SDSS
# vacuum line list (galspec_hf.constants.EMISSION_LINES_VACUUM_A; tests/models/test_configuration_galspec.py
# checks that they agree).
_LOSS_LINE_WAVELENGTHS_VACUUM_A = (
    3727.092, 3729.875, 4862.683, 4960.295, 5008.240, 6549.86, 6564.61, 6585.27, 6718.29, 6732.67,
)  # fmt: skip
_SPECTRUM_LOSSES = ("gaussian", "beta_nll")

PRESET_PACKAGE = "galspec_hf.presets"


class GalSpecConfig(PreTrainedConfig):
    r"""
    Configuration of a GalSpec model: a masked autoencoder over galaxy image patches and spectrum
    patches that predicts the spectrum a fiber would record at any position on the image.

    Units follow the package conventions: wavelengths in vacuum Angstrom (observed frame), sky
    offsets in arcsec (east, north) from the image centre, images in nanomaggies per pixel, spectra
    in 1e-17 erg/s/cm2/A.

    Args:
        wavelength_min (`float`, *optional*, defaults to 3600.0):
            First pixel of the model's wavelength grid, in Angstrom (vacuum, observed frame).
        wavelength_max (`float`, *optional*, defaults to 9824.0):
            Last pixel of the model's wavelength grid, in Angstrom. Must be greater than `wavelength_min`.
        wavelength_step (`float`, *optional*, defaults to 0.8):
            Grid step: in Angstrom when `wavelength_scale="linear"`, in dex (log10 Angstrom) when
            `wavelength_scale="log10"` (e.g. 1e-4 for SDSS).
        wavelength_scale (`str`, *optional*, defaults to `"linear"`):
            `"linear"` (DESI) or `"log10"` (SDSS, MaNGA) spacing of the wavelength grid.
        spectrum_patch_length (`int`, *optional*, defaults to 31):
            Number of spectral pixels per spectrum token. The spectrum is padded at the red end (with
            zero inverse variance) to a multiple of this length. 31 divides the DESI grid exactly
            (7781 = 251 x 31).
        image_size (`int`, *optional*, defaults to 64):
            Side of the square input image, in pixels.
        image_patch_size (`int`, *optional*, defaults to 8):
            Side of a square image patch, in pixels. Must divide `image_size`.
        bands (`list[str]`, *optional*, defaults to `["g", "r", "z"]`):
            Names of the image bands, in channel order.
        band_wavelengths (`list[float]`, *optional*, defaults to the DECam g, r, z effective wavelengths):
            Effective wavelength of each band, in Angstrom. Used to convert image fluxes (nanomaggies) to
            flux densities for the normalisation, and as the band encoding when
            `image_tokens_per_band=True`.
        image_tokens_per_band (`bool`, *optional*, defaults to `False`):
            If `False`, one token holds all bands of a patch; if `True`, each band of each patch is a
            token carrying an encoding of the band's wavelength (lets a model move to other bands).
        pixel_scale (`float`, *optional*, defaults to 0.262):
            Image pixel scale, in arcsec per pixel (Legacy Surveys: 0.262).
        fiber_diameter (`float`, *optional*, defaults to 1.5):
            Default fiber diameter on the sky, in arcsec (DESI: 1.5; SDSS: 3; MaNGA fibers: 2).
        normalization_band (`str`, *optional*, defaults to `"r"`):
            Band whose central aperture flux sets each galaxy's flux scale (see `normalization_aperture_diameter`).
        normalization_aperture_diameter (`float`, *optional*, defaults to 3.0):
            Diameter in arcsec of the circular aperture, centred on the image, whose flux in
            `normalization_band` is the galaxy's flux scale. Images (and, with
            `spectrum_normalization="central"`, spectra) are divided by this scale inside the model,
            so the normalisation needs only the image, never the spectrum.
        spectrum_normalization (`str`, *optional*, defaults to `"fiber"`):
            What the spectra are divided by. `"fiber"`: the `normalization_band` flux inside each
            fiber's own aperture (its diameter, at its sky offset), so the model predicts a spectrum
            relative to the light the image shows in that fiber and a fiber on a faint outskirt
            gets a faint spectrum; for a fiber on the centre this is the usual fiber-magnitude
            normalisation. `"central"`: the galaxy's central-aperture flux (the flux scale above)
            for every fiber (the first design).
        normalization_floor (`float`, *optional*, defaults to 0.05):
            Smallest allowed flux scale, in nanomaggies (guards against blank or negative apertures).
        image_asinh_softening (`float`, *optional*, defaults to 0.05):
            Softening of the arcsinh stretch applied to the scaled image, in units of the flux scale per pixel.
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size (`int`, *optional*, defaults to
            256, 6, 8 and 1024):
            The encoder's width, number of transformer layers, number of attention heads (a divisor of the
            width) and MLP width.
        decoder_hidden_size, decoder_num_hidden_layers, decoder_num_attention_heads, decoder_intermediate_size
            (`int`, *optional*, defaults to 192, 2, 6 and 768):
            The same for the decoder.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the MLPs.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after attention and MLP blocks.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on attention weights.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the layer norms.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal initialiser.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Whether the query, key and value projections have a bias.
        num_fourier_features (`int`, *optional*, defaults to 32):
            Number of frequencies of each sinusoidal encoding (wavelength, sky position).
        wavelength_encoding_periods (`list[float]`, *optional*, defaults to `[5e-4, 4.0]`):
            Shortest and longest period, in natural-log wavelength, of the wavelength encoding
            (5e-4 is 3.3 A at H-alpha, below the 25 A span of a DESI spectrum patch).
        sky_encoding_periods (`list[float]`, *optional*, defaults to `[0.5, 200.0]`):
            Shortest and longest period, in arcsec, of the sky-position encoding.
        fiber_readout_local (`bool`, *optional*, defaults to `True`):
            How the fiber readout (the cross-attention that reads a fiber's spectrum out of the image
            tokens) sees the sky. `True`: the keys carry each image token's offset *relative to the
            fiber*, the query carries only the fiber's diameter, and every head adds a learnt Gaussian
            penalty on the token-fiber distance, -s_h d^2 / (2 p^2) with p the image patch size in
            arcsec and s_h >= 0 (initialised from 4 down to nearly 0 across heads); the light in a
            fiber comes from the sky around it, wherever on the galaxy it is. `False`: absolute
            positions for keys and fiber, no distance penalty (the first design).
        readout_modulation (`bool`, *optional*, defaults to `False`):
            Whether the fiber readout also *modulates* every spectrum token with what it read under the fiber:
            the readout's attention output, averaged over the spectrum tokens, gives a per-fiber scale and
            shift (FiLM, Perez et al. 2018, AAAI) applied to all of the fiber's spectrum tokens before the
            head, so the sky under one fiber can reshape the whole spectrum (line-to-continuum ratios, not only
            each wavelength chunk's own read). Initialised to the identity; costs two small matrix products
            per fiber. `False`: the single cross-attention step of the first designs.
        readout_colours (`bool`, *optional*, defaults to `False`):
            Whether each fiber's predicted spectrum also gets a *linear term in the colours of the image light
            inside the fiber* (log10 of each band's aperture flux over the `normalization_band`'s, computed from
            the image at the fiber's position and diameter,
            :func:`~galspec_hf.models.galspec.processing_galspec.fiber_colours_dex`): a learnt spectrum per band,
            weighted by the fiber's colour in units of 0.1 dex, added to the normalised mean (zero at
            initialisation). The fiber's photometry then shapes its continuum directly, as a linear SED model
            would, wherever the fiber lies. `False`: the colours reach the spectrum only through the encoder's
            image tokens (the designs before
            2026-12-06, whose image-only continuum turned out not to depend on the image at all).
        decoder_image_summary (`bool`, *optional*, defaults to `False`):
            Whether every spectrum token of the decoder starts with a projection of the mean of the encoder's
            visible image tokens (zero at initialisation). Measured on 2026-12-06: the encoder's pooled states
            held the fiber's colour (linear probe r 0.83) while the decoder's spectrum tokens, which see the image
            only by attention, held none; this hands them the summary directly. `False`: attention only.
        decoder_photometry (`bool`, *optional*, defaults to `False`):
            Whether every spectrum token of the decoder starts with an embedding (a two-layer MLP, trained from a
            random start) of the galaxy's *central photometry*: the colours of the image light inside a fiber of
            `fiber_diameter` at the image centre (log10 of each band's aperture flux over the
            `normalization_band`'s, in units of 0.1 dex,
            :func:`~galspec_hf.models.galspec.processing_galspec.fiber_colours_dex`). The trunk's spectrum tokens
            then know the stellar population's colour before any attention, and can place its rest-frame
            features (the 4000 A break, the lines' strengths) at every redshift, which a term added to the
            observed-frame output (`readout_colours`) cannot. The photometry is the galaxy's, not the fiber's,
            so the trunk still runs once per galaxy. `False`: the designs before 2026-12-06 (late).
        readout_photometry (`bool`, *optional*, defaults to `False`):
            Whether the fiber readout also mixes *the fiber's own colours* (the image light inside the fiber, as
            for `readout_colours`) into every spectrum token through one MLP: an embedding of the colours is
            added to the tokens after the cross-attention, and a pre-norm MLP (hidden size
            `decoder_hidden_size`) adds its output to them before the head, so the colour's effect depends on
            each token's rest wavelength (line-to-continuum ratios that follow the local colour). Costs one MLP
            per fiber and spectrum token, about half the readout's cost again. `False`: no per-fiber photometry
            beyond `readout_colours`.
        spectrum_mask_ratio (`float`, *optional*, defaults to 0.75):
            Fraction of spectrum patches masked in the `"random"` and `"chunk"` masking modes.
        image_mask_ratio (`float`, *optional*, defaults to 0.5):
            Fraction of image patches masked during training (not when the whole spectrum is masked,
            which mirrors inference: image in, spectrum out).
        mask_mode_probabilities (`list[float]`, *optional*, defaults to `[0.4, 0.3, 0.3]`):
            Probabilities of the spectrum masking modes `"random"` (random patches), `"chunk"` (one
            contiguous wavelength chunk) and `"full"` (the whole spectrum). Must sum to 1.
        sigma_floor (`float`, *optional*, defaults to 1e-3):
            Floor added to the predicted scatter, in units of the galaxy's flux scale:
            sigma_model = sigma_floor + exp(log_sigma).
        image_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the image reconstruction term in the total loss.
        loss_on_visible_spectrum (`bool`, *optional*, defaults to `False`):
            If `True`, the spectrum likelihood covers all observed pixels; else only masked patches.
        spectrum_loss (`str`, *optional*, defaults to `"gaussian"`):
            Per-pixel spectrum loss. `"gaussian"`: the Gaussian negative log-likelihood with variance
            sigma_model**2 + 1/ivar. `"beta_nll"`: the same NLL weighted per pixel by the (gradient-stopped)
            total variance to the power `beta_nll_beta` (Seitzer et al. 2022, ICLR, "On the pitfalls of
            heteroscedastic uncertainty estimation"), so that pixels the model calls noisy cannot stop the
            mean from learning there.
        beta_nll_beta (`float`, *optional*, defaults to 0.5):
            The exponent beta of `"beta_nll"` (0: the Gaussian NLL; 1: a variance-weighted squared error).
            Dimensionless; the variance is in normalised units (flux / spectrum_scale)**2.
        sigma_penalty_weight (`float`, *optional*, defaults to 0.0):
            Weight of a penalty on the predicted scatter, weight * mean(sigma_model**2) over the pixels of the
            spectrum loss (normalised units). The reference paper adds 0.1 sigma**2 in masked regions, so that
            an inflated sigma cannot absorb a missing emission line. 0 keeps the plain likelihood.
        line_window_weight (`float`, *optional*, defaults to 1.0):
            Weight, relative to 1 elsewhere, of spectral pixels within `line_window_half_width_kms` of a strong
            emission line (H-alpha, H-beta, [NII], [OIII], [OII], [SII] at the galaxy's redshift) in the
            spectrum loss; the loss stays a weighted mean. 1 weights every pixel alike.
        line_window_half_width_kms (`float`, *optional*, defaults to 500.0):
            Half-width of each line window, km/s.

    Example:

    ```python
    >>> from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra
    >>> config = GalSpecConfig.from_preset("tiny")
    >>> model = GalSpecForMaskedSpectra(config)
    ```
    """

    model_type = "galspec"

    def __init__(
        self,
        wavelength_min: float = _DESI_WAVELENGTH_MIN_A,
        wavelength_max: float = _DESI_WAVELENGTH_MAX_A,
        wavelength_step: float = _DESI_WAVELENGTH_STEP_A,
        wavelength_scale: str = "linear",
        spectrum_patch_length: int = 31,
        image_size: int = 64,
        image_patch_size: int = 8,
        bands: list[str] | None = None,
        band_wavelengths: list[float] | None = None,
        image_tokens_per_band: bool = False,
        pixel_scale: float = _LEGACY_PIXEL_SCALE_ARCSEC,
        fiber_diameter: float = _DESI_FIBER_DIAMETER_ARCSEC,
        normalization_band: str = "r",
        normalization_aperture_diameter: float = 3.0,
        spectrum_normalization: str = "fiber",
        normalization_floor: float = 0.05,
        image_asinh_softening: float = 0.05,
        hidden_size: int = 256,
        num_hidden_layers: int = 6,
        num_attention_heads: int = 8,
        intermediate_size: int = 1024,
        decoder_hidden_size: int = 192,
        decoder_num_hidden_layers: int = 2,
        decoder_num_attention_heads: int = 6,
        decoder_intermediate_size: int = 768,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        layer_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        qkv_bias: bool = True,
        num_fourier_features: int = 32,
        wavelength_encoding_periods: list[float] | None = None,
        sky_encoding_periods: list[float] | None = None,
        fiber_readout_local: bool = True,
        readout_modulation: bool = False,
        readout_colours: bool = False,
        decoder_image_summary: bool = False,
        decoder_photometry: bool = False,
        readout_photometry: bool = False,
        spectrum_mask_ratio: float = 0.75,
        image_mask_ratio: float = 0.5,
        mask_mode_probabilities: list[float] | None = None,
        sigma_floor: float = 1e-3,
        image_loss_weight: float = 1.0,
        loss_on_visible_spectrum: bool = False,
        spectrum_loss: str = "gaussian",
        beta_nll_beta: float = 0.5,
        sigma_penalty_weight: float = 0.0,
        line_window_weight: float = 1.0,
        line_window_half_width_kms: float = 500.0,
        **kwargs,
    ):
        self.wavelength_min = float(wavelength_min)
        self.wavelength_max = float(wavelength_max)
        self.wavelength_step = float(wavelength_step)
        self.wavelength_scale = wavelength_scale
        self.spectrum_patch_length = spectrum_patch_length
        self.image_size = image_size
        self.image_patch_size = image_patch_size
        self.bands = list(bands) if bands is not None else ["g", "r", "z"]
        if band_wavelengths is None:
            band_wavelengths = list(_DECAM_EFFECTIVE_WAVELENGTHS_A) if self.bands == ["g", "r", "z"] else None
        self.band_wavelengths = [float(w) for w in band_wavelengths] if band_wavelengths is not None else None
        self.image_tokens_per_band = bool(image_tokens_per_band)
        self.pixel_scale = float(pixel_scale)
        self.fiber_diameter = float(fiber_diameter)
        self.normalization_band = normalization_band
        self.normalization_aperture_diameter = float(normalization_aperture_diameter)
        self.spectrum_normalization = spectrum_normalization
        self.normalization_floor = float(normalization_floor)
        self.image_asinh_softening = float(image_asinh_softening)
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_num_hidden_layers = decoder_num_hidden_layers
        self.decoder_num_attention_heads = decoder_num_attention_heads
        self.decoder_intermediate_size = decoder_intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = float(hidden_dropout_prob)
        self.attention_probs_dropout_prob = float(attention_probs_dropout_prob)
        self.layer_norm_eps = float(layer_norm_eps)
        self.initializer_range = float(initializer_range)
        self.qkv_bias = bool(qkv_bias)
        self.num_fourier_features = num_fourier_features
        self.wavelength_encoding_periods = [float(p) for p in (wavelength_encoding_periods or [5e-4, 4.0])]
        self.sky_encoding_periods = [float(p) for p in (sky_encoding_periods or [0.5, 200.0])]
        self.fiber_readout_local = bool(fiber_readout_local)
        self.readout_modulation = bool(readout_modulation)
        self.readout_colours = bool(readout_colours)
        self.decoder_image_summary = bool(decoder_image_summary)
        self.decoder_photometry = bool(decoder_photometry)
        self.readout_photometry = bool(readout_photometry)
        self.spectrum_mask_ratio = float(spectrum_mask_ratio)
        self.image_mask_ratio = float(image_mask_ratio)
        self.mask_mode_probabilities = [float(p) for p in (mask_mode_probabilities or [0.4, 0.3, 0.3])]
        self.sigma_floor = float(sigma_floor)
        self.image_loss_weight = float(image_loss_weight)
        self.loss_on_visible_spectrum = bool(loss_on_visible_spectrum)
        self.spectrum_loss = spectrum_loss
        self.beta_nll_beta = float(beta_nll_beta)
        self.sigma_penalty_weight = float(sigma_penalty_weight)
        self.line_window_weight = float(line_window_weight)
        self.line_window_half_width_kms = float(line_window_half_width_kms)
        super().__init__(**kwargs)
        self._validate()

    # ------------------------------------------------------------------------------------
    # Validation
    # ------------------------------------------------------------------------------------
    def _validate(self) -> None:
        def require(condition: bool, name: str, expected: str) -> None:
            if not condition:
                raise ValueError(f"GalSpecConfig: `{name}` must be {expected}, got {getattr(self, name)!r}")

        require(self.wavelength_scale in ("linear", "log10"), "wavelength_scale", "'linear' or 'log10'")
        require(self.wavelength_min > 0, "wavelength_min", "a positive wavelength in Angstrom")
        require(
            self.wavelength_max > self.wavelength_min,
            "wavelength_max",
            f"greater than wavelength_min={self.wavelength_min}",
        )
        require(self.wavelength_step > 0, "wavelength_step", "positive")
        if self.wavelength_scale == "log10":
            require(self.wavelength_step < 0.01, "wavelength_step", "a log10 step in dex below 0.01 (SDSS: 1e-4)")
        require(self.num_wavelengths >= 2, "wavelength_step", "small enough to give at least 2 grid pixels")
        require(_is_pos_int(self.spectrum_patch_length), "spectrum_patch_length", "a positive integer")
        require(_is_pos_int(self.image_size), "image_size", "a positive integer number of pixels")
        require(
            _is_pos_int(self.image_patch_size) and self.image_size % self.image_patch_size == 0,
            "image_patch_size",
            f"a positive integer dividing image_size={self.image_size}",
        )
        require(
            len(self.bands) > 0 and all(isinstance(b, str) and b for b in self.bands),
            "bands",
            "a non-empty list of band names",
        )
        require(len(set(self.bands)) == len(self.bands), "bands", "a list of distinct band names")
        require(
            self.band_wavelengths is not None and len(self.band_wavelengths) == len(self.bands),
            "band_wavelengths",
            f"one effective wavelength (Angstrom) per band {self.bands}",
        )
        require(all(w > 0 for w in self.band_wavelengths), "band_wavelengths", "positive wavelengths in Angstrom")
        require(self.pixel_scale > 0, "pixel_scale", "a positive number of arcsec per pixel")
        require(self.fiber_diameter > 0, "fiber_diameter", "a positive diameter in arcsec")
        require(self.normalization_band in self.bands, "normalization_band", f"one of bands={self.bands}")
        require(self.normalization_aperture_diameter > 0, "normalization_aperture_diameter", "positive (arcsec)")
        require(self.spectrum_normalization in ("fiber", "central"), "spectrum_normalization", "'fiber' or 'central'")
        require(self.normalization_floor > 0, "normalization_floor", "positive (nanomaggies)")
        require(self.image_asinh_softening > 0, "image_asinh_softening", "positive")
        for width, heads in (
            ("hidden_size", "num_attention_heads"),
            ("decoder_hidden_size", "decoder_num_attention_heads"),
        ):
            require(_is_pos_int(getattr(self, width)), width, "a positive integer")
            require(_is_pos_int(getattr(self, heads)), heads, "a positive integer")
            require(
                getattr(self, width) % getattr(self, heads) == 0, heads, f"a divisor of {width}={getattr(self, width)}"
            )
        for name in (
            "num_hidden_layers",
            "decoder_num_hidden_layers",
            "intermediate_size",
            "decoder_intermediate_size",
        ):
            require(_is_pos_int(getattr(self, name)), name, "a positive integer")
        require(_is_pos_int(self.num_fourier_features), "num_fourier_features", "a positive integer")
        for name in ("wavelength_encoding_periods", "sky_encoding_periods"):
            periods = getattr(self, name)
            require(
                len(periods) == 2 and 0 < periods[0] < periods[1],
                name,
                "[shortest, longest] with 0 < shortest < longest",
            )
        require(0.0 <= self.spectrum_mask_ratio < 1.0, "spectrum_mask_ratio", "in [0, 1)")
        require(0.0 <= self.image_mask_ratio < 1.0, "image_mask_ratio", "in [0, 1)")
        probabilities = self.mask_mode_probabilities
        require(
            len(probabilities) == 3 and all(p >= 0 for p in probabilities) and abs(sum(probabilities) - 1.0) < 1e-6,
            "mask_mode_probabilities",
            "three non-negative probabilities (random, chunk, full) summing to 1",
        )
        require(self.sigma_floor > 0, "sigma_floor", "positive")
        require(self.image_loss_weight >= 0, "image_loss_weight", "non-negative")
        require(self.spectrum_loss in _SPECTRUM_LOSSES, "spectrum_loss", f"one of {_SPECTRUM_LOSSES}")
        require(0.0 <= self.beta_nll_beta <= 1.0, "beta_nll_beta", "in [0, 1]")
        require(self.sigma_penalty_weight >= 0, "sigma_penalty_weight", "non-negative")
        require(self.line_window_weight > 0, "line_window_weight", "positive")
        require(self.line_window_half_width_kms > 0, "line_window_half_width_kms", "positive (km/s)")
        require(0.0 <= self.hidden_dropout_prob < 1.0, "hidden_dropout_prob", "in [0, 1)")
        require(0.0 <= self.attention_probs_dropout_prob < 1.0, "attention_probs_dropout_prob", "in [0, 1)")

    # ------------------------------------------------------------------------------------
    # Derived quantities
    # ------------------------------------------------------------------------------------
    @property
    def num_wavelengths(self) -> int:
        """Number of pixels of the wavelength grid (7781 for DESI)."""
        if self.wavelength_scale == "linear":
            return int(math.floor((self.wavelength_max - self.wavelength_min) / self.wavelength_step + 1e-6)) + 1
        span = math.log10(self.wavelength_max) - math.log10(self.wavelength_min)
        return int(math.floor(span / self.wavelength_step + 1e-6)) + 1

    @property
    def num_spectrum_patches(self) -> int:
        """Number of spectrum tokens: ceil(num_wavelengths / spectrum_patch_length)."""
        return -(-self.num_wavelengths // self.spectrum_patch_length)

    @property
    def num_image_patches(self) -> int:
        """Number of spatial image patches: (image_size / image_patch_size) ** 2."""
        return (self.image_size // self.image_patch_size) ** 2

    @property
    def num_image_tokens(self) -> int:
        """Number of image tokens: spatial patches, times the number of bands if `image_tokens_per_band`."""
        return self.num_image_patches * (len(self.bands) if self.image_tokens_per_band else 1)

    @property
    def uses_fiber_colours(self) -> bool:
        """Whether the readout needs each fiber's colours (`readout_colours` or `readout_photometry`)."""
        return self.readout_colours or self.readout_photometry

    def wavelength_grid(self) -> list[float]:
        """The model's wavelength grid in Angstrom, as a list of `num_wavelengths` floats."""
        n = self.num_wavelengths
        if self.wavelength_scale == "linear":
            return [self.wavelength_min + i * self.wavelength_step for i in range(n)]
        log_min = math.log10(self.wavelength_min)
        return [10.0 ** (log_min + i * self.wavelength_step) for i in range(n)]

    # ------------------------------------------------------------------------------------
    # Presets
    # ------------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> GalSpecConfig:
        """Build a configuration from a named preset (`tiny`, `small`, `base`), with optional overrides."""
        available = list_presets()
        if not available:
            raise ValueError(
                "GalSpecConfig.from_preset: presets ship with the galspec-hf package (pip install galspec-hf); "
                "this copy of the configuration code was loaded without it"
            )
        if name not in available:
            raise ValueError(f"GalSpecConfig.from_preset: `name` must be one of {available}, got {name!r}")
        values = json.loads(resources.files(PRESET_PACKAGE).joinpath(f"{name}.json").read_text())
        values.pop("model_type", None)
        values.update(overrides)
        return cls(**values)


def list_presets() -> list[str]:
    """Names of the presets shipped as JSON package data, sorted by size (tiny, small, base, ...)."""
    try:
        files = resources.files(PRESET_PACKAGE).iterdir()
    except ModuleNotFoundError:  # shipped on the Hub without the package
        return []
    names = [f.name[: -len(".json")] for f in files if f.name.endswith(".json")]
    order = {"tiny": 0, "small": 1, "base": 2}
    return sorted(names, key=lambda n: (order.get(n, 99), n))


def _is_pos_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


__all__ = ["GalSpecConfig", "list_presets"]
