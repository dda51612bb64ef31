"""The experiment's scoreboard (galspec_hf.scoreboard): selection, common spaxels, nulls, smoothing, JSON."""

from __future__ import annotations

import json
import math

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import pearsonr

from galspec_hf.io import read_legacy_cutout, read_manga_cube
from galspec_hf.scoreboard import (
    aperture_colour,
    colour_line_to_light_ratio,
    colour_null_maps,
    draw_evaluation_sets,
    exclude_targets,
    fiber_colours,
    fiber_null_check,
    fit_colour_ratio_relation,
    flatten_line_scores,
    galaxy_class,
    image_light,
    inside_image,
    line_to_light_ratio,
    null_line_map,
    per_spaxel_scale,
    score_line,
    smooth_nan_aware,
    smooth_to_manga_psf,
    spaxel_offsets_from_cutout,
    spaxel_selection,
    spectrum_coverages,
    write_metrics_json,
)
from galspec_hf.simulate import simulate_survey


def test_score_line_uses_the_same_spaxels_for_every_model():
    rng = np.random.default_rng(0)
    truth = 10 ** rng.uniform(0, 2, (10, 10))
    selection = np.ones((10, 10), bool)
    selection[0] = False  # 90 selected spaxels
    good = truth * 10 ** rng.normal(0, 0.1, truth.shape)
    bad = good.copy()
    bad.flat[10:55] = 0.0  # 45 of the selected spaxels failed
    scores = score_line({"good": [good], "bad": [bad]}, [truth], [selection])
    assert scores["good"]["num_spaxels"] == scores["bad"]["num_spaxels"] == 45
    assert scores["bad"]["failed_fraction"] == pytest.approx(45 / 90)
    assert scores["good"]["failed_fraction"] == 0.0
    common = selection.copy()
    common.flat[10:55] = False
    expected_r = pearsonr(np.log10(good[common]), np.log10(truth[common]))[0]
    assert scores["good"]["pearson_r"] == pytest.approx(expected_r)


def test_line_flux_coverage_counts_z_within_one_and_two_sigma():
    truth = np.full((1, 6), 10.0)
    predicted = np.array([[10.5, 11.0, 12.0, 12.5, 7.0, 0.0]])  # last one failed -> not a common spaxel
    sigma = np.ones((1, 6))
    selection = np.ones((1, 6), bool)
    scores = score_line({"m": [predicted], "null": [truth * 2]}, [truth], [selection], sigmas={"m": [sigma]})
    # |z| = 0.5, 1.0, 2.0, 2.5, 3.0 over the 5 common spaxels: 2 within 1 sigma, 3 within 2 (the bounds count)
    assert scores["m"]["coverage_1sigma"] == pytest.approx(2 / 5)
    assert scores["m"]["coverage_2sigma"] == pytest.approx(3 / 5)
    assert scores["null"]["coverage_1sigma"] is None


def test_per_class_and_per_galaxy_medians():
    truth = [np.arange(1.0, 11.0), np.arange(1.0, 11.0), np.arange(1.0, 11.0)]
    predicted = [truth[0] * 10**0.1, truth[1] * 10**0.3, truth[2] * 10**-0.2]
    selections = [np.ones(10, bool)] * 3
    scores = score_line({"m": predicted}, truth, selections, classes=["star_forming", "quiescent", "star_forming"])
    assert scores["m"]["per_galaxy_median_bias_dex"] == pytest.approx(0.1)
    assert scores["m"]["per_class"]["quiescent"]["bias_dex"] == pytest.approx(0.3)
    assert scores["m"]["per_class"]["star_forming"]["num_spaxels"] == 20
    assert scores["m"]["num_galaxies"] == 3
    # a model that fails on a whole galaxy removes it from every model's common spaxels
    failing = [predicted[0], -predicted[1], predicted[2]]
    scores = score_line({"m": predicted, "failing": failing}, truth, selections)
    assert scores["m"]["num_galaxies"] == scores["failing"]["num_galaxies"] == 2
    assert scores["m"]["num_spaxels"] == 20 and scores["failing"]["failed_fraction"] == pytest.approx(1 / 3)


def test_spaxel_selection_is_strict_snr_in_footprint_and_image():
    truth = np.array([6.0, 6.0, 6.0, 6.0, 6.0])
    ivar = np.array([0.25, 0.3, 2.0, 2.0, 2.0])  # S/N 3.0 (out: > 3), 3.29, 8.5, 8.5, 8.5
    footprint = np.array([True, True, True, False, True])
    image = np.array([True, True, True, True, False])
    assert spaxel_selection(truth, ivar, footprint, image).tolist() == [False, True, True, False, False]


def test_inside_image_half_width():
    offsets = np.array([[4.9, 0.0], [5.1, 0.0], [0.0, -5.1]])
    # 40 pixels x 0.25" = 10" wide: half-width 5"
    assert inside_image(offsets, 40, 0.25).tolist() == [True, False, False]


