"""galspec_hf.io.legacy: Legacy Surveys cutouts, real (../shared/data) and written by the tests."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from galspec_hf.data.testing import write_legacy_cutout
from galspec_hf.errors import GalSpecFormatError
from galspec_hf.io.legacy import cutout_header, read_legacy_cutout

from .io_testing import LEGACY_CUTOUT


@pytest.mark.realdata
def test_real_legacy_cutout_bands_wcs_and_offsets(shared_file):
    path = shared_file(LEGACY_CUTOUT)
    cutout = read_legacy_cutout(path, bands=("g", "r", "z"))
    assert cutout.bands == ("g", "r", "z")
    assert cutout.image.shape == (3, 256, 256) and cutout.image.dtype == np.float32
    assert cutout.pixel_scale_arcsec == pytest.approx(0.262, rel=1e-6)
    # centre from the WCS: the header's CRVAL at CRPIX 128.5 (1-based) = 127.5 (0-based), the array centre
    assert cutout.center.ra.deg == pytest.approx(357.9087, abs=1e-9)
    assert cutout.center.dec.deg == pytest.approx(-54.8817, abs=1e-9)
    # CD1_1 < 0: one pixel to the left (x - 1) is 0.262 arcsec east; one row up (y + 1) is north
    np.testing.assert_allclose(cutout.pixel_to_offset_arcsec(126.5, 127.5), [0.262, 0.0], atol=1e-6)
    np.testing.assert_allclose(cutout.pixel_to_offset_arcsec(127.5, 128.5), [0.0, 0.262], atol=1e-6)
    # round trips through the WCS
    ra, dec = cutout.offset_arcsec_to_sky([[3.0, -4.0]])
    np.testing.assert_allclose(cutout.sky_to_offset_arcsec(ra, dec), [[3.0, -4.0]], atol=1e-6)
    x, y = cutout.offset_arcsec_to_pixel([[0.262 * 10, 0.0]])
    np.testing.assert_allclose([x[0], y[0]], [117.5, 127.5], atol=1e-6)
    # the red central galaxy: bright at the centre, brighter in z than in g (nanomaggies)
    centre = cutout.image[:, 118:138, 118:138].sum(axis=(1, 2))
    assert centre[2] > centre[1] > centre[0] > 0
    assert centre[1] > 20 * np.median(cutout.image[1]) * 400


def test_cutout_offsets_follow_the_wcs_not_the_array(tmp_path):
    normal = read_legacy_cutout(write_legacy_cutout(tmp_path / "a.fits", 150.0, 2.0, size=32))
    flipped = read_legacy_cutout(write_legacy_cutout(tmp_path / "b.fits", 150.0, 2.0, size=32, east_left=False))
    # same array step, opposite sky direction
    np.testing.assert_allclose(normal.pixel_to_offset_arcsec(16.5, 15.5), [-0.262, 0.0], atol=1e-6)
    np.testing.assert_allclose(flipped.pixel_to_offset_arcsec(16.5, 15.5), [0.262, 0.0], atol=1e-6)
    # a sky position 1 arcsec east of the centre lands left of centre in one, right in the other
    xa, _ = normal.offset_arcsec_to_pixel([1.0, 0.0])
    xb, _ = flipped.offset_arcsec_to_pixel([1.0, 0.0])
    assert float(xa) < 15.5 < float(xb)
    # centre is the central pixel through the WCS
    assert normal.center.ra.deg == pytest.approx(150.0) and normal.center.dec.deg == pytest.approx(2.0)
    # offsets from the centre at high declination use the tangent plane (cos dec), not raw RA differences
    polar = read_legacy_cutout(write_legacy_cutout(tmp_path / "c.fits", 10.0, 80.0, size=32))
    offset = polar.sky_to_offset_arcsec(10.0 + 1.0 / 3600.0, 80.0)
    np.testing.assert_allclose(offset, [np.cos(np.deg2rad(80.0)), 0.0], atol=1e-6)


def test_cutout_bands_reorder_and_missing_band(tmp_path):
    path = write_legacy_cutout(tmp_path / "rz.fits", 150.0, 2.0, size=16, bands="zrg")
    cutout = read_legacy_cutout(path, bands=("g", "r", "z"))
    raw = fits.getdata(path)
    np.testing.assert_array_equal(cutout.image[0], raw[2])  # g was stored last
    assert cutout.bands == ("g", "r", "z")
    two = write_legacy_cutout(tmp_path / "gr.fits", 150.0, 2.0, size=16, bands="gr")
    with pytest.raises(GalSpecFormatError, match=r"gr\.fits: HDU PRIMARY: missing band\(s\) \['z'\]"):
        read_legacy_cutout(two, bands=("g", "r", "z"))


def test_cutout_without_band_keywords_or_wcs(tmp_path):
    fits.PrimaryHDU(np.zeros((3, 8, 8), np.float32)).writeto(tmp_path / "nobands.fits")
    with pytest.raises(GalSpecFormatError, match=r"nobands\.fits: HDU PRIMARY: header keywords BANDS"):
        read_legacy_cutout(tmp_path / "nobands.fits")
    hdu = fits.PrimaryHDU(np.zeros((3, 8, 8), np.float32))
    hdu.header["BANDS"] = "grz"
    hdu.writeto(tmp_path / "nowcs.fits")
    with pytest.raises(GalSpecFormatError, match=r"nowcs\.fits: HDU PRIMARY: expected a celestial WCS"):
        read_legacy_cutout(tmp_path / "nowcs.fits")


def test_cutout_crop_keeps_the_centre(tmp_path):
    cutout = read_legacy_cutout(write_legacy_cutout(tmp_path / "big.fits", 150.0, 2.0, size=40))
    cropped = cutout.crop_center(32)
    assert cropped.image.shape == (3, 32, 32)
    assert cropped.center.separation(cutout.center).arcsec < 1e-6
    np.testing.assert_array_equal(cropped.image, cutout.image[:, 4:36, 4:36])
    np.testing.assert_allclose(cropped.pixel_to_offset_arcsec(0, 0), cutout.pixel_to_offset_arcsec(4, 4), atol=1e-9)
    with pytest.raises(GalSpecFormatError, match="big.fits"):
        cutout.crop_center(31)


@pytest.mark.realdata
def test_cutout_header_has_the_real_cutouts_keywords(shared_file):
    real = fits.getheader(shared_file(LEGACY_CUTOUT))
    written = cutout_header(357.9087, -54.8817, 256, 256)
    mandatory = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "COMMENT"}
    assert list(written) == [key for key in real if key not in mandatory]
    for key in written:
        expected = pytest.approx(real[key], rel=1e-12) if key.startswith("CD") else real[key]  # 15 digits in the file
        assert written[key] == expected, key
        assert written.comments[key] == real.comments[key], key
