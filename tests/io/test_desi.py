"""galspec_hf.io.desi: DESI coadd and redrock files, real (../shared/data) and written by the tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from galspec_hf import constants as C
from galspec_hf.data.testing import make_targets, write_desi_coadd, write_redrock
from galspec_hf.errors import GalSpecFormatError, GalSpecFormatWarning
from galspec_hf.io import desi
from galspec_hf.io.desi import desi_wavelength_grid, read_desi_coadd, read_redrock

from .io_testing import DESI_COADD, DESI_REDROCK, line_peak_wavelength


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


# ----------------------------------------------------------------------------------------
# Files written by the tests
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


def test_target_row_finds_the_row_or_names_file_hdu_targetid_and_count(coadd_path):
    targets = make_targets(3, seed=1)
    coadd = read_desi_coadd(coadd_path)
    row = desi.target_row(coadd, targets[2].targetid)
    assert row == 2 and type(row) is int
    assert desi.target_row(coadd, np.int64(targets[1].targetid)) == 1
    with pytest.raises(GalSpecFormatError) as error:
        desi.target_row(coadd, 7)
    assert str(error.value) == (
        f"{coadd_path}: HDU FIBERMAP: TARGETID 7 is not in the file (HDU FIBERMAP has 3 targets)"
    )
    with pytest.raises(GalSpecFormatError, match=r"^elsewhere\.fits: HDU FIBERMAP: TARGETID 7 "):
        desi.target_row(coadd, 7, "elsewhere.fits")  # the file named in the error, when given


def test_coadd_without_fibermap_warns_or_refuses(tmp_path):
    path = write_desi_coadd(tmp_path / "coadd-x.fits", make_targets(2), with_fibermap=False)
    with pytest.warns(GalSpecFormatWarning, match="FIBERMAP"):
        coadd = read_desi_coadd(path)
    assert coadd.flux.shape == (2, C.DESI_NUM_PIXELS)
    assert np.all(np.isnan(coadd.fiber_offset_arcsec))
    with pytest.raises(GalSpecFormatError, match=r"coadd-x\.fits.*FIBERMAP"):
        read_desi_coadd(path, require_fibermap=True)


def test_coadd_missing_hdu_is_named(coadd_path):
    with fits.open(coadd_path) as hdul:
        del hdul["R_IVAR"]
        hdul.writeto(coadd_path.with_name("broken.fits"))
    with pytest.raises(GalSpecFormatError, match=r"broken\.fits: missing HDU R_IVAR"):
        read_desi_coadd(coadd_path.with_name("broken.fits"))


def test_coadd_truncated_or_garbage_file(coadd_path, tmp_path):
    data = coadd_path.read_bytes()
    for cut in (len(data) - 5000, len(data) // 2, 100):
        truncated = tmp_path / "truncated.fits"
        truncated.write_bytes(data[:cut])
        with pytest.raises(GalSpecFormatError, match=r"truncated\.fits"):
            read_desi_coadd(truncated)
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"not a fits file" * 300)
    with pytest.raises(GalSpecFormatError, match=r"garbage\.fits: not a readable FITS file"):
        read_desi_coadd(garbage)
    with pytest.raises(FileNotFoundError):
        read_desi_coadd(tmp_path / "absent.fits")


def test_coadd_off_grid_wavelength_and_bad_shape(coadd_path, tmp_path):
    with fits.open(coadd_path) as hdul:
        hdul["B_WAVELENGTH"].data = hdul["B_WAVELENGTH"].data + 0.3
        hdul.writeto(tmp_path / "shifted.fits")
    with pytest.raises(GalSpecFormatError, match=r"shifted\.fits: HDU B_WAVELENGTH: expected vacuum wavelengths"):
        read_desi_coadd(tmp_path / "shifted.fits")
    with fits.open(coadd_path) as hdul:
        hdul["Z_FLUX"].data = hdul["Z_FLUX"].data[:, :-1]
        hdul.writeto(tmp_path / "short.fits")
    with pytest.raises(GalSpecFormatError, match=r"short\.fits: HDU Z_FLUX: expected shape"):
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
    with pytest.raises(GalSpecFormatError, match=r"nodchi2\.fits: HDU REDSHIFTS: missing column DELTACHI2"):
        read_redrock(tmp_path / "nodchi2.fits")


def test_clean_coadd_raises_no_warning(coadd_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_desi_coadd(coadd_path)  # a clean file raises no warning


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


# ----------------------------------------------------------------------------------------
# The writers
# ----------------------------------------------------------------------------------------
def test_coadd_writer_round_trip_in_the_real_data_model(tmp_path):
    coadd = read_desi_coadd(write_desi_coadd(tmp_path / "coadd-main-dark-1.fits", make_targets(2)), keep_arms=True)
    fibermap = {name: coadd.fibermap[name] for name in coadd.fibermap.colnames}
    header = {"SURVEY": "main", "PROGRAM": ("dark", "program"), "HPXPIXEL": 1}
    path = desi.write_desi_coadd(
        tmp_path / "copy.fits", coadd.arms, header=header, fibermap=fibermap, all_columns=True
    )
    copy = read_desi_coadd(path, keep_arms=True)
    for name in ("flux", "ivar", "mask", "targetid", "fiber_offset_arcsec", "psf_to_fiber"):
        np.testing.assert_array_equal(getattr(copy, name), getattr(coadd, name), err_msg=name)
    assert (copy.survey, copy.program, copy.healpix) == ("main", "dark", 1)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "FIBERMAP"] + [
            f"{arm}_{plane}" for arm in "BRZ" for plane in ("WAVELENGTH", "FLUX", "IVAR", "MASK")
        ]  # the reader keeps no resolution: none is written
        columns = hdul["FIBERMAP"].columns
        assert columns.names == [name for name, _ in desi.FIBERMAP_COLUMNS]  # every column, in the real order
        assert columns["MEAN_FIBER_RA"].format == "D" and columns["OBJTYPE"].format == "3A"
        assert hdul["B_FLUX"].data.dtype == np.dtype(">f4") and hdul["B_MASK"].data.dtype == np.dtype(">i4")
        assert hdul["R_IVAR"].header["BUNIT"] == "10**+34 (s2 cm4 Angstrom2) / erg2"
        assert hdul[0].header.comments["PROGRAM"] == "program"


def test_writers_refuse_columns_and_arms_outside_the_data_model(tmp_path):
    arms = {"b": {"wavelength": np.arange(3), "flux": np.zeros((1, 3)), "ivar": np.ones((1, 3))}}
    with pytest.raises(ValueError, match=r"FIBERMAP: column\(s\) \['FIBER_COLOUR'\] not in the data model"):
        desi.write_desi_coadd(tmp_path / "a.fits", arms, fibermap={"TARGETID": [1], "FIBER_COLOUR": [2]})
    with pytest.raises(ValueError, match="arms must be among"):
        desi.write_desi_coadd(tmp_path / "a.fits", {"x": arms["b"]})
    with pytest.raises(ValueError, match=r"arm b: ivar must be \(1, 3\)"):
        desi.write_desi_coadd(tmp_path / "a.fits", {"b": {**arms["b"], "ivar": np.ones((2, 3))}})
    path = desi.write_redrock(tmp_path / "rr.fits", {"TARGETID": [7], "Z": [0.1]}, tsnr2={"TARGETID": [7]})
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "REDSHIFTS", "TSNR2"]
        assert hdul["REDSHIFTS"].columns.names == ["TARGETID", "Z"]
        assert hdul["TSNR2"].columns.names == ["TARGETID"]