def test_smooth_nan_aware_keeps_constant_maps_constant_to_the_edge():
    flux_map = np.full((15, 15), 3.0)
    flux_map[7, 7] = np.nan
    smoothed = smooth_nan_aware(flux_map, 2.0)
    assert np.isnan(smoothed[7, 7])
    finite = np.isfinite(flux_map)
    np.testing.assert_allclose(smoothed[finite], 3.0, rtol=1e-12)  # zero padding gives ~1.5 at corners
    # a point source keeps its flux away from the edges (normalised kernel)
    point = np.zeros((41, 41))
    point[20, 20] = 100.0
    assert np.nansum(smooth_nan_aware(point, 2.0)) == pytest.approx(100.0, rel=1e-6)


def test_null_map_is_ratio_times_light_and_ratio_ignores_bad_values():
    ratio = line_to_light_ratio([10.0, -1.0, 5.0, np.nan, 3.0], [2.0, 1.0, 0.0, 1.0, -2.0])
    assert ratio[0] == 5.0 and ratio[1] == -1.0 and np.isnan(ratio[2:]).all()
    np.testing.assert_allclose(null_line_map(2.5, np.array([[1.0, 4.0]])), [[2.5, 10.0]])


def test_evaluation_sets_are_seeded_disjoint_above_floor_and_mixed():
    galaxies = [{"targetid": i, "disk_re_arcsec": 0.5 + 0.1 * i, "star_forming": i % 3 != 0} for i in range(30)]
    sets = draw_evaluation_sets(galaxies, 8, 4, 4, seed=1, min_size_arcsec=1.0)
    ids = [g["targetid"] for name in ("train", "validation", "test") for g in sets[name]]
    assert len(ids) == len(set(ids)) == 16
    assert all(galaxies[i]["disk_re_arcsec"] >= 1.0 for i in ids)  # ids 0-4 below the floor
    for name in ("validation", "test"):
        classes = {g["star_forming"] for g in sets[name]}
        assert classes == {True, False}
    again = draw_evaluation_sets(galaxies, 8, 4, 4, seed=1, min_size_arcsec=1.0)
    assert [g["targetid"] for g in again["test"]] == [g["targetid"] for g in sets["test"]]
    other = draw_evaluation_sets(galaxies, 8, 4, 4, seed=2, min_size_arcsec=1.0)
    assert [g["targetid"] for g in other["test"]] != [g["targetid"] for g in sets["test"]]
    # not survey order: the held-out galaxies are not simply the first eligible ones
    assert sorted(g["targetid"] for g in sets["validation"] + sets["test"]) != list(range(5, 13))
    with pytest.raises(ValueError, match="exceeds"):
        draw_evaluation_sets(galaxies, 20, 4, 4, seed=1, min_size_arcsec=1.0)


def test_exclude_targets_removes_every_heldout_row():
    data = datasets.Dataset.from_dict({"targetid": [1, 2, 3, 2, 5], "x": [0, 1, 2, 3, 4]})
    kept = exclude_targets(data, {2, 5})
    assert kept["targetid"] == [1, 3] and kept["x"] == [0, 2]


def test_metrics_json_is_strict_and_nan_becomes_null(tmp_path):
    scores = score_line({"m": [np.array([np.nan, 0.0])]}, [np.array([1.0, 2.0])], [np.ones(2, bool)])
    assert math.isnan(scores["m"]["pearson_r"])
    path = write_metrics_json(tmp_path / "m.json", {"models": flatten_line_scores({"Halpha": scores})})
    text = path.read_text()
    assert "NaN" not in text
    loaded = json.loads(text)
    assert loaded["models"]["m"]["ha_pearson_r"] is None
    assert loaded["models"]["m"]["ha_failed_fraction"] == 1.0
    json.dumps(loaded, allow_nan=False)


def test_per_spaxel_scale_is_spaxel_over_fiber_area():
    # 0.5" x 0.5" spaxel over a 1.5" circle: 0.25 / (pi * 0.5625) = 0.141471 (hand calculation)
    assert per_spaxel_scale(1.5, 0.5) == pytest.approx(0.141471, rel=1e-5)
    with pytest.raises(ValueError, match="fiber_diameter_arcsec"):
        per_spaxel_scale(0.0, 0.5)


