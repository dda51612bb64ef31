"""Move a pretrained GalSpec model to another survey: other bands, wavelength grid, fiber or pixel scale.

The new configuration is the pretrained one with the survey's values replaced. Every weight whose
name and shape still fit is copied; the others keep their fresh initialisation. What changes shape:

- other bands with one token per patch (``image_tokens_per_band=False``): the image patch
  projection and the image reconstruction head (their sizes depend on the number of bands);
- another spectrum patch length: the spectrum projection and head.

The wavelength, sky and fiber encodings are continuous functions, so another wavelength grid,
fiber diameter or pixel scale changes no weight shape. With ``image_tokens_per_band=True`` the band
is an encoding of its wavelength, and other bands change no weight either.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.galspec import GalSpecConfig, GalSpecForMaskedSpectra


@dataclass
class AdaptedModel:
    """A model moved to a new survey and the names of the weights that were kept or initialised."""

    model: GalSpecForMaskedSpectra
    kept: list[str]
    initialized: list[str]


def adapt_pretrained(pretrained: str | GalSpecForMaskedSpectra, seed: int = 0, **config_overrides) -> AdaptedModel:
    """Load a pretrained model and rebuild it with `config_overrides`, keeping every weight that fits.

    Parameters
    ----------
    pretrained : folder written by ``save_pretrained`` (or a Hub id), or a model
    seed : int
        Seed of the initialisation of the weights that do not fit.
    **config_overrides
        GalSpecConfig arguments of the new survey, e.g. ``bands=["g", "r", "i", "z", "y"]``,
        ``band_wavelengths=[...]``, ``wavelength_min=3800, wavelength_max=9200, wavelength_step=1e-4,
        wavelength_scale="log10"``, ``fiber_diameter=3.0``, ``pixel_scale=0.168``.
    """
    source = (
        pretrained
        if isinstance(pretrained, GalSpecForMaskedSpectra)
        else GalSpecForMaskedSpectra.from_pretrained(pretrained)
    )
    values = source.config.to_dict()
    for key in ("model_type", "transformers_version", "architectures", "dtype", "torch_dtype"):
        values.pop(key, None)
    unknown = [k for k in config_overrides if k not in values]
    if unknown:
        raise ValueError(f"adapt_pretrained: unknown configuration arguments {unknown}")
    if "bands" in config_overrides and "band_wavelengths" not in config_overrides:
        raise ValueError("adapt_pretrained: `band_wavelengths` (Angstrom, one per band) is required with new `bands`")
    values.update(config_overrides)
    config = GalSpecConfig(**values)
    torch.manual_seed(seed)
    model = GalSpecForMaskedSpectra(config)
    old_state = source.state_dict()
    new_state = model.state_dict()
    kept, initialized = [], []
    for name, tensor in new_state.items():
        if name in old_state and old_state[name].shape == tensor.shape:
            new_state[name] = old_state[name].clone()
            kept.append(name)
        else:
            initialized.append(name)
    model.load_state_dict(new_state)
    return AdaptedModel(model=model, kept=kept, initialized=initialized)


def freeze_encoder(model: GalSpecForMaskedSpectra) -> list[str]:
    """Freeze the encoder's transformer layers; embeddings, decoder and heads stay trainable.

    Returns the names of the frozen parameters.
    """
    frozen = []
    for name, parameter in model.galspec.encoder.named_parameters():
        parameter.requires_grad_(False)
        frozen.append(f"galspec.encoder.{name}")
    return frozen
