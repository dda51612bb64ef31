"""The DesiGalaxies builder and `galspec build-dataset`, on FITS files written by the tests in the real layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galspec_hf import constants as C
from galspec_hf.cli import main
from galspec_hf.data import DesiGalaxies, read_build_report, read_desi_coadd, read_legacy_cutout
from galspec_hf.data.testing import (
    make_targets,
    write_desi_coadd,
    write_desi_folder,
    write_legacy_cutout,
    write_redrock,
)
from galspec_hf.io.desi import desi_wavelength_grid
from galspec_hf.simulate.galaxy import ab_nanomaggies

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 32


@pytest.fixture(autouse=True)
def _quiet_progress():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def build(data_dir, cache_dir, **config_kwargs):
    """Prepare a DesiGalaxies data set from ``data_dir`` with 32-pixel images."""
    builder = DesiGalaxies(data_dir=data_dir, cache_dir=str(cache_dir), image_size=IMAGE_SIZE, **config_kwargs)
    builder.download_and_prepare()
    return builder


def test_rows_match_the_input_files(tmp_path):
    truth = write_desi_folder(tmp_path / "in", n_files=2, n_per_file=3, image_size=IMAGE_SIZE)
    builder = build(tmp_path / "in", tmp_path / "cache")
    dataset = builder.as_dataset(split="train").with_format("numpy")
    assert sorted(int(t) for t in dataset["targetid"]) == sorted(truth)
    features = dataset.features
    assert isinstance(features["image"], datasets.Array3D) and features["image"].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert features["flux"].length == C.DESI_NUM_PIXELS and features["mask"].feature.dtype == "bool"

    coadds = {p.name: read_desi_coadd(p) for p in (tmp_path / "in" / "healpix").glob("coadd-*.fits")}
    for row in dataset:
        target = truth[int(row["targetid"])]
        coadd = coadds[row["coadd_file"]]
        i = coadd.targetid.tolist().index(target.targetid)
        # the row holds the fiber flux: the file's point-source flux x MEAN_PSF_TO_FIBER_SPECFLUX
        np.testing.assert_allclose(row["flux"], coadd.flux[i] * target.psf_to_fiber, rtol=1e-6)
        np.testing.assert_allclose(row["ivar"], coadd.ivar[i] / target.psf_to_fiber**2, rtol=1e-6)
        assert row["psf_to_fiber"] == pytest.approx(target.psf_to_fiber, rel=1e-6)
        assert row["image"].shape == (3, IMAGE_SIZE, IMAGE_SIZE) and row["image"].dtype == np.float32
        cutout = read_legacy_cutout(tmp_path / "in" / "cutouts" / f"cutout-{target.targetid}.fits")
        np.testing.assert_array_equal(row["image"], cutout.image)
        # cutout centred on the target: the fiber offset from the centre is the fiber-target offset
        np.testing.assert_allclose(row["fiber_offset"], target.fiber_offset_arcsec, atol=1e-3)
        assert row["redshift"] == pytest.approx(target.z, rel=1e-6)
        assert (row["ra"], row["dec"]) == (pytest.approx(target.ra, abs=1e-12), pytest.approx(target.dec, abs=1e-12))
        assert row["object_id"] == str(target.targetid)
        assert (row["survey"], row["program"], row["spectype"], row["zwarn"]) == ("main", "dark", "GALAXY", 0)
        assert row["healpix"] == int(row["coadd_file"].split("-")[-1].split(".")[0])
        assert row["fiber_diameter"] == pytest.approx(1.5)
        assert row["pixel_scale"] == pytest.approx(0.262, rel=1e-5)
        assert not row["mask"][100] and row["ivar"][100] > 0
    report = read_build_report(builder.cache_dir)
    counts = {k: report[k] for k in ("n_coadd_files", "n_spectra_read", "n_written", "n_skipped")}
    assert counts == {"n_coadd_files": 2, "n_spectra_read": 6, "n_written": 6, "n_skipped": 0}


def test_cutouts_matched_by_sky_position_and_cropped(tmp_path):
    truth = write_desi_folder(tmp_path / "in", 1, 3, image_size=IMAGE_SIZE + 8, name_cutouts_by_targetid=False)
    builder = build(tmp_path / "in", tmp_path / "cache")
    dataset = builder.as_dataset(split="train").with_format("numpy")
    assert sorted(int(t) for t in dataset["targetid"]) == sorted(truth)
    for row in dataset:
        target = truth[int(row["targetid"])]
        assert row["image"].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
        np.testing.assert_allclose(row["fiber_offset"], target.fiber_offset_arcsec, atol=1e-3)


def test_fiber_offset_is_measured_from_the_cutout_centre_through_its_wcs(tmp_path):
    """A cutout centred 2 arcsec north of the target, with RA growing to the right: offsets follow the WCS."""
    (tmp_path / "in").mkdir()
    target = make_targets(1, seed=5)[0]
    write_desi_coadd(tmp_path / "in" / "coadd-main-dark-7.fits", [target], healpix=7)
    write_redrock(tmp_path / "in" / "redrock-main-dark-7.fits", [target])
    write_legacy_cutout(
        tmp_path / "in" / f"cutout-{target.targetid}.fits",
        target.ra,
        target.dec + 2.0 / 3600.0,
        size=IMAGE_SIZE,
        east_left=False,
    )
    row = build(tmp_path / "in", tmp_path / "cache").as_dataset(split="train")[0]
    east, north = target.fiber_offset_arcsec
    np.testing.assert_allclose(row["fiber_offset"], [east, north - 2.0], atol=1e-3)


@pytest.mark.realdata
def test_real_desi_files_through_the_builder(shared_file, tmp_path):
    """The real coadd + redrock (linked, not copied) with a cutout written on the real target."""
    (tmp_path / "in").mkdir()
    for name in ("coadd-4-80613-thru20210324.fits", "redrock-4-80613-thru20210324.fits"):
        (tmp_path / "in" / name).symlink_to(shared_file(f"desi/{name}"))
    coadd = read_desi_coadd(tmp_path / "in" / "coadd-4-80613-thru20210324.fits")
    targetid = int(coadd.targetid[0])
    write_legacy_cutout(
        tmp_path / "in" / f"cutout-{targetid}.fits", coadd.target_ra[0], coadd.target_dec[0], size=IMAGE_SIZE
    )
    builder = build(tmp_path / "in", tmp_path / "cache")
    rows = list(builder.as_dataset(split="train").with_format("numpy"))
    assert len(rows) == 1 and int(rows[0]["targetid"]) == targetid == 39633345008634465
    # fiber flux = point-source flux x MEAN_PSF_TO_FIBER_SPECFLUX, 0.779 in this file's FIBERMAP
    fibermap = fits.getdata(tmp_path / "in" / "coadd-4-80613-thru20210324.fits", "FIBERMAP")
    factor = float(fibermap["MEAN_PSF_TO_FIBER_SPECFLUX"][0])
    assert factor == pytest.approx(0.779, abs=5e-4)
    np.testing.assert_allclose(rows[0]["flux"], coadd.flux[0] * factor, rtol=1e-6)
    # cutout centred on the target: the fiber offset is the coadd's fiber-minus-target offset
    np.testing.assert_allclose(rows[0]["fiber_offset"], coadd.fiber_offset_arcsec[0], atol=1e-4)
    assert rows[0]["redshift"] == pytest.approx(0.36874, abs=1e-5)
    assert (rows[0]["spectype"], rows[0]["zwarn"], rows[0]["healpix"]) == ("GALAXY", 0, -1)
    assert read_build_report(builder.cache_dir)["n_skipped"] == 0


def write_bad_folder(root: Path) -> dict:
    """One good file pair plus every kind of bad input; returns the TARGETIDs expected in the output."""
    healpix_dir, cutout_dir = root / "healpix", root / "cutouts"
    healpix_dir.mkdir(parents=True)
    cutout_dir.mkdir()

    good = make_targets(10, seed=11, first_targetid=1000)
    good[1].zwarn = 4
    good[2].spectype = "STAR"
    good[3].deltachi2 = 10.0
    good[4].coadd_fiberstatus = 8
    good[5].z = 1.5
    write_desi_coadd(healpix_dir / "coadd-main-dark-1.fits", good, healpix=1)
    write_redrock(healpix_dir / "redrock-main-dark-1.fits", good)
    with fits.open(healpix_dir / "coadd-main-dark-1.fits", mode="update") as hdul:
        hdul["R_FLUX"].data[6, 10:12] = np.nan  # NaN flux -> record skipped
        hdul["B_IVAR"].data[7, 5] = -2.0  # negative ivar -> record skipped
    for t in good[:9]:  # target 1009 has no cutout
        write_legacy_cutout(cutout_dir / f"cutout-{t.targetid}.fits", t.ra, t.dec, size=IMAGE_SIZE)
    # target 0 keeps a good cutout; target 8 gets a cutout of the wrong shape (odd crop impossible)
    write_legacy_cutout(cutout_dir / f"cutout-{good[8].targetid}.fits", good[8].ra, good[8].dec, size=IMAGE_SIZE - 3)

    more = make_targets(3, seed=12, first_targetid=2000)
    write_desi_coadd(healpix_dir / "coadd-main-dark-2.fits", more, healpix=2)
    write_redrock(healpix_dir / "redrock-main-dark-2.fits", more[:2])  # third TARGETID missing from redrock
    write_legacy_cutout(cutout_dir / f"cutout-{more[0].targetid}.fits", more[0].ra, more[0].dec, size=IMAGE_SIZE)
    write_legacy_cutout(  # missing the z band
        cutout_dir / f"cutout-{more[1].targetid}.fits", more[1].ra, more[1].dec, size=IMAGE_SIZE, bands="gr"
    )

    other = make_targets(2, seed=13, first_targetid=3000)
    write_desi_coadd(healpix_dir / "coadd-main-dark-3.fits", other, healpix=3)
    write_redrock(healpix_dir / "redrock-main-dark-3.fits", make_targets(2, seed=13, first_targetid=4000))  # mismatch

    truncated = write_desi_coadd(healpix_dir / "coadd-main-dark-4.fits", make_targets(2, first_targetid=5000))
    write_redrock(healpix_dir / "redrock-main-dark-4.fits", make_targets(2, first_targetid=5000))
    truncated.write_bytes(truncated.read_bytes()[:-20000])

    missing = write_desi_coadd(healpix_dir / "coadd-main-dark-5.fits", make_targets(2, first_targetid=6000))
    write_redrock(healpix_dir / "redrock-main-dark-5.fits", make_targets(2, first_targetid=6000))
    with fits.open(missing) as hdul:
        del hdul["Z_FLUX"]
        hdul.writeto(missing, overwrite=True)

    write_desi_coadd(healpix_dir / "coadd-main-dark-6.fits", make_targets(1, first_targetid=7000))  # no redrock
    (cutout_dir / "corrupt.fits").write_bytes(b"garbage" * 100)  # unnamed, unreadable cutout
    return {"written": {good[0].targetid, more[0].targetid}}


def test_bad_inputs_are_skipped_counted_and_reported(tmp_path):
    expected = write_bad_folder(tmp_path / "in")
    builder = build(tmp_path / "in", tmp_path / "cache")
    dataset = builder.as_dataset(split="train")
    assert set(dataset["targetid"]) == expected["written"]

    report = read_build_report(builder.cache_dir)
    assert report["n_written"] == 2
    by_target = {(r["targetid"], r["kind"]): r for r in report["skipped"] if r["targetid"] is not None}
    by_file = {Path(r["file"]).name: r for r in report["skipped"] if r["targetid"] is None}
    assert "ZWARN = 4" in by_target[(1001, "cut")]["reason"]
    assert "SPECTYPE 'STAR'" in by_target[(1002, "cut")]["reason"]
    assert "DELTACHI2" in by_target[(1003, "cut")]["reason"]
    assert "COADD_FIBERSTATUS = 8" in by_target[(1004, "cut")]["reason"]
    assert "Z = 1.5000" in by_target[(1005, "cut")]["reason"]
    assert "2 non-finite pixels in *_FLUX" in by_target[(1006, "bad_record")]["reason"]
    assert "1 negative pixels in *_IVAR" in by_target[(1007, "bad_record")]["reason"]
    assert "29x29" in by_target[(1008, "bad_cutout")]["reason"]
    assert "missing band(s) ['z']" in by_target[(2001, "bad_cutout")]["reason"]
    assert (
        "not in" in by_target[(2002, "bad_record")]["reason"]
        and "REDSHIFTS" in by_target[(2002, "bad_record")]["reason"]
    )
    assert "no TARGETID in common" in by_file["coadd-main-dark-3.fits"]["reason"]
    assert "truncated" in by_file["coadd-main-dark-4.fits"]["reason"]
    assert "missing HDU Z_FLUX" in by_file["coadd-main-dark-5.fits"]["reason"]
    assert "no matching redrock" in by_file["coadd-main-dark-6.fits"]["reason"]
    assert "not a readable FITS file" in by_file["corrupt.fits"]["reason"]
    assert report["n_skipped"] == len(report["skipped"]) == 16
    assert "no cutout-1009.fits" in by_target[(1009, "no_cutout")]["reason"]
    assert report["skipped_by_kind"] == {"bad_cutout": 2, "bad_file": 5, "bad_record": 3, "cut": 5, "no_cutout": 1}
    assert report["n_spectra_read"] == 10 + 3  # files 3, 4, 5 and 6 could not be read or paired
    # reasons counted without file names and numbers
    assert report["skipped_by_reason"]["cut: DELTACHI2"] == 1
    assert report["skipped_by_reason"]["<file> N non-finite pixels in *_FLUX"] == 1
    assert report["skipped_by_reason"]["no <file> and no cutout centred within N arcsec"] == 1


def test_cuts_are_configurable(tmp_path):
    write_bad_folder(tmp_path / "in")
    builder = build(tmp_path / "in", tmp_path / "cache", spectypes=("GALAXY", "STAR"), min_deltachi2=5.0)
    assert set(builder.as_dataset(split="train")["targetid"]) == {1000, 1002, 1003, 2000}


def test_cache_reused_and_invalidated_when_an_input_changes(tmp_path):
    truth = write_desi_folder(tmp_path / "in", 1, 2, image_size=IMAGE_SIZE)
    first = build(tmp_path / "in", tmp_path / "cache")
    again = DesiGalaxies(data_dir=tmp_path / "in", cache_dir=str(tmp_path / "cache"), image_size=IMAGE_SIZE)
    assert again.cache_dir == first.cache_dir
    assert Path(again.cache_dir, "dataset_info.json").is_file()  # prepared data found: nothing to regenerate

    targets = list(truth.values())
    targets[0].z = 0.2468
    redrock = next((tmp_path / "in" / "healpix").glob("redrock-*.fits"))
    write_redrock(redrock, targets)
    os.utime(redrock, ns=(redrock.stat().st_atime_ns, redrock.stat().st_mtime_ns + 10**9))
    changed = build(tmp_path / "in", tmp_path / "cache")
    assert changed.cache_dir != first.cache_dir
    rows = {r["targetid"]: r for r in changed.as_dataset(split="train")}
    assert rows[targets[0].targetid]["redshift"] == pytest.approx(0.2468)
    old = {r["targetid"]: r for r in first.as_dataset(split="train")}
    assert old[targets[0].targetid]["redshift"] != pytest.approx(0.2468)


def test_num_proc_splits_by_file_and_gives_the_same_rows(tmp_path):
    write_desi_folder(tmp_path / "in", n_files=3, n_per_file=2, image_size=IMAGE_SIZE)
    write_bad_folder(tmp_path / "in" / "bad")
    serial = build(tmp_path / "in", tmp_path / "cache1")
    parallel = DesiGalaxies(data_dir=tmp_path / "in", cache_dir=str(tmp_path / "cache2"), image_size=IMAGE_SIZE)
    parallel.download_and_prepare(num_proc=2)
    a = serial.as_dataset(split="train")
    b = parallel.as_dataset(split="train")
    assert sorted(a["targetid"]) == sorted(b["targetid"]) and len(a) == 8
    report_a, report_b = read_build_report(serial.cache_dir), read_build_report(parallel.cache_dir)
    assert report_a["skipped"] == report_b["skipped"] and report_b["n_coadd_files"] == 9


def test_streaming_and_parquet_export(tmp_path):
    truth = write_desi_folder(tmp_path / "in", 2, 2, image_size=IMAGE_SIZE)
    builder = DesiGalaxies(data_dir=tmp_path / "in", cache_dir=str(tmp_path / "cache"), image_size=IMAGE_SIZE)
    streamed = list(builder.as_streaming_dataset(split="train"))
    assert sorted(r["targetid"] for r in streamed) == sorted(truth)
    assert np.asarray(streamed[0]["image"]).shape == (3, IMAGE_SIZE, IMAGE_SIZE)

    builder.download_and_prepare(str(tmp_path / "parquet"), file_format="parquet")
    shards = sorted((tmp_path / "parquet").glob("*.parquet"))
    assert shards
    loaded = datasets.load_dataset(
        "parquet", data_files=[str(s) for s in shards], split="train", cache_dir=str(tmp_path / "hf")
    )
    assert sorted(loaded["targetid"]) == sorted(truth)
    by_id = {r["targetid"]: r for r in streamed}
    row = loaded.with_format("numpy")[0]
    np.testing.assert_array_equal(row["flux"], np.asarray(by_id[int(row["targetid"])]["flux"], np.float32))
    assert row["image"].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    # the shards stream back as they would from the Hub
    shards_stream = datasets.load_dataset(
        "parquet", data_files=[str(s) for s in shards], split="train", streaming=True
    )
    assert sorted(r["targetid"] for r in shards_stream) == sorted(truth)


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------
def test_cli_build_dataset_arrow_with_report(tmp_path, capsys):
    expected = write_bad_folder(tmp_path / "in")
    out = tmp_path / "out"
    code = main(["build-dataset", "--input", str(tmp_path / "in"), "--output", str(out), "--image-size", "32",
                 "--no-progress", "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert code == 0
    dataset = datasets.load_from_disk(str(out))
    assert set(dataset["targetid"]) == expected["written"]
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["num_rows"] == 2 and report["n_skipped"] == 16
    printed = capsys.readouterr().out
    assert "wrote 2 rows (arrow)" in printed and "skipped 16" in printed and "out.report.json" in printed


def test_cli_build_dataset_parquet(tmp_path):
    truth = write_desi_folder(tmp_path / "in", 2, 2, image_size=IMAGE_SIZE)
    out = tmp_path / "shards"
    code = main(["build-dataset", "--input", str(tmp_path / "in"), "--output", str(out), "--format", "parquet",
                 "--image-size", "32", "--no-progress"])  # fmt: skip
    assert code == 0
    loaded = datasets.load_dataset(
        "parquet", data_files=str(out / "*.parquet"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert sorted(loaded["targetid"]) == sorted(truth)
    assert json.loads((tmp_path / "shards.report.json").read_text())["num_rows"] == 4


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--num-proc", "0"], "--num-proc must be a positive integer"),
        (["--z-min", "1", "--z-max", "0.5"], "--z-min (1.0) must be below --z-max (0.5)"),
    ],
)
def test_cli_user_errors(tmp_path, capsys, extra, message):
    (tmp_path / "in").mkdir()
    code = main(["build-dataset", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_missing_input_and_existing_output(tmp_path, capsys):
    assert main(["build-dataset", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    (tmp_path / "in").mkdir()
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("keep me")
    assert main(["build-dataset", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "o" / "x").read_text() == "keep me"


def test_data_script_runs_the_cli_code(tmp_path):
    truth = write_desi_folder(tmp_path / "in", 1, 2, image_size=IMAGE_SIZE)
    result = subprocess.run(
        [sys.executable, str(REPO / "data_scripts" / "build_desi_dataset.py"), "--input", str(tmp_path / "in"),
         "--output", str(tmp_path / "out"), "--image-size", "32"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote 2 rows" in result.stdout
    assert "Generating train split" in result.stderr  # the progress bar
    assert sorted(datasets.load_from_disk(str(tmp_path / "out"))["targetid"]) == sorted(truth)


def test_builder_needs_an_existing_data_dir(tmp_path):
    with pytest.raises(ValueError, match="data_dir is required"):
        DesiGalaxies(cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="absent"):
        DesiGalaxies(data_dir=tmp_path / "absent", cache_dir=str(tmp_path))


def test_missing_or_bad_psf_to_fiber_is_a_bad_record(tmp_path):
    """A spectrum without a finite MEAN_PSF_TO_FIBER_SPECFLUX > 0 cannot be turned into a fiber flux: skipped."""
    healpix_dir, cutout_dir = tmp_path / "in" / "healpix", tmp_path / "in" / "cutouts"
    healpix_dir.mkdir(parents=True)
    cutout_dir.mkdir()
    targets = make_targets(4, seed=21, first_targetid=8000)
    targets[1].psf_to_fiber, targets[2].psf_to_fiber, targets[3].psf_to_fiber = 0.0, float("nan"), -0.2
    write_desi_coadd(healpix_dir / "coadd-main-dark-1.fits", targets, healpix=1)
    write_redrock(healpix_dir / "redrock-main-dark-1.fits", targets)
    no_column = make_targets(1, seed=22, first_targetid=9000)
    path = write_desi_coadd(healpix_dir / "coadd-main-dark-2.fits", no_column, healpix=2)
    write_redrock(healpix_dir / "redrock-main-dark-2.fits", no_column)
    fibermap = Table.read(path, hdu="FIBERMAP")
    fibermap.remove_column("MEAN_PSF_TO_FIBER_SPECFLUX")
    with fits.open(path) as hdul:
        hdul["FIBERMAP"] = fits.table_to_hdu(fibermap)
        hdul.writeto(path, overwrite=True)
    for t in targets + no_column:
        write_legacy_cutout(cutout_dir / f"cutout-{t.targetid}.fits", t.ra, t.dec, size=IMAGE_SIZE)

    builder = build(tmp_path / "in", tmp_path / "cache")
    assert list(builder.as_dataset(split="train")["targetid"]) == [8000]
    report = read_build_report(builder.cache_dir)
    bad = {r["targetid"]: r["reason"] for r in report["skipped"] if r["kind"] == "bad_record"}
    assert set(bad) == {8001, 8002, 8003, 9000}
    assert all("MEAN_PSF_TO_FIBER_SPECFLUX" in reason and "FIBERMAP" in reason for reason in bad.values())
    assert "= 0.0" in bad[8001] and "= nan" in bad[8002] and "= nan" in bad[9000]


def _synthetic_r_over_fiberflux(flux_1e17: np.ndarray, fiberflux_r_nmgy: float) -> float:
    """speclite DECam r flux (nanomaggies) of a spectrum on the DESI grid, over the catalogue FIBERFLUX_R."""
    wavelength = desi_wavelength_grid()
    r_nmgy = ab_nanomaggies(wavelength, np.asarray(flux_1e17, np.float64) * 1e-17, "r")
    return float(r_nmgy / fiberflux_r_nmgy)


@pytest.mark.realdata
def test_real_built_flux_matches_the_fiber_photometry(shared_file, tmp_path):
    """On the real coadd the point-source spectrum is 1.34x FIBERFLUX_R; the fiber flux the builder stores is ~1."""
    (tmp_path / "in").mkdir()
    for name in ("coadd-4-80613-thru20210324.fits", "redrock-4-80613-thru20210324.fits"):
        (tmp_path / "in" / name).symlink_to(shared_file(f"desi/{name}"))
    fibermap = fits.getdata(tmp_path / "in" / "coadd-4-80613-thru20210324.fits", "FIBERMAP")
    coadd = read_desi_coadd(tmp_path / "in" / "coadd-4-80613-thru20210324.fits")
    write_legacy_cutout(
        tmp_path / "in" / f"cutout-{coadd.targetid[0]}.fits", coadd.target_ra[0], coadd.target_dec[0], size=IMAGE_SIZE
    )
    (row,) = list(build(tmp_path / "in", tmp_path / "cache").as_dataset(split="train").with_format("numpy"))
    before = _synthetic_r_over_fiberflux(coadd.flux[0], float(fibermap["FIBERFLUX_R"][0]))
    after = _synthetic_r_over_fiberflux(row["flux"], float(fibermap["FIBERFLUX_R"][0]))
    assert before == pytest.approx(1.34, abs=0.01)
    assert 0.85 < after < 1.25 and after == pytest.approx(1.05, abs=0.01)