def test_image_light_matches_a_supersampled_aperture():
    """A uniform 1 nmgy/pixel r image: the light in a 1.5" circle is its area in pixels, pi 0.75^2 / 0.262^2
    (= 25.74); a point source of 7 nmgy inside an aperture counts fully, outside not at all."""
    from galspec_hf import GalSpecConfig

    config = GalSpecConfig(image_size=48)
    image = np.ones((3, 48, 48), np.float32)
    light = image_light(image, np.array([[0.0, 0.0], [2.0, -1.0]]), 1.5, config)
    np.testing.assert_allclose(light, math.pi * 0.75**2 / 0.262**2, rtol=0.02)
    point = np.zeros((3, 48, 48), np.float32)
    point[config.bands.index(config.normalization_band), 24, 24] = 7.0
    light = image_light(point, np.array([[0.0, 0.0], [3.0, 0.0]]), 1.5, config)
    assert light.tolist() == pytest.approx([7.0, 0.0])


def test_image_light_in_each_band_and_the_colour_of_an_aperture():
    """A point source twice as bright in g as in r has g - r = -2.5 log10(2) = -0.753 mag in any aperture that holds
    it; z is measured from its own plane; a band the config does not have is a clear error."""
    from galspec_hf import GalSpecConfig

    config = GalSpecConfig(image_size=48)
    image = np.zeros((3, 48, 48), np.float32)
    for band, value in (("g", 4.0), ("r", 2.0), ("z", 1.0)):
        image[config.bands.index(band), 24, 24] = value
    at = np.array([[0.0, 0.0]])
    lights = {band: image_light(image, at, 1.5, config, band=band)[0] for band in ("g", "r", "z")}
    assert lights == pytest.approx({"g": 4.0, "r": 2.0, "z": 1.0})
    assert image_light(image, at, 1.5, config)[0] == pytest.approx(2.0)  # the normalization band (r) by default
    assert aperture_colour(lights["g"], lights["r"]) == pytest.approx(-2.5 * math.log10(2.0))
    assert np.isnan(aperture_colour([0.0, 1.0, np.nan], [1.0, -1.0, 1.0])).all()  # no light: no colour
    with pytest.raises(ValueError, match="`band`.*'u'"):
        image_light(image, at, 1.5, config, band="u")
    # a fiber row's colour: its own image, offset, diameter and pixel scale
    row = {"image": image, "fiber_offset": np.zeros(2), "fiber_diameter": 1.5, "pixel_scale": 0.262}
    assert fiber_colours([row, row], config).tolist() == pytest.approx([-0.753, -0.753], abs=1e-3)


def test_colour_ratio_relation_follows_a_trend_in_bins_of_equal_counts():
    """Fibers whose line-to-light ratio falls linearly with colour (red fibers: weaker lines): the binned medians
    follow the line, each bin holds the same number of fibers, the relation interpolates between the bin centres
    and keeps the end values beyond them; non-finite pairs are left out and too few fibers give an empty relation."""
    rng = np.random.default_rng(3)
    colour = rng.uniform(0.2, 1.2, 1000)
    ratio = 10.0 - 8.0 * colour + rng.normal(0, 0.2, colour.size)
    colour[:7] = np.nan  # no light in g or r: left out
    relation = fit_colour_ratio_relation(colour, ratio, num_bins=10)
    assert sum(relation["num_fibers"]) == 993 and max(relation["num_fibers"]) - min(relation["num_fibers"]) <= 1
    centres, medians = np.array(relation["colour_centres"]), np.array(relation["median_ratio"])
    assert np.all(np.diff(centres) > 0)
    np.testing.assert_allclose(medians, 10.0 - 8.0 * centres, atol=0.1)
    between = 0.5 * (centres[3] + centres[4])
    assert colour_line_to_light_ratio(relation, between) == pytest.approx(0.5 * (medians[3] + medians[4]))
    ends = colour_line_to_light_ratio(relation, np.array([-5.0, 5.0, np.nan]))
    assert ends[:2].tolist() == [medians[0], medians[-1]] and np.isnan(ends[2])
    empty = fit_colour_ratio_relation(colour[:5], ratio[:5], num_bins=10)
    assert empty["colour_centres"] == [] and np.isnan(colour_line_to_light_ratio(empty, [0.5])).all()
    with pytest.raises(ValueError, match="same shape"):
        fit_colour_ratio_relation(colour, ratio[:10])


