import math

import numpy as np
import pytest
import torch
from astropy import units as u

from galspec_hf import GalSpecConfig, GalSpecProcessor
from galspec_hf.models.galspec.processing_galspec import (
    circular_aperture_weights,
    compute_flux_scale,
    fiber_aperture_weights,
    nanomaggies_to_flux_density,
    normalize_images,
    pixel_offsets_arcsec,
    resample_spectrum,
    spectrum_scales,
)

from ..galspec_testing import nanomaggies_to_flambda_astropy, supersampled_aperture_flux


def test_nanomaggies_to_flux_density_matches_astropy():
    wavelength = 6469.6 * u.AA
    expected = (3.631e-6 * u.Jy).to(u.erg / u.s / u.cm**2 / u.AA, equivalencies=u.spectral_density(wavelength))
    assert nanomaggies_to_flux_density(1.0, 6469.6) == pytest.approx(expected.value / 1e-17, rel=1e-6)


def test_flux_scale_is_central_aperture_flux():
    config = GalSpecConfig.from_preset("small")
    images = torch.ones(2, 3, config.image_size, config.image_size)
    images[1] *= 5.0
    scale = compute_flux_scale(images, config)
    area_pixels = math.pi * (config.normalization_aperture_diameter / 2) ** 2 / config.pixel_scale**2
    assert scale[0].item() == pytest.approx(area_pixels, rel=0.01)
    assert scale[1].item() == pytest.approx(5 * scale[0].item(), rel=1e-6)
    # normalised images are invariant to the galaxy's brightness
    normalized = normalize_images(images, scale, config)
    assert torch.allclose(normalized[0], normalized[1])
    # a blank image hits the floor rather than dividing by zero
    blank = torch.zeros(1, 3, config.image_size, config.image_size)
    assert compute_flux_scale(blank, config).item() == pytest.approx(config.normalization_floor)


def test_pixel_offsets_follow_sky_orientation():
    east, north = pixel_offsets_arcsec(4, 0.25)
    # row index runs north, column index runs west (east is to the left, CD1_1 < 0)
    assert north[3, 0] > north[0, 0]
    assert east[0, 0] > east[0, 3]
    assert east[0, 0].item() == pytest.approx(1.5 * 0.25)
    assert torch.allclose(east.mean(), torch.zeros(())) and torch.allclose(north.mean(), torch.zeros(()))


def test_resample_conserves_flux_density_and_propagates_ivar():
    wavelength = 3600.0 + 0.8 * np.arange(200)
    flux = np.full(200, 3.0)
    ivar = np.full(200, 4.0)
    # onto a grid twice as coarse: each output pixel averages two inputs, so its ivar doubles
    coarse = 3600.4 + 1.6 * np.arange(99)
    flux_out, ivar_out = resample_spectrum(wavelength, flux, ivar, coarse)
    assert np.allclose(flux_out, 3.0)
    assert np.allclose(ivar_out, 8.0, rtol=1e-5)
    # a masked input pixel is ignored, not averaged in as zero
    ivar_bad = ivar.copy()
    ivar_bad[10] = 0.0
    flux_bad = flux.copy()
    flux_bad[10] = 1e9
    flux_out, ivar_out = resample_spectrum(wavelength, flux_bad, ivar_bad, coarse)
    assert np.allclose(flux_out, 3.0)
    assert ivar_out[5] == pytest.approx(4.0, rel=1e-5)  # the output pixel over inputs 10-11 keeps one
    assert ivar_out[4] == pytest.approx(8.0, rel=1e-5)
    # a line's integrated flux survives rebinning
    line = np.exp(-0.5 * ((wavelength - 3680.0) / 3.0) ** 2)
    line_out, _ = resample_spectrum(wavelength, line, ivar, coarse)
    assert (line_out * 1.6).sum() == pytest.approx((line * 0.8).sum(), rel=1e-3)
    # outside the input range: no information
    outside = np.array([3000.0, 3001.0, 3002.0])
    _, ivar_outside = resample_spectrum(wavelength, flux, ivar, outside)
    assert np.all(ivar_outside == 0)


def test_resample_batched_and_errors():
    wavelength = np.linspace(3800, 9200, 500)
    flux = np.random.default_rng(0).normal(size=(3, 500))
    ivar = np.ones((3, 500))
    out, out_ivar = resample_spectrum(wavelength, flux, ivar, np.linspace(4000, 9000, 100))
    assert out.shape == out_ivar.shape == (3, 100)
    with pytest.raises(ValueError, match="`wavelength_in`"):
        resample_spectrum(wavelength[::-1], flux, ivar, wavelength)
    with pytest.raises(ValueError, match="`flux`"):
        resample_spectrum(wavelength, flux[:, :10], ivar, wavelength)


