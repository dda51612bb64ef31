"""galspec_hf.io.manga: MaNGA LOGCUBEs, DAP MAPS and spaxel spectra, real (../shared/data) and written."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from galspec_hf import constants as C
from galspec_hf.data.testing import write_manga_cube
from galspec_hf.errors import GalSpecFormatError
from galspec_hf.io.manga import (
    read_manga_cube,
    read_manga_maps,
    read_manga_spectra,
    spaxel_wcs_header,
    write_manga_maps,
)

from .io_testing import MANGA_MAPS, MANGA_SPECTRA, line_peak_wavelength


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
    with pytest.raises(GalSpecFormatError, match=r"nowave\.fits: missing HDU WAVE"):
        read_manga_cube(tmp_path / "nowave.fits")


def test_maps_writer_round_trip_and_dap_header_conventions(tmp_path):
    n, channels = 5, ("Hb-4862", "Ha-6564")
    flux = np.arange(2 * n * n, dtype=np.float32).reshape(2, n, n)
    y, x = np.mgrid[0:n, 0:n]
    skycoo = np.stack([-(x - 2.0), y - 2.0]).astype(np.float32) * 0.5
    maps = {
        "SPX_SKYCOO": (skycoo, "arcsec", ("On-sky X", "On-sky Y")),
        "STELLAR_VEL": (np.zeros((n, n), np.float32), "km/s", None),
        "STELLAR_VEL_MASK": (np.zeros((n, n), np.int32), None, None),
        "EMLINE_GFLUX": (flux, "1E-17 erg/s/cm^2/spaxel", channels),
        "EMLINE_GFLUX_IVAR": (np.ones_like(flux), "(1E-17 erg/s/cm^2/spaxel)^{-2}", channels),
        "EMLINE_GFLUX_MASK": (np.zeros(flux.shape, np.int32), None, channels),
        "EMLINE_GVEL": (np.zeros_like(flux), "km/s", channels),
        "EMLINE_GVEL_MASK": (np.zeros(flux.shape, np.int32), None, channels),
    }
    wcs = spaxel_wcs_header(fits.Header(), 150.0, 2.0, n, n, C.MANGA_SPAXEL_ARCSEC, matrix="pc")
    path = write_manga_maps(tmp_path / "maps.fits.gz", maps, wcs_header=wcs, primary_header={"PLATEIFU": "1-1"})
    read = read_manga_maps(path)
    assert read.line_names == channels
    np.testing.assert_array_equal(read.line_map("Ha-6564")[0], flux[1])
    np.testing.assert_allclose(read.spaxel_offset_arcsec[2, 1], [0.5, 0.0])
    assert read.wcs.pixel_to_world(2, 2).ra.deg == pytest.approx(150.0)
    with fits.open(path) as hdul:
        assert fits.getval(path, "PLATEIFU") == "1-1"
        flux_header, ivar_header = hdul["EMLINE_GFLUX"].header, hdul["EMLINE_GFLUX_IVAR"].header
        assert (flux_header["HDUCLAS2"], flux_header["ERRDATA"], flux_header["QUALDATA"]) == (
            "DATA",
            "EMLINE_GFLUX_IVAR",
            "EMLINE_GFLUX_MASK",
        )
        assert ivar_header["HDUCLAS2"] == "ERROR" and hdul["EMLINE_GFLUX_MASK"].header["HDUCLAS2"] == "QUALITY"
        assert (
            "ERRDATA" not in hdul["EMLINE_GVEL"].header
            and hdul["EMLINE_GVEL"].header["QUALDATA"] == "EMLINE_GVEL_MASK"
        )
        assert all(h.header["MASKNAME"] == "MANGA_DAPPIXMASK" for h in hdul[1:])
        assert hdul["STELLAR_VEL"].header["PC1_1"] == pytest.approx(-C.MANGA_SPAXEL_ARCSEC / 3600)


def test_manga_spectra_writer_round_trips_and_names_bad_input(tmp_path):
    """write_manga_spectra writes the layout read_manga_spectra reads (the DAP's test-data layout); arrays of the
    wrong shape are refused by name."""
    from galspec_hf.io import read_manga_spectra, write_manga_spectra

    rng = np.random.default_rng(0)
    wavelength = np.linspace(3600.0, 10300.0, 50)
    flux, ivar = rng.normal(size=(3, 50)), rng.uniform(1, 2, (3, 50))
    path = write_manga_spectra(tmp_path / "spectra.fits", wavelength, flux, ivar, [0.01, 0.02, 0.03], 2000.0)
    read = read_manga_spectra(path)
    np.testing.assert_array_equal(read.wavelength, wavelength)
    np.testing.assert_allclose(read.flux, flux, rtol=1e-6)
    np.testing.assert_allclose(read.ivar, ivar, rtol=1e-6)
    np.testing.assert_array_equal(read.mask, 0)
    np.testing.assert_array_equal(read.spectral_resolution, 2000.0)
    np.testing.assert_array_equal(read.redshift, [0.01, 0.02, 0.03])
    with pytest.raises(ValueError, match="IVAR"):
        write_manga_spectra(tmp_path / "bad.fits", wavelength, flux, ivar[:, :10], [0.0] * 3, 2000.0)
    with pytest.raises(ValueError, match="`redshift`"):
        write_manga_spectra(tmp_path / "bad.fits", wavelength, flux, ivar, [0.0], 2000.0)
