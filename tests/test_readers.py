"""Readers of the real survey formats: the real files in ../shared/data and files the tests write."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from galspec_hf import constants as C
from galspec_hf.data import (
    GalspecFormatError,
    GalspecFormatWarning,
    desi_wavelength_grid,
    read_desi_coadd,
    read_legacy_cutout,
    read_manga_cube,
    read_manga_maps,
    read_manga_spectra,
    read_redrock,
    read_sdss_spec,
)
from galspec_hf.data.testing import (
    make_targets,
    write_desi_coadd,
    write_legacy_cutout,
    write_manga_cube,
    write_redrock,
    write_sdss_spec,
)

DESI_COADD = "desi/coadd-4-80613-thru20210324.fits"
DESI_REDROCK = "desi/redrock-4-80613-thru20210324.fits"
LEGACY_CUTOUT = "legacysurvey/legacysurvey-dr9-grz-357.9087-54.8817.fits"
MANGA_MAPS = "manga/manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz"
MANGA_SPECTRA = "manga/MaNGA_test_spectra.fits.gz"


def line_peak_wavelength(wavelength, flux, expected, half_window=40.0):
    """Wavelength of the highest continuum-subtracted pixel within +-half_window A of ``expected``."""
    window = np.abs(wavelength - expected) < half_window
    continuum = np.median(flux[window])
    return wavelength[window][np.argmax(flux[window] - continuum)]


# ----------------------------------------------------------------------------------------
# Real files
# ----------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_desi_coadd_merges_arms_and_shows_lines_at_redrock_redshift(shared_file):
    coadd = read_desi_coadd(shared_file(DESI_COADD), keep_arms=True)
    redrock = read_redrock(shared_file(DESI_REDROCK))
    assert coadd.targetid.tolist() == [39633345008634465]
    assert coadd.flux.shape == coadd.ivar.shape == coadd.mask.shape == (1, C.DESI_NUM_PIXELS)
    np.testing.assert_allclose(coadd.wavelength[[0, -1]], [3600.0, 9824.0])
    # the arms' own wavelengths land on the merged grid
    for arm in "brz":
        arm_wave = coadd.arms[arm]["wavelength"]
        index = np.rint((arm_wave - 3600.0) / 0.8).astype(int)
        np.testing.assert_allclose(coadd.wavelength[index], arm_wave, atol=1e-6)

    z = float(redrock.z[redrock.targetid == coadd.targetid[0]][0])
    flux = coadd.flux[0]
    for line in ("Halpha", "OIII_5008", "Hbeta"):
        expected = C.EMISSION_LINES_VACUUM_A[line] * (1 + z)
        assert abs(line_peak_wavelength(coadd.wavelength, flux, expected) - expected) < 1.6, line
    # H-alpha is detected far above the noise
    window = np.abs(coadd.wavelength - C.EMISSION_LINES_VACUUM_A["Halpha"] * (1 + z)) < 4
    side = (np.abs(coadd.wavelength - C.EMISSION_LINES_VACUUM_A["Halpha"] * (1 + z)) > 15) & (
        np.abs(coadd.wavelength - C.EMISSION_LINES_VACUUM_A["Halpha"] * (1 + z)) < 60
    )
    line_flux = np.sum(flux[window] - np.median(flux[side])) * 0.8
    line_error = np.sqrt(np.sum(0.8**2 / coadd.ivar[0][window]))
    assert line_flux / line_error > 50

    # fiber offset: under 1 arcsec and equal to the FIBERMAP formula
    fibermap = coadd.fibermap
    east = (fibermap["MEAN_FIBER_RA"][0] - fibermap["TARGET_RA"][0]) * np.cos(np.deg2rad(fibermap["TARGET_DEC"][0]))
    north = fibermap["MEAN_FIBER_DEC"][0] - fibermap["TARGET_DEC"][0]
    np.testing.assert_allclose(coadd.fiber_offset_arcsec[0], np.array([east, north]) * 3600, rtol=1e-9)
    assert np.hypot(*coadd.fiber_offset_arcsec[0]) < 1.0
    assert coadd.coadd_fiberstatus.tolist() == [0]


@pytest.mark.realdata
def test_real_desi_overlap_is_inverse_variance_weighted(shared_file):
    coadd = read_desi_coadd(shared_file(DESI_COADD), keep_arms=True)
    b, r = coadd.arms["b"], coadd.arms["r"]
    # b/r overlap 5760-5800 A; pick pixels where both arms are good
    overlap = np.intersect1d(np.round(b["wavelength"], 3), np.round(r["wavelength"], 3))
    assert overlap.size == 51
    ib = np.searchsorted(np.round(b["wavelength"], 3), overlap)
    ir = np.searchsorted(np.round(r["wavelength"], 3), overlap)
    good = (b["mask"][0, ib] == 0) & (r["mask"][0, ir] == 0) & (b["ivar"][0, ib] > 0) & (r["ivar"][0, ir] > 0)
    assert good.sum() > 10
    wb, wr = b["ivar"][0, ib][good], r["ivar"][0, ir][good]
    expected = (wb * b["flux"][0, ib][good] + wr * r["flux"][0, ir][good]) / (wb + wr)
    merged = np.rint((overlap[good] - 3600) / 0.8).astype(int)
    np.testing.assert_allclose(coadd.flux[0, merged], expected, rtol=1e-5)
    np.testing.assert_allclose(coadd.ivar[0, merged], wb + wr, rtol=1e-5)
    # outside the overlaps the merged spectrum is the arm's own
    only_b = np.rint((b["wavelength"] - 3600) / 0.8).astype(int) < np.rint((5760 - 3600) / 0.8)
    usable = only_b & (b["mask"][0] == 0) & (b["ivar"][0] > 0)
    np.testing.assert_array_equal(coadd.flux[0, : usable.size][usable], b["flux"][0][usable])


@pytest.mark.realdata
def test_real_redrock(shared_file):
    redrock = read_redrock(shared_file(DESI_REDROCK))
    assert redrock.targetid.tolist() == [39633345008634465]
    np.testing.assert_allclose(redrock.z, [0.3687], atol=1e-4)
    assert redrock.spectype.tolist() == ["GALAXY"]
    assert redrock.zwarn.tolist() == [0]
    assert redrock.deltachi2[0] > 25
    assert 0 < redrock.zerr[0] < 1e-4


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


@pytest.mark.realdata
def test_real_manga_maps_channels_from_header_and_positive_halpha(shared_file):
    path = shared_file(MANGA_MAPS)
    maps = read_manga_maps(path)
    header = fits.getheader(path, "EMLINE_GFLUX")
    assert maps.line_names == tuple(str(header[f"C{i:02d}"]).strip() for i in range(1, 23))
    assert maps.emline_flux.shape == (22, 42, 42)
    flux, ivar, mask = maps.line_map("Ha-6564")
    good = mask == 0
    assert good.sum() > 500
    assert np.all(flux[good] > 0)
    assert np.all(ivar[good] > 0)
    # H-alpha is the strongest Balmer line: above H-beta in the summed map (dust makes it >= 2.86)
    hbeta, _, hbeta_mask = maps.line_map("Hb-4862")
    both = good & (hbeta_mask == 0)
    assert flux[both].sum() / hbeta[both].sum() > C.CASE_B_HALPHA_HBETA * 0.9
    # [NII] 6585 / [NII] 6550 follows the atomic-physics ratio ~3
    nii_b, _, mb = maps.line_map("NII-6585")
    nii_a, _, ma = maps.line_map("NII-6549")
    ok = (mb == 0) & (ma == 0)
    assert nii_b[ok].sum() / nii_a[ok].sum() == pytest.approx(C.NII_DOUBLET_RATIO, rel=0.1)
    # spaxel sky coordinates: on-sky X is east, agrees with the WCS, and the centre is near (0, 0)
    from astropy.coordinates import SkyCoord

    corner = maps.wcs.pixel_to_world(0, 0)
    centre = SkyCoord(maps.header["CRVAL1"], maps.header["CRVAL2"], unit="deg", frame=corner.frame)
    east, north = centre.spherical_offsets_to(corner)
    np.testing.assert_allclose(maps.spaxel_offset_arcsec[0, 0], [east.arcsec, north.arcsec], atol=0.05)
    assert maps.spaxel_offset_arcsec[0, 0, 0] > 0  # column 0 is east (RA grows to the left)
    assert np.hypot(*maps.spaxel_offset_arcsec[21, 21]) < 0.1
    # stellar velocity near the centre is close to systemic
    assert abs(maps.stellar_velocity[21, 21]) < 50
    with pytest.raises(KeyError, match="Ha-9999"):
        maps.line_index("Ha-9999")


@pytest.mark.realdata
def test_real_manga_spectra(shared_file):
    spectra = read_manga_spectra(shared_file(MANGA_SPECTRA))
    assert spectra.flux.shape == (8, C.MANGA_NUM_PIXELS)
    np.testing.assert_allclose(np.log10(spectra.wavelength[0]), C.MANGA_LOGLAM0, atol=1e-6)
    np.testing.assert_allclose(np.diff(np.log10(spectra.wavelength)), C.MANGA_LOGLAM_STEP, rtol=1e-4)
    assert np.all((spectra.redshift > 0.01) & (spectra.redshift < 0.06))
    good = (spectra.ivar > 0) & (spectra.mask == 0)
    assert np.all(np.isfinite(spectra.flux[good]))
    has_data = good.any(axis=1)
    assert has_data.sum() >= 7  # one of the eight spaxels is fully masked
    assert np.all(np.nanmedian(np.where(good, spectra.flux, np.nan)[has_data], axis=1) > 0)
    # galaxy spectra at the NSA redshifts: a 4000 A break (Dn4000 > 1.2) in every unmasked spectrum
    for i in np.flatnonzero(has_data):
        rest = spectra.wavelength / (1 + spectra.redshift[i])
        blue = good[i] & (rest > C.DN4000_BLUE_A[0]) & (rest < C.DN4000_BLUE_A[1])
        red = good[i] & (rest > C.DN4000_RED_A[0]) & (rest < C.DN4000_RED_A[1])
        assert blue.sum() > 50 and red.sum() > 50
        assert spectra.flux[i][red].mean() / spectra.flux[i][blue].mean() > 1.2
    assert np.all(spectra.spectral_resolution[good] > 1000)


# ----------------------------------------------------------------------------------------
# DESI coadd / redrock written by the tests
# ----------------------------------------------------------------------------------------
@pytest.fixture
def coadd_path(tmp_path) -> Path:
    return write_desi_coadd(tmp_path / "coadd-main-dark-10032.fits", make_targets(3, seed=1))


def test_written_coadd_lines_fiber_offsets_and_header(coadd_path):
    targets = make_targets(3, seed=1)
    coadd = read_desi_coadd(coadd_path)
    assert coadd.targetid.tolist() == [t.targetid for t in targets]
    assert (coadd.survey, coadd.program, coadd.healpix) == ("main", "dark", 10032)
    np.testing.assert_allclose(coadd.fiber_offset_arcsec, [t.fiber_offset_arcsec for t in targets], atol=1e-6)
    for i, target in enumerate(targets):
        expected = C.EMISSION_LINES_VACUUM_A["Halpha"] * (1 + target.z)
        assert abs(line_peak_wavelength(coadd.wavelength, coadd.flux[i], expected) - expected) < 0.9
    # constant ivar 100 per arm: 200 in the overlaps, 100 elsewhere
    assert coadd.ivar[0, np.searchsorted(coadd.wavelength, 5780.0)] == pytest.approx(200.0)
    assert coadd.ivar[0, np.searchsorted(coadd.wavelength, 5000.0)] == pytest.approx(100.0)


def test_coadd_masked_pixel_in_overlap_takes_the_other_arm(coadd_path):
    j = np.searchsorted(desi_wavelength_grid(), 5780.0)
    with fits.open(coadd_path, mode="update") as hdul:
        ib = np.searchsorted(hdul["B_WAVELENGTH"].data, 5780.0)
        ir = np.searchsorted(hdul["R_WAVELENGTH"].data, 5780.0)
        hdul["B_MASK"].data[0, ib] = 2
        hdul["B_FLUX"].data[0, ib] = 1e6
        r_flux = float(hdul["R_FLUX"].data[0, ir])
    coadd = read_desi_coadd(coadd_path)
    assert coadd.flux[0, j] == pytest.approx(r_flux)
    assert coadd.ivar[0, j] == pytest.approx(100.0)
    assert coadd.mask[0, j] == 0  # the r arm is good there
    # both arms flagged, with different bits: no data, and the mask keeps both bits
    with fits.open(coadd_path, mode="update") as hdul:
        hdul["R_MASK"].data[0, ir] = 4
    coadd = read_desi_coadd(coadd_path)
    assert (coadd.ivar[0, j], coadd.flux[0, j], coadd.mask[0, j]) == (0.0, 0.0, 2 | 4)
    assert np.count_nonzero(coadd.mask) == 1 and np.count_nonzero(coadd.ivar == 0) == 1


def test_coadd_nan_flux_and_negative_ivar_are_counted_and_excluded(coadd_path):
    with fits.open(coadd_path, mode="update") as hdul:
        hdul["B_FLUX"].data[1, 100:103] = np.nan
        hdul["Z_IVAR"].data[2, 50] = -1.0
    coadd = read_desi_coadd(coadd_path)
    assert coadd.n_nonfinite_flux.tolist() == [0, 3, 0]
    assert coadd.n_negative_ivar.tolist() == [0, 0, 1]
    assert np.all(np.isfinite(coadd.flux))
    assert np.all(coadd.ivar[1, 100:103] == 0)


def test_coadd_without_fibermap_warns_or_refuses(tmp_path):
    path = write_desi_coadd(tmp_path / "coadd-x.fits", make_targets(2), with_fibermap=False)
    with pytest.warns(GalspecFormatWarning, match="FIBERMAP"):
        coadd = read_desi_coadd(path)
    assert coadd.flux.shape == (2, C.DESI_NUM_PIXELS)
    assert np.all(np.isnan(coadd.fiber_offset_arcsec))
    with pytest.raises(GalspecFormatError, match=r"coadd-x\.fits.*FIBERMAP"):
        read_desi_coadd(path, require_fibermap=True)


def test_coadd_missing_hdu_is_named(coadd_path):
    with fits.open(coadd_path) as hdul:
        del hdul["R_IVAR"]
        hdul.writeto(coadd_path.with_name("broken.fits"))
    with pytest.raises(GalspecFormatError, match=r"broken\.fits: missing HDU R_IVAR"):
        read_desi_coadd(coadd_path.with_name("broken.fits"))


def test_coadd_truncated_or_garbage_file(coadd_path, tmp_path):
    data = coadd_path.read_bytes()
    for cut in (len(data) - 5000, len(data) // 2, 100):
        truncated = tmp_path / "truncated.fits"
        truncated.write_bytes(data[:cut])
        with pytest.raises(GalspecFormatError, match=r"truncated\.fits"):
            read_desi_coadd(truncated)
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"not a fits file" * 300)
    with pytest.raises(GalspecFormatError, match=r"garbage\.fits: not a readable FITS file"):
        read_desi_coadd(garbage)
    with pytest.raises(FileNotFoundError):
        read_desi_coadd(tmp_path / "absent.fits")


def test_coadd_off_grid_wavelength_and_bad_shape(coadd_path, tmp_path):
    with fits.open(coadd_path) as hdul:
        hdul["B_WAVELENGTH"].data = hdul["B_WAVELENGTH"].data + 0.3
        hdul.writeto(tmp_path / "shifted.fits")
    with pytest.raises(GalspecFormatError, match=r"shifted\.fits: HDU B_WAVELENGTH: expected vacuum wavelengths"):
        read_desi_coadd(tmp_path / "shifted.fits")
    with fits.open(coadd_path) as hdul:
        hdul["Z_FLUX"].data = hdul["Z_FLUX"].data[:, :-1]
        hdul.writeto(tmp_path / "short.fits")
    with pytest.raises(GalspecFormatError, match=r"short\.fits: HDU Z_FLUX: expected shape"):
        read_desi_coadd(tmp_path / "short.fits")


def test_redrock_written_and_missing_column(tmp_path):
    targets = make_targets(4, seed=3)
    targets[1].zwarn, targets[2].spectype = 4, "STAR"
    path = write_redrock(tmp_path / "redrock-main-dark-1.fits", targets)
    redrock = read_redrock(path)
    assert redrock.targetid.tolist() == [t.targetid for t in targets]
    np.testing.assert_allclose(redrock.z, [t.z for t in targets])
    assert redrock.zwarn.tolist() == [0, 4, 0, 0]
    assert redrock.spectype.tolist() == ["GALAXY", "GALAXY", "STAR", "GALAXY"]
    with fits.open(path) as hdul:
        table = hdul["REDSHIFTS"].data
        cols = [c for c in hdul["REDSHIFTS"].columns if c.name != "DELTACHI2"]
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="REDSHIFTS")]).writeto(
            tmp_path / "nodchi2.fits"
        )
        assert len(table) == 4
    with pytest.raises(GalspecFormatError, match=r"nodchi2\.fits: HDU REDSHIFTS: missing column DELTACHI2"):
        read_redrock(tmp_path / "nodchi2.fits")


# ----------------------------------------------------------------------------------------
# Legacy cutouts written by the tests
# ----------------------------------------------------------------------------------------
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
    with pytest.raises(GalspecFormatError, match=r"gr\.fits: HDU PRIMARY: missing band\(s\) \['z'\]"):
        read_legacy_cutout(two, bands=("g", "r", "z"))


def test_cutout_without_band_keywords_or_wcs(tmp_path):
    fits.PrimaryHDU(np.zeros((3, 8, 8), np.float32)).writeto(tmp_path / "nobands.fits")
    with pytest.raises(GalspecFormatError, match=r"nobands\.fits: HDU PRIMARY: header keywords BANDS"):
        read_legacy_cutout(tmp_path / "nobands.fits")
    hdu = fits.PrimaryHDU(np.zeros((3, 8, 8), np.float32))
    hdu.header["BANDS"] = "grz"
    hdu.writeto(tmp_path / "nowcs.fits")
    with pytest.raises(GalspecFormatError, match=r"nowcs\.fits: HDU PRIMARY: expected a celestial WCS"):
        read_legacy_cutout(tmp_path / "nowcs.fits")


def test_cutout_crop_keeps_the_centre(tmp_path):
    cutout = read_legacy_cutout(write_legacy_cutout(tmp_path / "big.fits", 150.0, 2.0, size=40))
    cropped = cutout.crop_center(32)
    assert cropped.image.shape == (3, 32, 32)
    assert cropped.center.separation(cutout.center).arcsec < 1e-6
    np.testing.assert_array_equal(cropped.image, cutout.image[:, 4:36, 4:36])
    np.testing.assert_allclose(cropped.pixel_to_offset_arcsec(0, 0), cutout.pixel_to_offset_arcsec(4, 4), atol=1e-9)
    with pytest.raises(GalspecFormatError, match="big.fits"):
        cutout.crop_center(31)


# ----------------------------------------------------------------------------------------
# MaNGA LOGCUBE and SDSS spec written by the tests
# ----------------------------------------------------------------------------------------
def test_manga_cube_in_drp_layout(tmp_path):
    z = 0.03
    path = write_manga_cube(tmp_path / "manga-0000-0000-LOGCUBE.fits", 200.0, 30.0, n_spaxel=7, n_wave=3000, z=z)
    cube = read_manga_cube(path)
    assert cube.flux.shape == cube.ivar.shape == cube.mask.shape == (3000, 7, 7)
    np.testing.assert_allclose(np.log10(cube.wavelength[:2]), [C.MANGA_LOGLAM0, C.MANGA_LOGLAM0 + 1e-4], atol=1e-9)
    assert cube.spaxel_arcsec == pytest.approx(C.MANGA_SPAXEL_ARCSEC)
    np.testing.assert_allclose(cube.spaxel_offset_arcsec[3, 3], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(cube.spaxel_offset_arcsec[3, 2], [0.5, 0.0], atol=1e-6)  # left = east
    np.testing.assert_allclose(cube.spaxel_offset_arcsec[4, 3], [0.0, 0.5], atol=1e-6)  # up = north
    expected = C.EMISSION_LINES_VACUUM_A["Halpha"] * (1 + z)
    assert abs(line_peak_wavelength(cube.wavelength, cube.flux[:, 3, 3], expected) - expected) < 2.0
    assert cube.flux[:, 3, 3].sum() > cube.flux[:, 0, 0].sum()


def test_manga_cube_missing_wave_is_named(tmp_path):
    path = write_manga_cube(tmp_path / "cube.fits", 200.0, 30.0)
    with fits.open(path) as hdul:
        del hdul["WAVE"]
        hdul.writeto(tmp_path / "nowave.fits")
    with pytest.raises(GalspecFormatError, match=r"nowave\.fits: missing HDU WAVE"):
        read_manga_cube(tmp_path / "nowave.fits")


def test_sdss_spec(tmp_path):
    spectrum = read_sdss_spec(write_sdss_spec(tmp_path / "spec-1000-52000-0001.fits", z=0.12, ra=181.0, dec=11.0))
    assert spectrum.redshift == pytest.approx(0.12)
    assert (spectrum.ra, spectrum.dec) == (181.0, 11.0)
    np.testing.assert_allclose(spectrum.wavelength[0], C.SDSS_WAVELENGTH_MIN_A, rtol=1e-6)
    expected = C.EMISSION_LINES_VACUUM_A["Halpha"] * 1.12
    assert abs(line_peak_wavelength(spectrum.wavelength, spectrum.flux, expected) - expected) < 2.0
    with fits.open(tmp_path / "spec-1000-52000-0001.fits") as hdul:
        fits.HDUList([hdul[0].copy()]).writeto(tmp_path / "nocoadd.fits")
    with pytest.raises(GalspecFormatError, match=r"nocoadd\.fits: missing HDU COADD"):
        read_sdss_spec(tmp_path / "nocoadd.fits")


def test_clean_coadd_raises_no_warning(coadd_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_desi_coadd(coadd_path)  # a clean file raises no warning


# ----------------------------------------------------------------------------------------
# Point-source calibration (FIBERMAP MEAN_PSF_TO_FIBER_SPECFLUX)
# ----------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_desi_coadd_psf_to_fiber_is_read_and_flux_left_as_stored(shared_file):
    path = shared_file(DESI_COADD)
    coadd = read_desi_coadd(path, keep_arms=True)
    stored = float(fits.getdata(path, "FIBERMAP")["MEAN_PSF_TO_FIBER_SPECFLUX"][0])
    assert coadd.psf_to_fiber.tolist() == [pytest.approx(stored, rel=1e-7)]
    assert stored == pytest.approx(0.779, abs=5e-4)
    # the merged flux is the file's (point-source calibrated) flux, not multiplied by the factor
    b = coadd.arms["b"]
    good = (b["mask"][0] == 0) & (b["ivar"][0] > 0)
    np.testing.assert_array_equal(coadd.flux[0, :400][good[:400]], b["flux"][0, :400][good[:400]])


def test_desi_coadd_without_psf_to_fiber_column_reads_nan(tmp_path):
    path = write_desi_coadd(tmp_path / "coadd-main-dark-1.fits", make_targets(2))
    with fits.open(path) as hdul:
        columns = [c for c in hdul["FIBERMAP"].columns if c.name != "MEAN_PSF_TO_FIBER_SPECFLUX"]
        hdul["FIBERMAP"] = fits.BinTableHDU.from_columns(columns, name="FIBERMAP")
        hdul.writeto(path, overwrite=True)
    assert np.all(np.isnan(read_desi_coadd(path).psf_to_fiber))


def test_simulated_coadd_is_calibrated_for_point_sources(tmp_path):
    """The simulator writes fiber flux / (point-source fiber fraction) and ivar x fraction^2, like DESI's
    standard-star calibration; its MEAN_PSF_TO_FIBER_SPECFLUX is desispec's factor to the nominal fiber flux."""
    import dataclasses  # noqa: PLC0415
    import math  # noqa: PLC0415

    from galspec_hf.simulate import spectra as S  # noqa: PLC0415
    from galspec_hf.simulate.survey import simulate_galaxy  # noqa: PLC0415
    from galspec_hf.simulate.templates import load_templates  # noqa: PLC0415

    templates = load_templates(None)
    sims = [simulate_galaxy(i, 7, templates, cutout_size=16) for i in range(2)]
    # fiber on the target: a Gaussian PSF of FWHM s puts 1 - exp(-R^2 / (2 sigma^2)) of a point source inside the
    # fiber radius R, sigma = s / 2.3548 (closed form, independent of the simulator's kernel tables)
    galaxies = [dataclasses.replace(s.galaxy, fiber_east_arcsec=0.0, fiber_north_arcsec=0.0) for s in sims]
    photometry, observed = [s.photometry for s in sims], [s.observed for s in sims]
    path = S.write_coadd(tmp_path / "coadd.fits", galaxies, photometry, observed, 1)
    coadd = read_desi_coadd(path, keep_arms=True)
    radius = C.DESI_FIBER_DIAMETER_ARCSEC / 2
    np.testing.assert_allclose(coadd.psf_to_fiber, S.psf_to_fiber_factors(galaxies), rtol=1e-6)
    for i, galaxy in enumerate(galaxies):
        seeing = round(galaxy.fiber_seeing_fwhm_arcsec / 0.02) * 0.02  # the kernel table's 0.02" steps
        sigma = seeing / (2 * math.sqrt(2 * math.log(2)))
        point_source = 1 - math.exp(-(radius**2) / (2 * sigma**2))
        assert S.point_source_fractions([galaxy])[0] == pytest.approx(point_source, rel=2e-3)
        for arm in "brz":
            fiber_flux, fiber_ivar = sims[i].observed[arm]
            np.testing.assert_allclose(coadd.arms[arm]["flux"][i] * point_source, fiber_flux, rtol=3e-3)
            np.testing.assert_allclose(coadd.arms[arm]["ivar"][i] / point_source**2, fiber_ivar, rtol=6e-3)
