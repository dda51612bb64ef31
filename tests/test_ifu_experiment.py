"""The end-to-end experiment (examples/ifu_from_one_fiber.py): the --quick run, as a user runs it.

Its pieces live in :mod:`galspec_hf.scoreboard` and are tested in tests/test_scoreboard.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "ifu_from_one_fiber.py"


def _same_scores(first, second, rel: float = 1e-9) -> bool:
    """Nested metrics equal, floats to `rel`."""
    if isinstance(first, dict):
        return isinstance(second, dict) and first.keys() == second.keys() and all(
            _same_scores(first[k], second[k], rel) for k in first)
    if isinstance(first, list):
        return isinstance(second, list) and len(first) == len(second) and all(
            _same_scores(a, b, rel) for a, b in zip(first, second, strict=True))
    if isinstance(first, float) and isinstance(second, float):
        return first == pytest.approx(second, rel=rel, abs=1e-12)
    return first == second


@pytest.mark.slow
def test_quick_run_writes_metrics_and_figures(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--output_dir",
            str(tmp_path),
            "--quick",
            "--steps",
            "60",
            "--baseline_steps",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "metrics.json").read_text()
    metrics = json.loads(text)  # strict JSON: json.loads would accept NaN, so check the text too
    assert "NaN" not in text and "Infinity" not in text
    survey = tmp_path / "survey"
    truth = {row["targetid"]: row for row in pq.read_table(survey / "truth.parquet").to_pylist()}
    training_ids = set(datasets.load_from_disk(str(tmp_path / "fibers_train"))["targetid"])
    all_ids = set(datasets.load_from_disk(str(tmp_path / "fibers_all"))["targetid"])
    seen = set()
    for set_name in ("validation", "test"):
        block = metrics[set_name]
        ids = {g["targetid"] for g in block["galaxies"]}
        assert ids and not ids & training_ids and ids <= all_ids  # held out of the one-fiber training set
        assert not {truth[i]["plateifu"] for i in ids} & set(metrics["setting"]["train_cubes"])
        assert not ids & seen
        seen |= ids
        models = block["models"]
        assert set(models) == {"one_fiber", "image_only", "supervised", "null_light", "null_fiber"}
        # one_fiber is the same network conditioned on the galaxy's observed fiber: other maps, so other scores
        assert models["one_fiber"]["ha_failed_fraction"] != models["image_only"]["ha_failed_fraction"] or (
            models["one_fiber"]["ha_scatter_dex"] != models["image_only"]["ha_scatter_dex"]
        )
        claim = block["fiber_claim"]["models"]
        assert set(claim) == {"one_fiber", "null_fiber", "null_light"}
        colour = block["colour_nulls"]["models"]
        assert set(colour) == {"one_fiber", "null_fiber", "null_light", "null_colour", "null_fiber_colour"}
        # the same maps on fewer or the same spaxels: where the claim's count is unchanged, the same scores
        if colour["one_fiber"]["ha_num_spaxels"] == claim["one_fiber"]["ha_num_spaxels"]:
            assert colour["null_fiber"]["ha_scatter_dex"] == claim["null_fiber"]["ha_scatter_dex"]
        for prefix in ("ha", "nii", "hb", "oiii"):
            counts = {models[m][f"{prefix}_num_spaxels"] for m in models}
            assert len(counts) == 1  # every model on the same spaxels
            # the claim's three models on their own common spaxels: a superset of every model's
            claim_counts = {claim[m][f"{prefix}_num_spaxels"] for m in claim}
            assert len(claim_counts) == 1 and claim_counts.pop() >= counts.pop()
            assert claim["one_fiber"][f"{prefix}_num_galaxies"] >= models["one_fiber"][f"{prefix}_num_galaxies"]
            # the colour nulls beside the claim's models: a subset of the claim's spaxels (all five positive)
            colour_counts = {colour[m][f"{prefix}_num_spaxels"] for m in colour}
            assert len(colour_counts) == 1 and colour_counts.pop() <= claim["one_fiber"][f"{prefix}_num_spaxels"]
        for model in models.values():
            assert 0.0 <= model["ha_failed_fraction"] <= 1.0
            if model["ha_num_spaxels"] >= 3:
                assert math.isfinite(model["ha_pearson_r"]) and math.isfinite(model["ha_scatter_dex"])
        for model in ("image_only", "supervised"):
            assert 0.0 <= models[model]["spectrum_coverage_1sigma"] <= models[model]["spectrum_coverage_2sigma"]
        # the default conditioning (residual) works on line maps: one_fiber has no spectra of its own
        assert metrics["setting"]["conditioning"] == "residual"
        assert models["one_fiber"]["spectrum_coverage_1sigma"] is None
        assert models["null_light"]["coverage_1sigma"] is None
    assert len(seen) == 4
    # the central-fiber check of the two image-only nulls, on the network's validation fibers
    nulls = metrics["central_fiber_check"]["nulls"]
    assert set(nulls) == {"null_light", "null_colour"}
    for null in nulls.values():
        assert null["Halpha"]["num_fibers"] >= 1 and 0.0 <= null["Halpha"]["failed_fraction"] <= 1.0
    # the colour nulls' relation, fitted on the null_light fibers: one median per colour bin
    relation = metrics["null_colour_relation"]
    assert relation["colour"] == "g-r"
    ha = relation["per_line"]["Halpha"]
    assert len(ha["colour_centres"]) == len(ha["median_ratio"]) == 10 and sum(ha["num_fibers"]) <= relation["n_fibers"]
    # one_fiber's sigma: calibrated on the validation set, applied as fitted there to the test set
    fitted = metrics["validation"]["sigma_calibration"]["per_line"]["Halpha"]
    applied = metrics["test"]["sigma_calibration"]["per_line"]["Halpha"]
    assert fitted["fitted_on_this_set"] and not applied["fitted_on_this_set"]
    assert applied["calibration"] == fitted["calibration"] and len(fitted["calibration"]["fraction"]) == 5
    for block in (metrics["validation"], metrics["test"]):
        before = block["sigma_calibration"]["per_line"]["Halpha"]["coverage_1sigma_uncalibrated"]
        assert block["models"]["one_fiber"]["coverage_1sigma"] >= before  # the calibration only widens sigma
    assert "before the calibration (fitted on this set)" in result.stdout
    for name in ("maps_Halpha.png", "maps_NII_6585.png", "maps_Hbeta.png", "maps_OIII_5008.png", "calibration.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert "metrics.json" in result.stdout
    check = metrics["central_fiber_check"]
    assert set(check["lines"]) == {"Halpha", "NII_6585", "Hbeta", "OIII_5008"}
    assert 0 < check["lines"]["Halpha"]["num_fibers"] <= 0.05 * len(training_ids) + 1

    # a design scored on the validation set alone, reusing the run's survey and models, with the anchor conditioning:
    # one_fiber is the image-only map times the fiber's observed / predicted line flux, so per galaxy (same spaxels)
    # its r and scatter are image_only's and its bias is shifted by log10(factor)
    anchored = tmp_path / "anchored"
    command = [sys.executable, str(SCRIPT), "--output_dir", str(anchored), "--quick", "--steps", "60",
               "--baseline_steps", "60", "--reuse_from", str(tmp_path), "--one_fiber_model",
               str(tmp_path / "one_fiber_model"), "--sets", "validation"]  # fmt: skip
    third = subprocess.run([*command, "--conditioning", "anchor", "--sigma_calibration_set", "train_cubes"],
                           capture_output=True, text=True, timeout=900)  # fmt: skip
    assert third.returncode == 0, third.stderr[-3000:]
    metrics_anchor = json.loads((anchored / "metrics.json").read_text())
    assert "test" not in metrics_anchor and metrics_anchor["setting"]["reused_from"] == str(tmp_path)
    assert metrics_anchor["setting"]["conditioning"] == "anchor"
    block = metrics_anchor["validation"]
    # same survey, same models: every score but one_fiber's is the first run's (to rounding: the fibers' line fits
    # are batched with the training cubes' fibers here)
    for name in ("image_only", "supervised", "null_light", "null_fiber"):
        assert _same_scores(block["models"][name], metrics["validation"]["models"][name])
    # one_fiber's sigma calibrated on the training cubes, then applied to the validation set
    assert metrics_anchor["sigma_calibration_fit"]["set"] == "train_cubes"
    assert metrics_anchor["sigma_calibration_fit"]["n_galaxies"] == len(metrics["setting"]["train_cubes"])
    assert not block["sigma_calibration"]["per_line"]["Halpha"]["fitted_on_this_set"]
    assert "fitted on train_cubes" in third.stdout
    per_galaxy = metrics_anchor["fiber_conditioning"]["per_galaxy"]
    factors = {t: {line: v["anchor_factor"] for line, v in lines.items()} for t, lines in per_galaxy.items()}
    assert set(factors) == {str(g["targetid"]) for g in block["galaxies"]} | {
        str(g["targetid"]) for g in metrics["test"]["galaxies"]}  # every held-out galaxy's fiber
    assert block["models"]["one_fiber"]["spectrum_coverage_1sigma"] is None  # anchored maps, no spectra
    compared = 0
    for galaxy, one, image in zip(block["galaxies"], block["models"]["one_fiber"]["ha_per_galaxy"],
                                  block["models"]["image_only"]["ha_per_galaxy"], strict=True):  # fmt: skip
        factor = factors[str(galaxy["targetid"])]["Halpha"]
        assert one["num_spaxels"] == image["num_spaxels"]
        if factor is not None and one["num_spaxels"] >= 3:
            assert one["scatter_dex"] == pytest.approx(image["scatter_dex"], abs=1e-9)
            assert one["bias_dex"] - image["bias_dex"] == pytest.approx(math.log10(factor), abs=1e-9)
            compared += 1
    print(f"anchored galaxies compared: {compared}")
    # the test set alone, with the encoder conditioning (the cube predicted with the observed spectrum visible to the
    # encoder, so one_fiber has spectra of its own, scored for coverage, and maps that differ from image_only's) and
    # one_fiber's sigma calibration taken from the first run's validation set
    encoded = tmp_path / "encoded"
    fourth = subprocess.run([*command[:3], str(encoded), *command[4:-1], "test", "--conditioning", "encoder",
                             "--sigma_calibration_from", str(tmp_path / "metrics.json")],
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    test_block = json.loads((encoded / "metrics.json").read_text())["test"]
    models = test_block["models"]
    assert 0.0 <= models["one_fiber"]["spectrum_coverage_1sigma"] <= models["one_fiber"]["spectrum_coverage_2sigma"]
    assert models["one_fiber"]["ha_per_galaxy"] != models["image_only"]["ha_per_galaxy"]
    for name in ("image_only", "supervised", "null_light", "null_fiber"):  # same models, same galaxies
        assert _same_scores(models[name], metrics["test"]["models"][name])
    applied = test_block["sigma_calibration"]["per_line"]["Halpha"]
    assert applied["calibration"] == fitted["calibration"] and not applied["fitted_on_this_set"]
    # a metrics.json without a validation calibration is refused before any work: one line, exit 2
    bad = subprocess.run([*command[:3], str(tmp_path / "refused"), *command[4:-1], "test",
                          "--sigma_calibration_from", str(anchored / "summary.txt")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "--sigma_calibration_from" in bad.stderr.strip().splitlines()[-1]
    # a run with another setting is refused before any work: one line, exit 2
    refused = subprocess.run([*command[:-2], "--baseline_steps", "61"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "baseline_steps" in refused.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "refused").exists()
