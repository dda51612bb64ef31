"""galspec_hf.sky additions: the flat-sky inverse of the fiber offset and centred crops; with the equality guard of
the Hub-shipped processor's own crop (processing_galspec must stay self-contained, so it keeps its own)."""

import numpy as np
import pytest
import torch

from galspec_hf import sky


def test_fiber_sky_position_inverts_fiber_offset():
    target_ra = np.array([150.0, 0.0005, 359.9995, 10.0])
    target_dec = np.array([2.0, -30.0, 60.0, 85.0])
    east, north = np.array([1.2, -3.0, 0.7, 5.0]), np.array([-0.4, 2.5, 0.0, -1.0])
    ra, dec = sky.fiber_sky_position(target_ra, target_dec, east, north)
    offset = sky.fiber_offset_arcsec(target_ra, target_dec, ra, dec)
    np.testing.assert_allclose(offset, np.stack([east, north], axis=-1), atol=1e-8)
    # a few arcsec from the target the flat sky and the gnomonic projection agree to micro-arcsec
    tangent = sky.tangent_plane_offsets_arcsec(ra[0], dec[0], target_ra[0], target_dec[0])
    np.testing.assert_allclose(tangent, [east[0], north[0]], atol=1e-5)


def test_fiber_sky_position_scalars():
    ra, dec = sky.fiber_sky_position(150.0, 60.0, 3.6, 7.2)
    assert float(ra) == pytest.approx(150.0 + 0.001 / np.cos(np.deg2rad(60.0)))
    assert float(dec) == pytest.approx(60.002)


@pytest.mark.parametrize(("height", "width", "size"), [(64, 64, 32), (65, 64, 32), (33, 40, 33), (10, 11, 1)])
def test_centred_crop(height, width, size):
    top, left = sky.centred_crop_corner(height, width, size)
    assert (top, left) == ((height - size) // 2, (width - size) // 2)
    image = np.arange(3 * height * width, dtype=np.float32).reshape(3, height, width)
    crop = sky.centred_crop(image, size)
    assert crop.shape == (3, size, size)
    np.testing.assert_array_equal(crop, image[:, top : top + size, left : left + size])
    np.testing.assert_array_equal(sky.centred_crop(torch.from_numpy(image), size).numpy(), crop)
    # an even margin keeps the centre pixel (or the centre between pixels) where it was
    if (height - size) % 2 == 0 and (width - size) % 2 == 0:
        assert top + (size - 1) / 2 == (height - 1) / 2 and left + (size - 1) / 2 == (width - 1) / 2


def test_centred_crop_too_small():
    with pytest.raises(ValueError, match="smaller"):
        sky.centred_crop(np.zeros((3, 10, 12)), 11)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (65, 64), (70, 81), (32, 32)])
def test_processor_crop_equals_centred_crop(height, width):
    from galspec_hf.models.galspec.processing_galspec import GalSpecProcessor  # noqa: PLC0415

    processor = GalSpecProcessor(image_size=32)
    image = np.random.default_rng(height * width).normal(size=(3, height, width)).astype(np.float32)
    np.testing.assert_array_equal(processor.crop_image(image), sky.centred_crop(image, 32))


def test_augment_crop_window_without_shift_is_the_centred_crop():
    from galspec_hf.training.augment import crop_window  # noqa: PLC0415

    images = torch.arange(2 * 3 * 13 * 12, dtype=torch.float32).reshape(2, 3, 13, 12)
    offset = torch.zeros(2, 2)
    windows, new_offset = crop_window(
        images, offset, 8, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), 0.262
    )
    torch.testing.assert_close(windows, sky.centred_crop(images, 8))
    torch.testing.assert_close(new_offset, offset)
