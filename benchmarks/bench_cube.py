"""Cube speed: ``predict_spectra`` (image encoded once, fibers decoded in batches) versus a naive loop.

The naive loop runs a full forward pass (encoder + decoder) for every fiber, one fiber at a time,
as a user would without ``predict_spectra``. Both are timed in the same run on the same galaxy and
grid, after a warm-up; the JSON reports ``speedup`` = naive time / fast time and ``spaxels_per_s``.

    python benchmarks/bench_cube.py --out benchmarks/results/cube.json          # 32 x 32 grid, small preset
    python benchmarks/bench_cube.py --quick --out /tmp/cube.json                # 8 x 8 grid
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra
from galspec_hf.cube import spaxel_grid
from galspec_hf.demo import synthetic_image
from galspec_hf.testing_utils import write_benchmark_report


@torch.no_grad()
def naive_cube(model, pixel_values, redshift, fibers) -> torch.Tensor:
    """One full forward pass (encoder + decoder) per fiber, with the whole spectrum masked."""
    config = model.config
    spectrum_mask = torch.ones(1, config.num_spectrum_patches, dtype=torch.bool)
    image_mask = torch.zeros(1, config.num_image_tokens, dtype=torch.bool)
    means = []
    for fiber in fibers:
        output = model(
            pixel_values, redshift, fiber_offset=fiber[None], spectrum_mask=spectrum_mask, image_mask=image_mask
        )
        means.append(output.spectrum_mean[0])
    return torch.stack(means)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--quick", action="store_true", help="8 x 8 grid instead of 32 x 32")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--fiber_batch_size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = GalSpecConfig.from_preset(args.preset)
    model = GalSpecForMaskedSpectra._from_config(config, attn_implementation="sdpa").eval()
    pixel_values = torch.from_numpy(synthetic_image(config).image)[None]
    redshift = torch.tensor([0.1])
    side = 8 if args.quick else 32
    fibers = spaxel_grid(side, 0.5).reshape(-1, 2)  # MaNGA-like 0.5" spaxels, (side * side, 2)

    # warm-up both paths
    model.predict_spectra(pixel_values, redshift, fibers[None, :4], fiber_batch_size=args.fiber_batch_size)
    naive_cube(model, pixel_values, redshift, fibers[:2])

    start = time.perf_counter()
    fast = model.predict_spectra(pixel_values, redshift, fibers[None], fiber_batch_size=args.fiber_batch_size)
    fast_seconds = time.perf_counter() - start
    start = time.perf_counter()
    naive = naive_cube(model, pixel_values, redshift, fibers)
    naive_seconds = time.perf_counter() - start
    max_difference = float((fast.mean[0] - naive).abs().max() / naive.abs().max())

    result = {
        "benchmark": "cube",
        "preset": args.preset,
        "grid": f"{side}x{side}",
        "num_fibers": int(fibers.shape[0]),
        "fiber_batch_size": args.fiber_batch_size,
        "threads": args.threads,
        "fast_seconds": fast_seconds,
        "naive_seconds": naive_seconds,
        "speedup": naive_seconds / fast_seconds,
        "spaxels_per_s": fibers.shape[0] / fast_seconds,
        "naive_spaxels_per_s": fibers.shape[0] / naive_seconds,
        "max_relative_difference": max_difference,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": len(__import__("os").sched_getaffinity(0)),
    }
    write_benchmark_report(args.out, result)
    assert np.isfinite(result["speedup"])
    return result


if __name__ == "__main__":
    main()
