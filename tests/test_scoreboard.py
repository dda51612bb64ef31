"""The experiment's scoreboard (galspec_hf.scoreboard): selection, common spaxels, nulls, smoothing, JSON."""

from __future__ import annotations

import json
import math

import datasets
import numpy as np
import pytest
from scipy.stats import pearsonr

from galspec_hf.scoreboard import (
    draw_evaluation_sets,
    exclude_targets,
    flatten_line_scores,
    image_light,
    inside_image,
    line_to_light_ratio,
    null_line_map,
    per_spaxel_scale,
    score_line,
    smooth_nan_aware,
    spaxel_selection,
    write_metrics_json,
)


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