def test_processor_prepares_batch():
    config = GalSpecConfig.from_preset("tiny")
    processor = GalSpecProcessor.from_config(config)
    images = np.random.default_rng(0).normal(size=(2, 3, 40, 40)).astype(">f4")  # big-endian, like FITS
    sdss_wavelength = 10 ** (3.58 + 1e-4 * np.arange(3500))
    spectrum = np.ones((2, 3500))
    ivar = np.ones((2, 3500))
    batch = processor(images, [0.1, 0.2], [[0.0, 0.0], [1.0, -1.0]], sdss_wavelength, spectrum, ivar)
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert batch["pixel_values"].dtype == torch.float32
    assert torch.equal(batch["pixel_values"][0], torch.from_numpy(images[0, :, 4:36, 4:36].astype(np.float32)))
    assert batch["spectrum"].shape == batch["spectrum_ivar"].shape == (2, config.num_wavelengths)
    covered = batch["spectrum_ivar"][0] > 0
    grid = torch.tensor(config.wavelength_grid())
    assert covered[(grid > 3810) & (grid < sdss_wavelength[-1] - 5)].all()
    assert not covered[grid < 3795].any()
    assert torch.allclose(batch["spectrum"][0][covered], torch.ones(()))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"images": np.zeros((1, 2, 40, 40))}, "images"),
        ({"images": np.zeros((1, 3, 20, 20))}, "images"),
        ({"redshift": [0.1, 0.2]}, "redshift"),
        ({"fiber_offset": [[0.0, 0.0, 0.0]]}, "fiber_offset"),
        ({"spectrum": np.zeros((1, 100)), "spectrum_ivar": np.zeros((1, 100))}, "spectrum"),
    ],
)
def test_processor_bad_input(kwargs, argument):
    processor = GalSpecProcessor.from_config(GalSpecConfig.from_preset("tiny"))
    arguments = {"images": np.zeros((1, 3, 40, 40)), "redshift": [0.1]}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=f"`{argument}"):
        processor(**arguments)


def test_processor_postprocess_inverts_model_normalisation():
    """normalize / postprocess against an independent calculation: supersampled apertures and astropy units."""
    config = GalSpecConfig.from_preset("tiny")
    processor = GalSpecProcessor.from_config(config)
    size, scale = config.image_size, config.pixel_scale
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    images[:, :, :, : size // 2] += 2.0  # east half brighter: a fiber's side matters
    images[:, 0] *= 10.0  # g is not the normalisation band
    images[1] *= 3.0
    r = config.bands.index("r")
    offsets = torch.tensor([[1.2, -0.5], [-2.0, 1.0]])
    diameters = torch.tensor([2.5, 1.5])
    normalized, flux_scale, spectrum_scale = processor.normalize(images, offsets, diameters)
    central = torch.tensor(
        [supersampled_aperture_flux(images[i, r].numpy(), 0.0, 0.0, 3.0, scale) for i in range(2)],
        dtype=torch.float32,
    )
    assert torch.allclose(flux_scale, central, rtol=0.01)
    fiber = [
        nanomaggies_to_flambda_astropy(
            supersampled_aperture_flux(images[i, r].numpy(), *offsets[i].tolist(), float(diameters[i]), scale),
            config.band_wavelengths[r],
        )
        for i in range(2)
    ]
    fiber = torch.tensor(fiber, dtype=torch.float32)
    assert torch.allclose(spectrum_scale, fiber, rtol=0.02)
    # images: asinh(image / (central flux * softening)), at the independent central flux
    expected_images = torch.asinh(images / (central[:, None, None, None] * config.image_asinh_softening))
    assert torch.allclose(normalized, expected_images, rtol=0.01, atol=1e-4)
    # postprocess: normalised predictions (B, K, L) back to 1e-17 erg/s/cm2/A by each galaxy's fiber flux
    mean_norm = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(1))
    sigma_norm = torch.rand(2, 4, 7, generator=torch.Generator().manual_seed(2)) + 0.1
    mean, sigma = processor.postprocess(mean_norm, sigma_norm, images, offsets, diameters)
    assert torch.allclose(mean, mean_norm * fiber[:, None, None], rtol=0.02)
    assert torch.allclose(sigma, sigma_norm * fiber[:, None, None], rtol=0.02)
    # defaults: a fiber of `fiber_diameter` at the centre
    mean, _ = processor.postprocess(torch.ones(2, 5), torch.ones(2, 5), images)
    centred = [
        nanomaggies_to_flambda_astropy(
            supersampled_aperture_flux(images[i, r].numpy(), 0.0, 0.0, config.fiber_diameter, scale),
            config.band_wavelengths[r],
        )
        for i in range(2)
    ]
    assert torch.allclose(mean[:, 0], torch.tensor(centred, dtype=torch.float32), rtol=0.02)


