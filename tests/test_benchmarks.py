"""The benchmark scripts run and report numbers that agree with each other (no duration is asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_bench_train_reports_consistent_figures(tmp_path, dtype):
    bench_train = _load("bench_train")
    out = tmp_path / "train.json"
    threads = torch.get_num_threads()
    try:
        result = bench_train.main(
            ["--quick", "--preset", "tiny", "--batch_size", "4", "--device", "cpu", "--dtype", dtype,
             "--datasheet_peak_tflops", "1", "--out", str(out)]  # fmt: skip
        )
    finally:
        torch.set_num_threads(threads)
    assert json.loads(out.read_text()) == result
    assert result["device"] == "cpu" and result["dtype"] == dtype
    assert result["samples_per_s"] == pytest.approx(4 * result["steps_per_s"])
    assert result["flops_per_sample"] > 0 and result["peak_matmul_flops_per_s"] > 0
    assert result["achieved_flops_per_s"] == pytest.approx(result["flops_per_sample"] * result["samples_per_s"])
    assert result["mfu"] == pytest.approx(result["achieved_flops_per_s"] / result["peak_matmul_flops_per_s"])
    assert result["mfu_datasheet"] == pytest.approx(result["achieved_flops_per_s"] / 1e12)


def test_bench_train_flop_count_scales_with_the_model(tmp_path):
    bench_train = _load("bench_train")
    flops = {}
    for preset in ("tiny", "small"):
        flops[preset] = bench_train.main(
            ["--quick", "--preset", preset, "--batch_size", "2", "--device", "cpu", "--out", str(tmp_path / "t.json")]
        )["flops_per_sample"]
    # small has 38x the parameters of tiny over a similar number of tokens: its FLOPs must grow with them
    assert flops["small"] > 10 * flops["tiny"]


def test_bench_train_image_size_override_is_measured_and_reported(tmp_path):
    """--image_size measures another image side of the same preset (the cost of an image that covers the cubes)."""
    bench_train = _load("bench_train")
    results = {
        size: bench_train.main(["--quick", "--preset", "tiny", "--batch_size", "2", "--device", "cpu",
                                "--image_size", str(size), "--out", str(tmp_path / f"t{size}.json")])  # fmt: skip
        for size in (32, 64)
    }
    assert results[32]["image_size"] == 32 and results[64]["image_size"] == 64
    # four times the image tokens: more FLOPs per sample
    assert results[64]["flops_per_sample"] > results[32]["flops_per_sample"]