def test_fiber_null_check_scores_the_image_only_nulls_at_the_fibers():
    """Fibers whose true line flux is 3x their r-band light: a survey ratio of 3 (null_light) or a flat colour
    relation at 3 (null_colour) predicts them exactly (bias and scatter 0); a relation at 1.5 is 0.301 dex low; a
    fiber whose relation gives no line is a failure."""
    from galspec_hf import GalSpecConfig
    from galspec_hf.scoreboard import LINES

    config = GalSpecConfig(image_size=48)
    rows, truth = [], {}
    for targetid, (g, r) in enumerate([(4.0, 2.0), (3.0, 3.0), (10.0, 4.0), (1.0, 3.0)]):
        image = np.zeros((3, 48, 48), np.float32)
        image[config.bands.index("g"), 24, 24], image[config.bands.index("r"), 24, 24] = g, r
        rows.append({"image": image, "fiber_offset": np.zeros(2), "fiber_diameter": 1.5, "pixel_scale": 0.262,
                     "targetid": targetid})  # fmt: skip
        truth[targetid] = {f"line_flux_fiber_{line}": 3.0 * r for line in LINES}
    flat = {"colour_centres": [0.0, 1.0], "median_ratio": [3.0, 3.0], "num_fibers": [2, 2]}
    exact = fiber_null_check(rows, truth, config, {line: 3.0 for line in LINES}, {line: flat for line in LINES})
    for name in ("null_light", "null_colour"):
        assert exact[name]["Halpha"]["bias_dex"] == pytest.approx(0.0, abs=1e-9)
        assert exact[name]["Halpha"]["scatter_dex"] == pytest.approx(0.0, abs=1e-9)
        assert exact[name]["Halpha"]["num_fibers"] == 4 and exact[name]["Halpha"]["failed_fraction"] == 0.0
    # the relation by colour: g - r of the four fibers is -0.75, 0, -1.0 and +1.19 mag
    steep = {"colour_centres": [-1.0, 0.0, 1.0], "median_ratio": [1.5, 1.5, 0.0], "num_fibers": [1, 2, 1]}
    low = fiber_null_check(rows, truth, config, {line: 1.5 for line in LINES}, {line: steep for line in LINES})
    assert low["null_light"]["Halpha"]["bias_dex"] == pytest.approx(math.log10(0.5))
    assert low["null_colour"]["Halpha"]["bias_dex"] == pytest.approx(math.log10(0.5))
    assert low["null_colour"]["Halpha"]["failed_fraction"] == pytest.approx(0.25)  # the red fiber: no line


def test_colour_null_maps_move_the_fiber_ratio_along_the_colour_relation():
    """A galaxy whose line-to-light ratio follows the survey's colour relation, scaled by its own factor: the
    fiber-and-colour null recovers its line map exactly (the factor from its fiber, the gradient from its colours),
    the colour-only null misses by the factor, and a flat relation reduces both to the light nulls."""
    relation = {"colour_centres": [0.0, 1.0], "median_ratio": [4.0, 1.0], "num_fibers": [50, 50]}
    colour_map = np.array([[0.1, 0.4], [0.7, 0.9]])
    light = np.array([[3.0, 2.0], [1.5, 1.0]])
    factor, fiber_colour = 1.7, 0.4
    truth = factor * colour_line_to_light_ratio(relation, colour_map) * light
    own_ratio = factor * float(colour_line_to_light_ratio(relation, fiber_colour))
    null_colour, null_fiber_colour = colour_null_maps(relation, own_ratio, fiber_colour, colour_map, light)
    np.testing.assert_allclose(null_fiber_colour, truth)
    np.testing.assert_allclose(null_colour, truth / factor)
    flat = {"colour_centres": [0.0, 1.0], "median_ratio": [2.0, 2.0], "num_fibers": [50, 50]}
    null_colour, null_fiber_colour = colour_null_maps(flat, own_ratio, fiber_colour, colour_map, light)
    np.testing.assert_allclose(null_colour, null_line_map(2.0, light))
    np.testing.assert_allclose(null_fiber_colour, null_line_map(own_ratio, light))
    # no line at the fiber's colour in the relation, or no fiber ratio: the fiber-and-colour null is undefined
    dark = {"colour_centres": [0.0, 1.0], "median_ratio": [2.0, 0.0], "num_fibers": [50, 50]}
    assert np.isnan(colour_null_maps(dark, own_ratio, 1.0, colour_map, light)[1]).all()
    assert np.isnan(colour_null_maps(relation, float("nan"), fiber_colour, colour_map, light)[1]).all()


def test_smoothing_to_manga_psf_conserves_flux_and_widens():
    flux_map = np.zeros((41, 41))
    flux_map[20, 20] = 100.0
    smoothed = smooth_to_manga_psf(flux_map, image_psf_fwhm_arcsec=1.2, aperture_diameter_arcsec=1.5)
    assert np.nansum(smoothed) == pytest.approx(100.0, rel=1e-3)
    # hand calculation: effective FWHM = hypot(1.2, 2.3548 / 4 * 1.5) = 1.4899"; the kernel brings it to 2.5":
    # sqrt(2.5^2 - 1.4899^2) = 2.0075" FWHM = 0.85254" sigma = 1.7051 spaxels of 0.5"
    y, x = np.mgrid[0:41, 0:41]
    variance = (smoothed * (x - 20) ** 2).sum() / smoothed.sum()
    assert math.sqrt(variance) == pytest.approx(1.7051, rel=0.02)


