"""Cube speed: ``predict_cube`` (image encoded once, fibers decoded in batches) versus a naive loop.

The fast path is :func:`galspec_hf.cube.predict_cube`, which calls ``GalSpecForMaskedSpectra.predict_spectra``
(the image is encoded and decoded once, each fiber then costs one readout). The naive loop runs a full forward
pass (encoder + decoder) for every fiber, one fiber at a time, as a user would without ``predict_spectra``.
Both are timed in the same run on the same galaxy and grid, after a warm-up, each as several repetitions
(``--repeats`` for the fast paths, ``--naive_repeats`` for the slow naive loop). On this shared machine single
runs vary a lot, so the headline ``speedup`` is best naive time / best fast time (the minimum of each path's
repetitions, the least disturbed run); ``speedup_range`` is [fastest naive / slowest fast,
slowest naive / fastest fast], the lowest and highest ratio any pair of repetitions gives. ``meets_target``
says whether ``speedup`` reaches ``target_speedup`` (a 32 x 32 cube at least 20x faster than a forward pass
per fiber).

When ``predict_cube`` accepts ``observed_spectrum`` (conditioning on an observed fiber spectrum), the fast path
is also timed conditioned on one spectrum on the model grid (ivar 1, fiber at offset (0, 0)), in
predict_cube's default way of using it (``conditioned.conditioning``: ``residual`` since 2026-12-03; the
figures measured before then are the ``encoder`` path); otherwise the JSON says it was skipped.

    python benchmarks/bench_cube.py --out benchmarks/results/cube.json          # 32 x 32 grid, small preset
    python benchmarks/bench_cube.py --quick --out /tmp/cube.json                # 8 x 8 grid
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra
from galspec_hf.cube import predict_cube
from galspec_hf.demo import synthetic_image
from galspec_hf.testing_utils import write_benchmark_report

TARGET_SPEEDUP = 20.0  # issue "Speed and memory, measured": a 32 x 32 cube >= 20x faster than a forward pass per fiber
SPAXEL_SIZE_ARCSEC = 0.5  # MaNGA-like spaxels
#: Optional decoder layers (GalSpecConfig flags) that --enable can switch on, to time their cost.
DESIGN_SWITCHES = ("readout_modulation", "readout_colours", "decoder_image_summary", "decoder_photometry",
                   "readout_photometry")  # fmt: skip


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


def time_repeats(function, repeats: int) -> tuple[list[float], object]:
    """Call `function()` `repeats` times; return the wall-clock seconds of each call and the last result."""
    seconds = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def timing_summary(seconds: list[float]) -> dict:
    """Best (minimum), median and max of repeated timings, with their count and every run, in seconds."""
    return {
        "repeats": len(seconds),
        "best_seconds": min(seconds),
        "median_seconds": statistics.median(seconds),
        "max_seconds": max(seconds),
        "all_seconds": seconds,
    }


def speedup_summary(slow: dict, fast: dict) -> dict:
    """Speedups of `fast` over `slow` (two :func:`timing_summary` dicts): best-of, median and the range."""
    return {
        "speedup": slow["best_seconds"] / fast["best_seconds"],
        "speedup_median": slow["median_seconds"] / fast["median_seconds"],
        "speedup_range": [
            slow["best_seconds"] / fast["max_seconds"],
            slow["max_seconds"] / fast["best_seconds"],
        ],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--quick", action="store_true", help="8 x 8 grid instead of 32 x 32")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--image_size", type=int, default=None,
                        help="override the preset's image side, pixels (64: the small preset before 2026-12-03)")
    parser.add_argument("--enable", nargs="*", default=[], choices=DESIGN_SWITCHES, metavar="OPTION",
                        help=f"switch on optional decoder layers of the configuration ({', '.join(DESIGN_SWITCHES)})")
    parser.add_argument("--fiber_batch_size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions of each fast path")
    parser.add_argument(
        "--naive_repeats", type=int, default=None, help="timed repetitions of the naive loop (default min(3, repeats))"
    )
    args = parser.parse_args(argv)
    naive_repeats = min(3, args.repeats) if args.naive_repeats is None else args.naive_repeats
    if args.repeats < 1 or naive_repeats < 1:
        parser.error("--repeats and --naive_repeats must be positive")
    load_average_at_start = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    overrides = {} if args.image_size is None else {"image_size": args.image_size}
    overrides.update({name: True for name in args.enable})
    config = GalSpecConfig.from_preset(args.preset, **overrides)
    model = GalSpecForMaskedSpectra._from_config(config, attn_implementation="sdpa").eval()
    pixel_values = torch.from_numpy(synthetic_image(config).image)[None]
    redshift = torch.tensor([0.1])
    side = 8 if args.quick else 32
    # a hexagon twice the grid's side holds every spaxel of the square grid: all side * side fibers are predicted
    cube_kwargs = dict(
        spaxel_size=SPAXEL_SIZE_ARCSEC,
        num_spaxels=side,
        bundle_diameter=2 * side * SPAXEL_SIZE_ARCSEC,
        per_spaxel=False,  # flux per fiber, as the naive forward pass gives
        fiber_batch_size=args.fiber_batch_size,
    )

    def fast_cube(**observed):
        return predict_cube(model, pixel_values, redshift, **cube_kwargs, **observed)

    # warm-up both paths
    fast_cube()
    warm = fast_cube()
    assert bool(warm.footprint.all()), "every spaxel of the square grid must be inside the footprint"
    fibers = warm.spaxel_offset.reshape(-1, 2)  # (side * side, 2) arcsec, in the cube's row-major order
    naive_cube(model, pixel_values, redshift, fibers[:2])

    fast_seconds, fast = time_repeats(fast_cube, args.repeats)
    naive_seconds, naive = time_repeats(lambda: naive_cube(model, pixel_values, redshift, fibers), naive_repeats)
    fast_mean = fast.mean[0].reshape(-1, fast.mean.shape[-1])
    max_difference = float((fast_mean - naive).abs().max() / naive.abs().max())
    fast_timing, naive_timing = timing_summary(fast_seconds), timing_summary(naive_seconds)
    speedups = speedup_summary(naive_timing, fast_timing)

    # The fast path conditioned on an observed fiber spectrum, when predict_cube offers it.
    observed_keywords = ("observed_spectrum", "observed_ivar", "observed_fiber_offset", "observed_fiber_diameter")
    parameters = inspect.signature(predict_cube).parameters
    conditioned = {"available": "observed_spectrum" in parameters}
    if conditioned["available"]:
        length = model.galspec.wavelength.shape[0]  # the model grid
        central = int(np.argmin(fibers.norm(dim=-1).numpy()))
        observed = {
            "observed_spectrum": fast_mean[central][None].clone(),  # (1, L): the unconditioned central prediction
            "observed_ivar": torch.ones(1, length),
            "observed_fiber_offset": torch.zeros(1, 2),
        }
        conditioned["keywords_passed"] = sorted(observed)
        conditioned["keywords_accepted"] = [name for name in observed_keywords if name in parameters]
        conditioned["observed_spectrum_length"] = length
        conditioned["observed"] = "the unconditioned prediction at the central fiber, ivar 1, offset (0, 0)"
        if "conditioning" in parameters:  # predict_cube's default way of using the fiber (galspec_hf.cube)
            conditioned["conditioning"] = parameters["conditioning"].default
        try:
            fast_cube(**observed)  # warm-up
        except (TypeError, ValueError, RuntimeError) as error:  # the keywords exist but want other inputs
            conditioned["note"] = f"skipped: predict_cube(observed_...) raised {type(error).__name__}: {error}"
            print(f"warning: conditioned cube not timed: {conditioned['note']}", file=sys.stderr)
        else:
            conditioned_seconds, _ = time_repeats(lambda: fast_cube(**observed), args.repeats)
            conditioned.update(timing_summary(conditioned_seconds))
            conditioned.update(speedup_summary(naive_timing, conditioned))
            conditioned["meets_target"] = conditioned["speedup"] >= TARGET_SPEEDUP
            conditioned["spaxels_per_s"] = fibers.shape[0] / conditioned["best_seconds"]
            conditioned["slowdown_vs_unconditioned"] = conditioned["best_seconds"] / fast_timing["best_seconds"]
    else:
        conditioned["note"] = "skipped: galspec_hf.cube.predict_cube has no `observed_spectrum` keyword"

    result = {
        "benchmark": "cube",
        "preset": args.preset,
        "image_size": config.image_size,
        "enabled_options": sorted(args.enable),
        "grid": f"{side}x{side}",
        "num_fibers": int(fibers.shape[0]),
        "fiber_batch_size": args.fiber_batch_size,
        "threads": args.threads,
        "fast_path": "galspec_hf.cube.predict_cube (GalSpecForMaskedSpectra.predict_spectra), per_spaxel=False",
        "naive_path": "GalSpecForMaskedSpectra.forward once per fiber, whole spectrum masked",
        "timing": (
            "each path timed `repeats` times after a warm-up; the naive loop may use fewer repeats than the fast "
            "paths (naive.repeats vs fast.repeats)"
        ),
        "speedup_definition": (
            "speedup = naive best / fast best (best = minimum over repeats); speedup_median = naive median / "
            "fast median; speedup_range = [naive best / fast max, naive max / fast best], the lowest and highest "
            "ratio of any pair of repetitions"
        ),
        "fast": fast_timing,
        "naive": naive_timing,
        "fast_seconds": fast_timing["best_seconds"],
        "naive_seconds": naive_timing["best_seconds"],
        **speedups,
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": speedups["speedup"] >= TARGET_SPEEDUP,
        "spaxels_per_s": fibers.shape[0] / fast_timing["best_seconds"],
        "naive_spaxels_per_s": fibers.shape[0] / naive_timing["best_seconds"],
        "max_relative_difference": max_difference,
        "conditioned": conditioned,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": len(os.sched_getaffinity(0)),
        "load_average_1min": [load_average_at_start, os.getloadavg()[0]],  # at the start and the end
    }
    write_benchmark_report(args.out, result)
    assert np.isfinite(result["speedup"])
    return result


if __name__ == "__main__":
    main()
