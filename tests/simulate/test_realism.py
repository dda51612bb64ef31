"""Synthetic versus real: the simulated survey against the real files in ../shared/data (marked realdata)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from galspec_hf import constants as C
from galspec_hf.simulate import realism as R
from galspec_hf.simulate import spectra as S
from galspec_hf.simulate.survey import simulate_survey
from galspec_hf.simulate.templates import kcorrect_template_path, load_templates

pytestmark = pytest.mark.realdata

COADD = "desi/coadd-4-80613-thru20210324.fits"
REDROCK = "desi/redrock-4-80613-thru20210324.fits"
CUTOUT = "legacysurvey/legacysurvey-dr9-grz-357.9087-54.8817.fits"
MAPS = "manga/manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz"
SSP = "templates/SSP_Padova_CKC14z_Kroupa_Z0.0190.fits"


@pytest.fixture(scope="module", params=["kcorrect", "ssp"])
def templates(request, shared_file):
    if request.param == "kcorrect":
        if kcorrect_template_path() is None:
            pytest.skip("kcorrect is not installed")
        return load_templates("kcorrect")
    return load_templates(str(shared_file(SSP)))


@pytest.fixture(scope="module")
def real_desi(shared_file):
    return R.read_real_desi(shared_file(COADD), shared_file(REDROCK))


@pytest.fixture(scope="module")
def synthetic_survey(tmp_path_factory, shared_file):
    source = None if kcorrect_template_path() is not None else str(shared_file(SSP))
    return simulate_survey(
        tmp_path_factory.mktemp("realism"), n_galaxies=4, n_ifu=1, seed=1, templates=source, cutout_size=96,
        ifu_spaxels=12,
        progress=False,
    )  # fmt: skip


def test_per_pixel_sn_and_noise_statistics_match_the_real_desi_spectrum(templates, real_desi):
    sim = R.matched_desi_spectrum(templates, real_desi["z"], real_desi["fiberflux_r"], real_desi["efftime_s"])
    for arm in S.ARMS:
        real_sn = real_desi["flux"][arm] * np.sqrt(real_desi["ivar"][arm])
        sim_sn = sim["flux"][arm] * np.sqrt(sim["ivar"][arm])
        # median S/N per pixel within a factor 1.5, and the same spread of per-pixel sigma (sky lines) in each arm
        assert np.median(sim_sn) == pytest.approx(np.median(real_sn), rel=0.5)
        # noise level: DESI_THROUGHPUT was calibrated on the real file's (point-source-calibrated) sigma
        real_sigma = 1 / np.sqrt(real_desi["file_ivar"][arm])
        sim_sigma = 1 / np.sqrt(sim["ivar"][arm])
        for q in (5, 50, 95):
            assert np.percentile(sim_sigma, q) == pytest.approx(np.percentile(real_sigma, q), rel=0.35)
        # normalised residuals about a running median: ~unit scatter in both (honest ivar), within 15%
        real_scatter = R.robust_sigma(R.normalised_residuals(real_desi["flux"][arm], real_desi["ivar"][arm]))
        sim_scatter = R.robust_sigma(R.normalised_residuals(sim["flux"][arm], sim["ivar"][arm]))
        assert 0.85 < sim_scatter < 1.15 and 0.85 < real_scatter < 1.2
        assert sim_scatter == pytest.approx(real_scatter, rel=0.15)


def test_continuum_colour_of_the_real_galaxy_lies_inside_the_simulated_population(templates, real_desi, request):
    if templates.source.startswith("ssp"):
        # known gap (docs/SIMULATION.md): with the FSPS young population (constant SFR over 100 Myr, b/z = 4.0) the
        # bluest simulated galaxies at z ~ 0.37 reach b/z ~ 1.6, the real one has 1.9; strict so a fix is noticed
        request.applymarker(pytest.mark.xfail(strict=True, reason="SSP-template population slightly too red"))
    ratio_real = np.median(real_desi["flux"]["b"]) / np.median(real_desi["flux"]["z"])
    # the real target (r = 20.56, an SV1 BGS target) against simulated galaxies at similar z and depth
    ratios = R.population_continuum_colours(templates, z_range=(0.3, 0.45), n_draw=500, r_mag_limit=20.6)
    assert ratios.size >= 40
    assert np.percentile(ratios, 2) < ratio_real < np.percentile(ratios, 99.5)
    # red and blue galaxies both occur: the population spans at least a factor 3 in b/z flux ratio
    assert np.percentile(ratios, 95) > 3 * np.percentile(ratios, 5)


def test_cutout_pixel_noise_matches_the_real_legacy_cutout(shared_file, synthetic_survey):
    real = fits.getdata(shared_file(CUTOUT)).astype(np.float64)
    sims = np.stack([fits.getdata(p).astype(np.float64) for p in synthetic_survey["cutouts"]])
    truth = pq.read_table(synthetic_survey["truth"]).to_pylist()
    for i, band in enumerate(C.LEGACY_BANDS):
        # background: robust per-pixel scatter of the source-clipped pixels, brought to the reference depth
        # (each cutout's drawn exposures), within 20% of the real cutout's
        real_noise = R.sky_pixel_noise(real[i])
        scale = [math.sqrt(row[f"image_exposures_{band}"] / C.LEGACY_REFERENCE_EXPOSURES) for row in truth]
        sim_noise = np.median([R.sky_pixel_noise(cutout[i]) * k for cutout, k in zip(sims, scale, strict=True)])
        assert sim_noise == pytest.approx(real_noise, rel=0.2)
        # correlated like the real coadd: sigma of 4x4 block means x 4 over the per-pixel sigma, within 20%
        # (white noise gives 1.0; the real cutout 1.48, 1.73, 1.49 in g, r, z)
        real_ratio = R.binned_noise_ratio(real[i])
        sim_ratio = np.median([R.binned_noise_ratio(cutout[i]) for cutout in sims])
        assert real_ratio > 1.3
        assert sim_ratio == pytest.approx(real_ratio, rel=0.2)
        # sky level ~0 (sky-subtracted coadds), as in the real cutout
        assert abs(np.median(sims[:, i])) < sim_noise


def test_written_files_have_the_real_hdu_and_column_layout(shared_file, synthetic_survey):
    with fits.open(shared_file(COADD)) as real, fits.open(synthetic_survey["coadd"][0]) as sim:
        assert [h.name for h in real] == [h.name for h in sim]
        real_cols = [(c.name, c.format) for c in real["FIBERMAP"].columns]
        assert [(c.name, c.format) for c in sim["FIBERMAP"].columns] == real_cols
        for arm in "BRZ":
            for kind in ("WAVELENGTH", "FLUX", "IVAR", "MASK", "RESOLUTION"):
                name = f"{arm}_{kind}"
                assert sim[name].data.dtype == real[name].data.dtype, name
                assert sim[name].data.shape[1:] == real[name].data.shape[1:] or kind == "WAVELENGTH"
                assert sim[name].header.get("BUNIT") == real[name].header.get("BUNIT"), name
            np.testing.assert_allclose(sim[f"{arm}_WAVELENGTH"].data, real[f"{arm}_WAVELENGTH"].data, atol=1e-6)
        # the line-spread width per arm agrees with the real RESOLUTION (second moment, pixels) within 3%
        offsets = S.RESOLUTION_OFFSETS[:, None]
        for arm in "BRZ":
            widths = []
            for data in (real[f"{arm}_RESOLUTION"].data[0], sim[f"{arm}_RESOLUTION"].data[0]):
                data = data.astype(np.float64)
                widths.append(np.median(np.sqrt((data * offsets**2).sum(0) / data.sum(0))))
            assert widths[1] == pytest.approx(widths[0], rel=0.03)
    with fits.open(shared_file(REDROCK)) as real, fits.open(synthetic_survey["redrock"][0]) as sim:
        assert [h.name for h in sim] == [h.name for h in real]
        assert [(c.name, c.format) for c in sim["REDSHIFTS"].columns] == [
            (c.name, c.format) for c in real["REDSHIFTS"].columns
        ]
    with fits.open(shared_file(CUTOUT)) as real, fits.open(synthetic_survey["cutouts"][0]) as sim:
        for key in ("BANDS", "BAND0", "BAND1", "BAND2", "CTYPE1", "CTYPE2", "CD1_2", "CD2_1"):
            assert sim[0].header[key] == real[0].header[key], key
        assert sim[0].header["CD1_1"] == pytest.approx(real[0].header["CD1_1"])
        assert sim[0].header["CD2_2"] == pytest.approx(real[0].header["CD2_2"])
        assert sim[0].data.dtype == real[0].data.dtype
    with fits.open(shared_file(MAPS)) as real, fits.open(synthetic_survey["maps"][0]) as sim:
        for hdu in sim[1:]:
            assert hdu.name in real, hdu.name
            assert hdu.data.dtype == real[hdu.name].data.dtype, hdu.name
            assert hdu.header.get("BUNIT") == real[hdu.name].header.get("BUNIT"), hdu.name
        for k in range(1, 23):
            assert sim["EMLINE_GFLUX"].header[f"C{k:02d}"] == real["EMLINE_GFLUX"].header[f"C{k:02d}"]
        # SPX_SKYCOO: on-sky X grows to the east (leftmost column), Y to the north, as in the real file
        for f in (real, sim):
            sky = f["SPX_SKYCOO"].data
            assert sky[0, 0, 0] > sky[0, 0, -1] and sky[1, -1, 0] > sky[1, 0, 0]


def test_built_flux_over_fiberflux_matches_the_real_coadd(shared_file, tmp_path):
    """Synthetic DECam r flux of a built row (file flux x MEAN_PSF_TO_FIBER_SPECFLUX) over FIBERFLUX_R: 1.05 on the
    real coadd (issue 11); the simulated targets must lie in 0.85-1.25, median and every target."""
    from galspec_hf.data import read_desi_coadd

    def built_ratios(path):
        coadd = read_desi_coadd(path, keep_arms=True)
        fiberflux_r = fits.getdata(path, "FIBERMAP")["FIBERFLUX_R"].astype(np.float64)
        return np.array([
            R.merged_r_band_nanomaggies({a: coadd.arms[a]["flux"][i] * coadd.psf_to_fiber[i] for a in S.ARMS})
            / fiberflux_r[i]
            for i in range(len(fiberflux_r))
        ])  # fmt: skip

    assert built_ratios(shared_file(COADD))[0] == pytest.approx(1.05, abs=0.01)
    source = None if kcorrect_template_path() is not None else str(shared_file(SSP))
    survey = simulate_survey(tmp_path, n_galaxies=40, seed=0, templates=source, cutout_size=16, progress=False)
    ratios = built_ratios(survey["coadd"][0])
    assert 0.95 < np.median(ratios) < 1.1
    assert 0.85 < ratios.min() and ratios.max() < 1.25


@pytest.mark.slow
def test_halpha_ew_spread_and_lier_emission_like_manga(shared_file, tmp_path):
    """Within-galaxy spread (std) of log10 H-alpha EW over spaxels with truth S/N > 3: median over star-forming IFU
    galaxies in 0.2-0.45 dex, the real MaNGA 7815-3702 DAP map giving 0.30; quiescent galaxies show weak LIER
    emission (Cid Fernandes et al. 2011: EW < 3 A; Belfiore et al. 2016: [NII]/H-alpha > 0.7)."""
    real = R.halpha_ew_spread_dap(shared_file(MAPS))
    assert real["num_spaxels"] == 769 and real["spread_dex"] == pytest.approx(0.30, abs=0.01)
    source = None if kcorrect_template_path() is not None else str(shared_file(SSP))
    survey = simulate_survey(tmp_path, n_galaxies=20, n_ifu=10, seed=3, templates=source, cutout_size=16,
                             ifu_spaxels=24, progress=False)  # fmt: skip
    truth = pq.read_table(survey["truth"]).to_pandas().set_index("plateifu")
    spreads, lier_ew, lier_nii_halpha = [], [], []
    for maps_path, cube_path in zip(survey["maps"], survey["logcubes"], strict=True):
        plateifu = fits.getheader(maps_path)["PLATEIFU"]
        row = truth.loc[plateifu]
        measured = R.halpha_ew_spread_simulated(maps_path, cube_path)
        if row["star_forming"]:
            spreads.append(measured["spread_dex"])
            continue
        if row["agn"] or measured["num_spaxels"] < 10:
            continue
        # spaxel EWs of the S/N > 3 spaxels (biased up by the cut): LIER-like, well below star-forming disks
        lier_ew.append(10 ** np.median(measured["log_ew"]))
        with fits.open(maps_path) as maps:
            channel = {str(v).strip(): int(k[1:]) - 1 for k, v in maps["EMLINE_GFLUX"].header.items()
                       if k.startswith("C") and k[1:].isdigit()}  # fmt: skip
            flux = maps["EMLINE_GFLUX"].data.astype(np.float64)
        lier_nii_halpha.append(flux[channel["NII-6585"]].sum() / flux[channel["Ha-6564"]].sum())
    assert len(spreads) >= 5 and len(lier_ew) >= 2
    assert 0.2 < np.median(spreads) < 0.45
    assert all(0.3 < ew < 5.0 for ew in lier_ew), lier_ew
    # LIER-like [NII]/H-alpha (median > 0.7); each galaxy, whose faint residual star formation mixes in, outside the
    # star-forming branch of the WHAN diagram (log [NII]/H-alpha > -0.4; Cid Fernandes et al. 2011)
    assert np.median(lier_nii_halpha) > 0.7 and min(lier_nii_halpha) > 10**-0.4, lier_nii_halpha
