"""Helpers shared by the tests and the benchmarks (like ``transformers.testing_utils``).

- :func:`toy_galaxies`: structured toy galaxies whose image sets their spectrum, in the model's input layout.
- :func:`write_benchmark_report`: a benchmark's result as strict JSON in its ``--out`` file, echoed to stdout.

The package itself never imports this module.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .models.galspec import GalSpecConfig
from .strict_json import dumps_strict, write_strict_json

__all__ = ["toy_galaxies", "write_benchmark_report"]


def toy_galaxies(config: GalSpecConfig, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Structured toy galaxies: the image's brightness and size set the spectrum.

    Each galaxy is a round exponential profile of random total flux and scale length at the image
    centre; its fiber spectrum is a power-law continuum with an H-alpha line at 6564.61 (1 + z) A, both
    proportional to the light inside the fiber, so a model can learn the spectrum from the image.
    """
    generator = torch.Generator().manual_seed(seed)
    size, scale = config.image_size, config.pixel_scale
    coordinate = (torch.arange(size, dtype=torch.float32) - (size - 1) / 2) * scale
    radius = torch.sqrt(coordinate[:, None] ** 2 + coordinate[None, :] ** 2)  # arcsec
    total_flux = 10 ** (torch.rand(batch_size, generator=generator) * 1.5)  # nanomaggies
    scale_length = 0.5 + 2.0 * torch.rand(batch_size, generator=generator)  # arcsec
    profile = torch.exp(-radius[None] / scale_length[:, None, None])
    profile = profile / profile.sum(dim=(1, 2), keepdim=True)
    colours = torch.linspace(0.6, 1.3, len(config.bands))  # redder bands brighter, as for most galaxies
    images = total_flux[:, None, None, None] * colours[None, :, None, None] * profile[:, None]
    images = images + 0.002 * torch.randn(images.shape, generator=generator)
    redshift = 0.02 + 0.3 * torch.rand(batch_size, generator=generator)
    fiber_offset = torch.zeros(batch_size, 2)

    wavelength = torch.tensor(config.wavelength_grid(), dtype=torch.float32)
    fiber_light = (profile * (radius[None] <= config.fiber_diameter / 2)).sum(dim=(1, 2)) * total_flux
    continuum = (wavelength[None] / 6000.0) ** -1.0 * fiber_light[:, None] * 0.3
    line_centre = 6564.61 * (1 + redshift)
    line_width = 3.0
    line_flux = 2.0 * fiber_light * (1.0 / scale_length)
    line = line_flux[:, None] * torch.exp(-0.5 * ((wavelength[None] - line_centre[:, None]) / line_width) ** 2)
    line = line / (line_width * math.sqrt(2 * math.pi))
    noise_sigma = 0.05 * torch.ones(batch_size, wavelength.shape[0])
    spectrum = continuum + line + noise_sigma * torch.randn(continuum.shape, generator=generator)
    ivar = 1.0 / noise_sigma**2
    ivar[:, :50] = 0.0  # a bad stretch of pixels, as at a CCD edge
    return {
        "pixel_values": images,
        "redshift": redshift,
        "spectrum": spectrum,
        "spectrum_ivar": ivar,
        "fiber_offset": fiber_offset,
    }


def write_benchmark_report(path: str | Path, result: dict) -> dict:
    """Write a benchmark's `result` to `path` as indented strict JSON (folders made as needed), print it, return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_strict_json(path, result)
    print(dumps_strict(result, indent=2))
    return result