def test_smoothing_does_not_darken_edges():
    """A uniform map stays uniform to its corners (zero padding took ~0.3 dex off edges, ~0.6 off corners)."""
    flux_map = np.full((30, 30), 5.0)
    flux_map[:, 25:] = np.nan  # outside the model image
    smoothed = smooth_to_manga_psf(flux_map, image_psf_fwhm_arcsec=1.0, aperture_diameter_arcsec=0.56)
    np.testing.assert_allclose(smoothed[:, :25], 5.0, rtol=1e-10)
    assert np.isnan(smoothed[:, 25:]).all()


def test_galaxy_class_from_truth_column_or_specific_sfr():
    assert galaxy_class({"star_forming": False, "log_sfr": 1.0, "log_mstar": 10.0}) == "quiescent"
    # without the column: log sSFR = 0.5 - 10.5 = -10 > -11 -> star-forming; -12 -> quiescent
    assert galaxy_class({"log_sfr": 0.5, "log_mstar": 10.5}) == "star_forming"
    assert galaxy_class({"log_sfr": -1.5, "log_mstar": 10.5}) == "quiescent"


def test_spaxel_offsets_follow_both_wcs(tmp_path):
    """An off-centre target's cutout and its galaxy's cube: spaxel offsets from the cutout centre place the
    cube centre where the truth puts the galaxy."""
    simulate_survey(tmp_path, n_galaxies=40, n_ifu=4, seed=3, cutout_size=48, progress=False)
    truth = [row for row in pq.read_table(tmp_path / "truth.parquet").to_pylist() if row["plateifu"]]
    for galaxy in truth:
        cube = read_manga_cube(tmp_path / "manga" / f"manga-{galaxy['plateifu']}-LOGCUBE.fits.gz")
        cutout = read_legacy_cutout(tmp_path / galaxy["cutout_file"])
        offsets = spaxel_offsets_from_cutout(cube, cutout)
        ny, nx = offsets.shape[:2]
        centre = offsets[(ny - 1) // 2 : ny // 2 + 1, (nx - 1) // 2 : nx // 2 + 1].reshape(-1, 2).mean(axis=0)
        assert centre == pytest.approx([galaxy["centre_east_arcsec"], galaxy["centre_north_arcsec"]], abs=0.02)
        # spaxels step 0.5" west along a row and 0.5" north up a column
        assert offsets[0, 1, 0] - offsets[0, 0, 0] == pytest.approx(-0.5, abs=1e-3)
        assert offsets[1, 0, 1] - offsets[0, 0, 1] == pytest.approx(0.5, abs=1e-3)


def test_spectrum_coverages_of_a_calibrated_gaussian():
    """Predictions whose sigma is the true scatter: 68 % within 1 sigma, 95 % within 2, a rising curve over 12 k."""
    rng = np.random.default_rng(0)
    mean = np.zeros((200, 500))
    sigma = np.full_like(mean, 2.0)
    observed = mean + sigma * rng.standard_normal(mean.shape)
    ivar = np.full_like(mean, 1e12)  # negligible observational noise
    result = spectrum_coverages(observed, ivar, mean, sigma)
    assert result["spectrum_coverage_1sigma"] == pytest.approx(0.683, abs=0.01)
    assert result["spectrum_coverage_2sigma"] == pytest.approx(0.954, abs=0.01)
    curve = np.asarray(result["spectrum_coverage_curve"])
    assert curve.shape == (12, 2) and curve[0, 0] == 0.25 and curve[-1, 0] == 3.0
    assert np.all(np.diff(curve[:, 1]) >= 0)


def test_fiber_line_check_compares_each_fibers_prediction_with_its_truth():
    """A stand-in model whose spectra carry known H-alpha fluxes: the check finds their bias and no scatter, asks
    for each fiber at its own position and diameter, and counts a fiber without predicted H-alpha as failed."""
    from types import SimpleNamespace

    import torch

    from galspec_hf import GalSpecConfig
    from galspec_hf.data.testing import CONTINUUM, LINE_FLUX, fake_spectrum
    from galspec_hf.scoreboard import fiber_line_check

    config = GalSpecConfig.from_preset("tiny")
    wave = np.asarray(config.wavelength_grid(), np.float64)
    redshifts = [0.05, 0.08, 0.1, 0.12, 0.15, 0.2]
    rows = [{"targetid": 100 + i, "redshift": z, "image": np.ones((3, 40, 40), np.float32),
             "fiber_offset": np.array([0.1 * i, -0.2 * i], np.float32), "fiber_diameter": 1.5 + 0.1 * i}
            for i, z in enumerate(redshifts)]  # fmt: skip
    calls = []

    class StandIn:
        def __init__(self):
            self.config = config
            self.galspec = SimpleNamespace(wavelength=torch.from_numpy(wave))

        def predict_spectra(self, pixel_values, redshift, fiber_offset, fiber_diameter=None):
            calls.append((pixel_values.shape, fiber_offset.clone(), fiber_diameter.clone()))
            spectra = [2.0 * fake_spectrum(wave, float(z)) for z in redshift]  # twice the truth
            if len(spectra) == 2:  # the last fiber: its lines in absorption, so no H-alpha emission predicted
                spectra[-1] = 4.0 * CONTINUUM - spectra[-1]
            return SimpleNamespace(mean=torch.tensor(np.stack(spectra))[:, None])

    truth = {100 + i: {f"line_flux_fiber_{line}": (LINE_FLUX if line == "Halpha" else 0.0) for line in
                       ("Halpha", "NII_6585", "Hbeta", "OIII_5008")} for i in range(len(rows))}  # fmt: skip
    result = fiber_line_check(StandIn(), rows, truth, continuum="local", batch_size=4)
    assert calls[0][0] == (4, 3, config.image_size, config.image_size)  # cropped to the model image
    assert torch.allclose(calls[1][1][:, 0], torch.tensor([[0.4, -0.8], [0.5, -1.0]]))
    assert torch.allclose(calls[1][2], torch.tensor([1.9, 2.0]))
    halpha = result["Halpha"]
    assert halpha["num_fibers"] == 5 and halpha["failed_fraction"] == pytest.approx(1 / 6)
    assert halpha["bias_dex"] == pytest.approx(math.log10(2.0), abs=0.02)
    assert halpha["scatter_dex"] < 0.01
    assert result["OIII_5008"]["num_fibers"] == 0  # no positive truth: nothing scored


def test_scores_by_distance_from_the_observed_fiber():
    """Common spaxels binned by their distance from the galaxy's fiber: a map exact near the fiber and off by
    0.5 dex far from it shows both in its bins."""
    from galspec_hf.scoreboard import FIBER_DISTANCE_BINS_ARCSEC

    rng = np.random.default_rng(1)
    truth = 10 ** rng.uniform(0, 2, (20, 20))
    y, x = np.mgrid[0:20, 0:20]
    distance = 0.5 * np.hypot(x - 10, y - 10)  # arcsec, 0.5" spaxels, fiber at the centre
    predicted = np.where(distance < 3.0, truth, truth * 10**0.5)
    scores = score_line({"m": [predicted]}, [truth], [np.ones((20, 20), bool)], fiber_distances=[distance])
    bins = scores["m"]["by_fiber_distance"]
    assert [(b["min_arcsec"], b["max_arcsec"]) for b in bins] == list(
        zip(FIBER_DISTANCE_BINS_ARCSEC[:-1], FIBER_DISTANCE_BINS_ARCSEC[1:], strict=True)
    )
    assert sum(b["num_spaxels"] for b in bins) == 400
    assert bins[0]["num_spaxels"] == int((distance < 1.5).sum())
    assert bins[0]["bias_dex"] == pytest.approx(0.0) and bins[1]["bias_dex"] == pytest.approx(0.0)
    assert bins[2]["bias_dex"] == pytest.approx(0.5) and bins[3]["bias_dex"] == pytest.approx(0.5)
    assert "by_fiber_distance" not in score_line({"m": [predicted]}, [truth], [np.ones((20, 20), bool)])["m"]


def test_anchor_factors_are_observed_over_predicted_fiber_flux():
    """The anchor conditioning's factor per line: the fiber's observed line flux (fitted on its own spectrum) over
    the flux the model predicts for that fiber from the image alone; NaN where either is not positive."""
    from types import SimpleNamespace

    import torch

    from galspec_hf import GalSpecConfig
    from galspec_hf.data.testing import fake_spectrum
    from galspec_hf.scoreboard import fiber_anchor_factors, fiber_line_fluxes, predicted_fiber_line_fluxes

    config = GalSpecConfig.from_preset("tiny")
    wave = np.asarray(config.wavelength_grid(), np.float64)
    redshifts = [0.05, 0.1, 0.15]
    rows = [{"targetid": 7 + i, "redshift": z, "image": np.ones((3, 40, 40), np.float32),
             "fiber_offset": np.zeros(2, np.float32), "fiber_diameter": 1.5,
             "flux": fake_spectrum(wave, z), "ivar": np.full(wave.size, 100.0), "mask": np.zeros(wave.size, np.int32)}
            for i, z in enumerate(redshifts)]  # fmt: skip

    class StandIn:  # predicts 4x each fiber's observed spectrum; no line at all for the last one
        config = GalSpecConfig.from_preset("tiny")
        galspec = SimpleNamespace(wavelength=torch.from_numpy(wave))

        def predict_spectra(self, pixel_values, redshift, fiber_offset, fiber_diameter=None):
            spectra = [4.0 * fake_spectrum(wave, float(z)) for z in redshift]
            spectra[-1] = np.ones_like(wave)
            return SimpleNamespace(mean=torch.tensor(np.stack(spectra))[:, None])

    observed = fiber_line_fluxes(rows, wave, continuum="local")
    predicted = predicted_fiber_line_fluxes(StandIn(), rows, continuum="local", batch_size=8)
    factors = fiber_anchor_factors(observed, predicted)
    assert factors["Halpha"][:2] == pytest.approx([0.25, 0.25], rel=0.03)
    assert np.isnan(factors["Halpha"][2])  # nothing predicted: no factor, the map fails there
    assert np.isnan(fiber_anchor_factors({**observed, "Halpha": -observed["Halpha"]}, predicted)["Halpha"]).all()


def test_fiber_conditioned_maps_anchor_and_residual():
    """anchor: the image-only map scaled by observed / predicted fiber ratio; residual: a model that only knows the
    light (its map = its fiber ratio x light) gives back null_fiber exactly, and any structure beyond the light is
    kept on top of it."""
    from galspec_hf.scoreboard import LINES, fiber_conditioned_maps

    rng = np.random.default_rng(3)
    light = 10 ** rng.uniform(-1, 1, (6, 6))
    predicted_ratio = {line: 2.0 for line in LINES}
    own_ratio = {**{line: 5.0 for line in LINES}, "OIII_5008": float("nan")}
    structure = rng.normal(0, 0.3, (6, 6))
    maps = {line: predicted_ratio[line] * light + (structure if line == "Hbeta" else 0.0) for line in LINES}
    sigmas = {line: np.full((6, 6), 0.1) for line in LINES}

    scaled, (scaled_weighted, scaled_sigma) = fiber_conditioned_maps("anchor", maps, (maps, sigmas), own_ratio,
                                                                     predicted_ratio, light)  # fmt: skip
    assert np.allclose(scaled["Halpha"], 2.5 * maps["Halpha"]) and np.allclose(scaled_sigma["Halpha"], 0.25)
    assert np.allclose(scaled_weighted["Hbeta"], 2.5 * maps["Hbeta"])
    assert np.isnan(scaled["OIII_5008"]).all()  # no usable observed ratio: the map fails

    shifted, (shifted_weighted, shifted_sigma) = fiber_conditioned_maps("residual", maps, (maps, sigmas), own_ratio,
                                                                        predicted_ratio, light)  # fmt: skip
    null_fiber = 5.0 * light
    assert np.allclose(shifted["Halpha"], null_fiber)  # nothing beyond the light: null_fiber
    assert np.allclose(shifted["Hbeta"] - null_fiber, structure)  # the network's own structure survives
    assert np.allclose(shifted_weighted["NII_6585"], null_fiber) and np.allclose(shifted_sigma["Halpha"], 0.1)
    assert np.isnan(shifted["OIII_5008"]).all()
    with pytest.raises(ValueError, match="conditioning"):
        fiber_conditioned_maps("encoder", maps, (maps, sigmas), own_ratio, predicted_ratio, light)


def _drifting_maps(rng, n):
    """Line fluxes whose log error grows with distance from the fiber (0.05 dex + 0.06 dex per arcsec)."""
    distance = rng.uniform(0.0, 10.0, n)
    truth = 10 ** rng.normal(0.0, 0.5, n)
    predicted = truth * 10 ** rng.normal(0.0, 0.05 + 0.06 * distance)
    sigma = 0.01 * predicted  # a model sigma far too small to cover the drift
    return predicted, truth, sigma, distance


def test_sigma_calibration_covers_by_distance_and_transfers_to_a_new_draw():
    from galspec_hf.scoreboard import (
        FIBER_DISTANCE_BINS_ARCSEC,
        apply_sigma_calibration,
        fit_sigma_calibration,
        line_flux_coverage,
    )

    rng = np.random.default_rng(3)
    predicted, truth, sigma, distance = _drifting_maps(rng, 20000)
    assert line_flux_coverage(predicted, truth, sigma)["coverage_1sigma"] < 0.2
    calibration = fit_sigma_calibration(predicted, truth, sigma, distance)
    assert calibration["edges_arcsec"] == list(FIBER_DISTANCE_BINS_ARCSEC)
    fractions = calibration["fraction"]
    assert fractions[:4] == sorted(fractions[:4])  # the drift grows with distance, so does the fraction
    assert fractions[3] > 2 * fractions[0]
    calibrated = apply_sigma_calibration(sigma, predicted, distance, calibration)
    assert np.all(calibrated >= sigma)
    edges = FIBER_DISTANCE_BINS_ARCSEC
    for low, high in zip(edges[:-1], edges[1:], strict=True):  # fitted per bin: each bin covers 68 %
        in_bin = (distance >= low) & (distance < high)
        if in_bin.sum() >= 30:
            coverage = line_flux_coverage(predicted[in_bin], truth[in_bin], calibrated[in_bin])["coverage_1sigma"]
            assert coverage == pytest.approx(0.683, abs=0.01)
    # split calibration: fitted on one draw, it covers an independent draw of the same galaxies' kind
    new = _drifting_maps(np.random.default_rng(4), 20000)
    scored = line_flux_coverage(new[0], new[1], apply_sigma_calibration(new[2], new[0], new[3], calibration))
    assert scored["coverage_1sigma"] == pytest.approx(0.683, abs=0.02)
    assert scored["coverage_2sigma"] > scored["coverage_1sigma"]


def test_sigma_calibration_small_bins_and_bad_input():
    from galspec_hf.scoreboard import fit_sigma_calibration

    rng = np.random.default_rng(5)
    predicted, truth, sigma, distance = _drifting_maps(rng, 400)
    distance = np.where(distance > 9.0, 50.0, np.minimum(distance, 7.9))  # few spaxels beyond 8"
    calibration = fit_sigma_calibration(predicted, truth, sigma, distance, min_spaxels=60)
    assert 0 < calibration["num_spaxels"][-1] < 60
    assert calibration["fraction"][-1] == calibration["fraction_all"]  # too few: the all-spaxel fraction
    with pytest.raises(ValueError, match="one size"):
        fit_sigma_calibration(predicted, truth[:-1], sigma, distance)
    with pytest.raises(ValueError, match="target"):
        fit_sigma_calibration(predicted, truth, sigma, distance, target=1.5)
    with pytest.raises(ValueError, match="no spaxel"):
        fit_sigma_calibration(-predicted, truth, sigma, distance)


def test_continuum_colour_check_tells_a_prediction_that_ignores_the_image():
    """The continuum colour is log10 of the mean flux in the blue window over the red one (rest frame): a power law
    f ~ lambda^a gives the analytic value. A stand-in that predicts 3x each fiber's own spectrum follows the image
    (r 1, spread ratio 1); one that predicts the same spectrum for every fiber has spread ratio 0 and no r."""
    from types import SimpleNamespace

    import torch

    from galspec_hf import GalSpecConfig
    from galspec_hf.constants import CONTINUUM_COLOUR_BLUE_A, CONTINUUM_COLOUR_RED_A
    from galspec_hf.scoreboard import continuum_colour_check, continuum_colours

    config = GalSpecConfig.from_preset("tiny")
    wave = np.asarray(config.wavelength_grid(), np.float64)
    slopes, redshifts = [-2.0, -1.5, 0.0, 0.5, 1.0], [0.05, 0.1, 0.12, 0.15, 0.2]
    spectra = np.stack([(wave / (5000.0 * (1 + z))) ** a for a, z in zip(slopes, redshifts, strict=True)])

    def mean_power(a, low_high):  # the mean of (lambda / 5000)^a over a rest window, analytically
        low, high = np.asarray(low_high) / 5000.0
        return (high ** (a + 1) - low ** (a + 1)) / ((a + 1) * (high - low))

    expected = [math.log10(mean_power(a, CONTINUUM_COLOUR_BLUE_A) / mean_power(a, CONTINUUM_COLOUR_RED_A))
                for a in slopes]  # fmt: skip
    np.testing.assert_allclose(continuum_colours(wave, spectra, redshifts), expected, atol=2e-3)
    ivar = np.ones_like(spectra)
    ivar[0, (wave / 1.05 > 4050) & (wave / 1.05 < 4450)] = 0  # no usable blue pixel: no colour
    assert np.isnan(continuum_colours(wave, spectra, redshifts, ivar)[0])
    rows = [{"targetid": i, "redshift": z, "image": np.ones((3, 40, 40), np.float32), "fiber_offset": np.zeros(2),
             "fiber_diameter": 1.5, "flux": spectra[i], "ivar": np.ones(wave.size)}
            for i, z in enumerate(redshifts)]  # fmt: skip

    class StandIn:
        def __init__(self, same_for_all: bool):
            self.config, self.same_for_all = config, same_for_all
            self.galspec = SimpleNamespace(wavelength=torch.from_numpy(wave))

        def predict_spectra(self, pixel_values, redshift, fiber_offset, fiber_diameter=None):
            index = [redshifts.index(round(float(z), 6)) for z in redshift]
            mean = 3.0 * spectra[[0] * len(index) if self.same_for_all else index]
            return SimpleNamespace(mean=torch.tensor(mean)[:, None])

    follows = continuum_colour_check(StandIn(False), rows, batch_size=2)
    assert follows["num_fibers"] == 5
    assert follows["pearson_r"] == pytest.approx(1.0) and follows["spread_ratio"] == pytest.approx(1.0)
    ignores = continuum_colour_check(StandIn(True), rows, batch_size=2)
    assert ignores["spread_ratio"] < 0.01
    assert ignores["observed_spread_dex"] == pytest.approx(np.std(expected), rel=0.01)
