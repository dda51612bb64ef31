"""Peak memory (RSS) of a streaming training run over 1x and 10x as much data.

Writes two Parquet data sets of toy galaxies (N and 10 N rows), runs ``examples/pretrain.py --streaming``
over each for one pass (the number of steps grows with the data; 1000 rows fill the 1000-row shuffle
buffer already, so both runs reach the buffer's full size), and reports each run's peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of the child process) and their ratio. Streaming should keep
memory flat: the target is a ratio within 10 %.

    python benchmarks/bench_memory.py --out benchmarks/results/memory.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np

from galspec_hf import GalSpecConfig
from galspec_hf.testing_utils import toy_galaxies, write_benchmark_report

ROOT = Path(__file__).resolve().parents[1]


def write_parquet(folder: Path, rows: int, config: GalSpecConfig, chunk: int = 100) -> None:
    """`rows` toy galaxies as Parquet shards of `chunk` rows (written chunk by chunk: bounded memory here too)."""
    folder.mkdir(parents=True)
    big = GalSpecConfig.from_preset("tiny", image_size=config.image_size + 8, image_patch_size=1)
    for index, start in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - start)
        batch = toy_galaxies(big, n, seed=index)
        table = datasets.Dataset.from_dict(
            {
                "targetid": np.arange(start, start + n, dtype=np.int64),
                "image": batch["pixel_values"].numpy(),
                "flux": batch["spectrum"].numpy(),
                "ivar": batch["spectrum_ivar"].numpy(),
                "redshift": batch["redshift"].numpy(),
                "fiber_offset": batch["fiber_offset"].numpy(),
            }
        )
        table.to_parquet(str(folder / f"part-{index:05d}.parquet"))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=1000, help="rows of the 1x data set (the 10x has ten times more)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--shuffle_buffer_size", type=int, default=1000, help="rows in pretrain.py's shuffle buffer")
    args = parser.parse_args(argv)
    config = GalSpecConfig.from_preset("tiny")
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_parquet(tmp / "x1", args.rows, config)
        write_parquet(tmp / "x10", 10 * args.rows, config)
        # ru_maxrss of children is a running maximum per parent, so each run gets its own parent interpreter
        results = {}
        for name, rows in (("x1", args.rows), ("x10", 10 * args.rows)):
            probe = [
                sys.executable, "-c",
                "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
                sys.executable, str(ROOT / "examples" / "pretrain.py"), "--dataset", str(tmp / name), "--streaming",
                "--preset", "tiny", "--max_steps", str(rows // args.batch_size), "--per_device_batch_size",
                str(args.batch_size), "--output_dir", str(tmp / f"run_{name}"), "--validation_fraction", "0.0",
                "--no-augment", "--shuffle_buffer_size", str(args.shuffle_buffer_size),
            ]  # fmt: skip
            output = subprocess.run(probe, check=True, capture_output=True, text=True)
            results[name] = {
                "rows": rows,
                "steps": rows // args.batch_size,
                "peak_rss_mib": int(output.stdout.split()[-1]) / 1024,
            }
    result = {
        "benchmark": "memory",
        "shuffle_buffer_size": args.shuffle_buffer_size,
        "runs": results,
        "ratio_10x_over_1x": results["x10"]["peak_rss_mib"] / results["x1"]["peak_rss_mib"],
    }
    return write_benchmark_report(args.out, result)


if __name__ == "__main__":
    main()
