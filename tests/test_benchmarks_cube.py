"""`benchmarks/bench_cube.py` reports figures that agree with each other (no duration is asserted)."""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load_bench_cube():
    spec = importlib.util.spec_from_file_location("bench_cube", ROOT / "benchmarks" / "bench_cube.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_observed_keywords(predict_cube, calls):
    """`predict_cube` with the observed-spectrum keywords added (recorded in `calls`, then ignored)."""

    def predict_cube_observed(*args, observed_spectrum=None, observed_ivar=None, observed_fiber_offset=None, **kwargs):
        if observed_spectrum is not None:
            calls.append((observed_spectrum.shape, observed_ivar.shape, observed_fiber_offset.tolist()))
        return predict_cube(*args, **kwargs)

    return predict_cube_observed


@pytest.mark.parametrize("observed", [False, True])
def test_bench_cube_reports_consistent_figures(tmp_path, monkeypatch, observed):
    bench_cube = _load_bench_cube()
    calls = []
    if observed:
        monkeypatch.setattr(bench_cube, "predict_cube", _with_observed_keywords(bench_cube.predict_cube, calls))
    has_keyword = "observed_spectrum" in inspect.signature(bench_cube.predict_cube).parameters
    out = tmp_path / "cube.json"
    threads = torch.get_num_threads()
    try:
        result = bench_cube.main(
            ["--quick", "--preset", "tiny", "--repeats", "2", "--naive_repeats", "1", "--out", str(out)]
        )
    finally:
        torch.set_num_threads(threads)
    assert json.loads(out.read_text()) == result
    assert result["grid"] == "8x8" and result["num_fibers"] == 64
    assert result["fast"]["repeats"] == 2 and result["naive"]["repeats"] == 1
    for path in ("fast", "naive"):
        timing = result[path]
        assert len(timing["all_seconds"]) == timing["repeats"]
        assert timing["best_seconds"] == min(timing["all_seconds"])
        assert timing["best_seconds"] <= timing["median_seconds"] <= timing["max_seconds"]
    fast, naive = result["fast"], result["naive"]
    assert result["speedup"] == pytest.approx(naive["best_seconds"] / fast["best_seconds"])
    low, high = result["speedup_range"]
    assert low == pytest.approx(naive["best_seconds"] / fast["max_seconds"])
    assert high == pytest.approx(naive["max_seconds"] / fast["best_seconds"])
    assert low <= result["speedup"] <= high
    assert result["meets_target"] == (result["speedup"] >= result["target_speedup"] == 20.0)
    assert result["spaxels_per_s"] == pytest.approx(64 / fast["best_seconds"])
    assert result["max_relative_difference"] < 1e-4  # the fast path gives the naive loop's spectra
    conditioned = result["conditioned"]
    assert conditioned["available"] == has_keyword
    if has_keyword:
        assert conditioned["repeats"] == 2
        assert conditioned["speedup"] == pytest.approx(naive["best_seconds"] / conditioned["best_seconds"])
        assert conditioned["meets_target"] == (conditioned["speedup"] >= 20.0)
        if "conditioning" in inspect.signature(bench_cube.predict_cube).parameters:  # not the stand-in's
            assert conditioned["conditioning"] == "residual"  # predict_cube's default
    else:
        assert conditioned["note"].startswith("skipped")
    if observed:  # the stand-in saw a model-grid spectrum, ivar ones and the (0, 0) fiber, warm-up included
        length = conditioned["observed_spectrum_length"]
        assert calls and all(call == ((1, length), (1, length), [[0.0, 0.0]]) for call in calls)


def test_bench_cube_times_the_optional_decoder_layers(tmp_path):
    """--enable builds the model with optional decoder layers (here the central and per-fiber photometry): the JSON
    names them, and the encode-once path still gives the per-fiber forward pass's spectra with them."""
    bench_cube = _load_bench_cube()
    threads = torch.get_num_threads()
    try:
        result = bench_cube.main(["--quick", "--preset", "tiny", "--repeats", "1", "--naive_repeats", "1", "--enable",
                                  "readout_photometry", "decoder_photometry", "--out", str(tmp_path / "cube.json")])
    finally:
        torch.set_num_threads(threads)
    assert result["enabled_options"] == ["decoder_photometry", "readout_photometry"]
    assert result["max_relative_difference"] < 1e-4
    with pytest.raises(SystemExit):
        bench_cube.main(["--quick", "--enable", "no_such_layer", "--out", str(tmp_path / "x.json")])