def test_orient_image_flips_to_standard_orientation():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(3, 5, 5))
    standard = np.array([[-1.0, 0.0], [0.0, 1.0]])
    assert np.array_equal(GalSpecProcessor.orient_image(image, standard), image)
    # east to the right: columns reversed
    assert np.array_equal(GalSpecProcessor.orient_image(image[..., ::-1], [[1.0, 0.0], [0.0, 1.0]]), image)
    # north down: rows reversed
    assert np.array_equal(GalSpecProcessor.orient_image(image[..., ::-1, :], [[-1.0, 0.0], [0.0, -1.0]]), image)
    # axes swapped (RA along rows)
    swapped = np.swapaxes(image, -1, -2)
    assert np.array_equal(GalSpecProcessor.orient_image(swapped, [[0.0, -1.0], [1.0, 0.0]]), image)
    with pytest.raises(ValueError, match="`cd_matrix`"):
        GalSpecProcessor.orient_image(image, np.zeros((2, 2)))


def test_fiber_aperture_weights_area_and_position():
    config = GalSpecConfig.from_preset("small")
    size, scale = config.image_size, config.pixel_scale
    diameters = torch.tensor([1.5, 3.0])
    weights = fiber_aperture_weights(torch.zeros(2, 2), diameters, size, scale)
    for weight, diameter in zip(weights, diameters.tolist(), strict=True):
        supersampled = circular_aperture_weights(size, scale, diameter).sum().item()
        assert weight.sum().item() == pytest.approx(supersampled, rel=0.015)
        assert weight.sum().item() == pytest.approx(math.pi * (diameter / 2 / scale) ** 2, rel=0.02)
    # a fiber 4 pixels east and 2 north is the centred one moved: east is to the left (lower column index)
    moved = fiber_aperture_weights(torch.tensor([[4 * scale, 2 * scale]]), diameters[:1], size, scale)[0]
    assert torch.allclose(moved, torch.roll(weights[0], shifts=(2, -4), dims=(0, 1)), atol=1e-5)


def test_spectrum_scales_follow_the_light_in_each_fiber():
    fiber = GalSpecConfig.from_preset("small")
    central = GalSpecConfig.from_preset("small", spectrum_normalization="central")
    size, scale = fiber.image_size, fiber.pixel_scale
    images = torch.full((1, 3, size, size), 0.2)
    images[0, :, :, : size // 2] = 1.0  # the east half (low column index) is 5x brighter
    index = torch.zeros(3, dtype=torch.long)
    offsets = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 0.0]])  # east, west, centre
    diameters = torch.full((3,), 1.5)
    flux_scale = compute_flux_scale(images, fiber)
    per_fiber = spectrum_scales(images, flux_scale, index, offsets, diameters, fiber)
    r = fiber.bands.index("r")
    for k in range(3):  # an independent supersampled aperture and astropy's unit conversion
        flux = supersampled_aperture_flux(images[0, r].numpy(), *offsets[k].tolist(), 1.5, scale)
        expected = nanomaggies_to_flambda_astropy(flux, fiber.band_wavelengths[r])
        assert per_fiber[k].item() == pytest.approx(expected, rel=0.02)
    assert per_fiber[1] < per_fiber[2] < per_fiber[0]
    # "central": every fiber of a galaxy shares its central-aperture scale
    shared = spectrum_scales(images, flux_scale, index, offsets, diameters, central)
    centre = supersampled_aperture_flux(images[0, r].numpy(), 0.0, 0.0, central.normalization_aperture_diameter, scale)
    expected = nanomaggies_to_flambda_astropy(centre, central.band_wavelengths[r])
    assert torch.allclose(shared, torch.tensor(expected, dtype=torch.float32).expand(3), rtol=0.01)
    with pytest.raises(ValueError, match="spectrum_normalization"):
        GalSpecConfig.from_preset("tiny", spectrum_normalization="total")
