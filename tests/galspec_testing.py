"""Helpers shared by the model tests: a model tester (transformers style) and independent checks.

The structured toy galaxies live in the library (:func:`galspec_hf.testing_utils.toy_galaxies`, shared with the
benchmarks) and are re-exported here for the tests.
"""

from __future__ import annotations

import numpy as np
import torch

from galspec_hf import GalSpecConfig
from galspec_hf.testing_utils import toy_galaxies

__all__ = [
    "GalSpecModelTester",
    "fit_manga_test_spectra",
    "nanomaggies_to_flambda_astropy",
    "supersampled_aperture_flux",
    "toy_galaxies",
]


class GalSpecModelTester:
    """Builds the tiny preset and inputs of matching shapes, like transformers' ``*ModelTester`` classes."""

    def __init__(self, batch_size: int = 3, seed: int = 0, **config_overrides):
        self.batch_size = batch_size
        self.seed = seed
        self.config = GalSpecConfig.from_preset("tiny", **config_overrides)

    def noise(self, seed: int = 1) -> torch.Tensor:
        c = self.config
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(self.batch_size, 2 + c.num_spectrum_patches + c.num_image_tokens, generator=generator)

    def prepare_inputs(self) -> dict[str, torch.Tensor]:
        return toy_galaxies(self.config, self.batch_size, seed=self.seed)


def supersampled_aperture_flux(
    image, east: float, north: float, diameter: float, pixel_scale: float, supersample: int = 25
) -> float:
    """Flux of a (H, W) image inside a circle, by brute-force supersampling: an independent check of the package.

    The circle of `diameter` arcsec is centred `east`, `north` arcsec from the image centre, in the standard
    orientation (row index runs north, column index runs west). Each pixel is cut into
    `supersample` x `supersample` sub-pixels, counted in or out by their centres.
    """
    image = np.asarray(image, dtype=np.float64)
    height, width = image.shape
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5  # sub-pixel centres, pixels from the pixel centre
    rows = (np.arange(height)[:, None] + sub[None, :]).reshape(-1)
    cols = (np.arange(width)[:, None] + sub[None, :]).reshape(-1)
    north_fine = (rows - (height - 1) / 2) * pixel_scale
    east_fine = -(cols - (width - 1) / 2) * pixel_scale
    inside = (east_fine[None, :] - east) ** 2 + (north_fine[:, None] - north) ** 2 <= (diameter / 2) ** 2
    fraction = inside.reshape(height, supersample, width, supersample).mean(axis=(1, 3))
    return float((image * fraction).sum())


def nanomaggies_to_flambda_astropy(flux_nanomaggies, wavelength_angstrom: float):
    """Nanomaggies (AB 22.5 = 1) to 1e-17 erg/s/cm2/A at `wavelength_angstrom`, with astropy's units."""
    from astropy import units as u

    per_nanomaggy = (3.631e-6 * u.Jy).to(
        u.erg / u.s / u.cm**2 / u.AA, equivalencies=u.spectral_density(wavelength_angstrom * u.AA)
    )
    return np.asarray(flux_nanomaggies) * per_nanomaggy.value / 1e-17


def fit_manga_test_spectra(path):
    """Read the 8 real MaNGA test spectra at ``path`` and fit them as the DAP comparison and the sanity test do
    (:func:`galspec_hf.analysis.dap_reference.fit_spectra_file`, default options). Returns (spectra, LineMaps)."""
    from galspec_hf.analysis.dap_reference import fit_spectra_file

    return fit_spectra_file(path)
