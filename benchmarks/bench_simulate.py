"""Benchmark: galaxies per second of the synthetic fiber survey (DESI coadd + redrock, Legacy cutouts, truth).

    python benchmarks/bench_simulate.py --n-galaxies 300 --out benchmarks/results/bench_simulate.json

Writes a JSON record with the throughput, the setup and the machine. The first galaxy (template loading,
cosmology and kernel tables) is timed separately as ``warmup_s`` and excluded from the rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-galaxies", type=int, default=300)
    parser.add_argument("--cutout-size", type=int, default=64)
    parser.add_argument("--targets-per-file", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--templates", default=None, help="'kcorrect' (default) or an SSP FITS file")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.n_galaxies < 2:
        parser.error("--n-galaxies must be >= 2")

    from galspec_hf.simulate import load_templates, simulate_survey
    from galspec_hf.testing_utils import write_benchmark_report

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        load_templates(args.templates)
        simulate_survey(Path(tmp) / "warmup", 1, seed=args.seed, templates=args.templates, progress=False)
        warmup = time.perf_counter() - start
        start = time.perf_counter()
        simulate_survey(
            Path(tmp) / "survey",
            args.n_galaxies,
            n_ifu=0,
            seed=args.seed,
            templates=args.templates,
            targets_per_file=args.targets_per_file,
            cutout_size=args.cutout_size,
            progress=False,
        )
        wall = time.perf_counter() - start
    result = {
        "benchmark": "simulate_fiber_survey",
        "galaxies_per_s": args.n_galaxies / wall,
        "n_galaxies": args.n_galaxies,
        "wall_s": wall,
        "warmup_s": warmup,
        "cutout_size": args.cutout_size,
        "targets_per_file": args.targets_per_file,
        "templates": args.templates or "default",
        "target_galaxies_per_s": 50.0,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    write_benchmark_report(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
