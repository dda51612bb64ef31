"""Preparation throughput of the DESI data set builder, in spectra per second.

Writes DESI-format coadd + redrock files of ``--spectra-per-file`` spectra (500 by default, as in
DR1 healpix files of dense regions) and one Legacy-format cutout per target with
:mod:`galspec_hf.data.testing`, then times

- ``read_desi_coadd`` alone (arm merge), and
- ``DesiGalaxies.download_and_prepare`` (read, merge, cut, pair with cutouts, write Arrow),

in one process (and with ``--num-proc`` > 1 if asked). Writes a JSON result to ``--out``.

    python benchmarks/bench_data.py --files 2 --spectra-per-file 500 --out bench_data.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import datasets

from galspec_hf.data import DesiGalaxies, read_build_report, read_desi_coadd
from galspec_hf.data.testing import make_targets, write_desi_coadd, write_legacy_cutout, write_redrock


def write_inputs(root: Path, n_files: int, n_per_file: int, image_size: int) -> None:
    for f in range(n_files):
        targets = make_targets(n_per_file, seed=f, first_targetid=10**15 + 10**6 * f)
        write_desi_coadd(root / f"coadd-main-dark-{f}.fits", targets, healpix=f, seed=f, with_resolution=True)
        write_redrock(root / f"redrock-main-dark-{f}.fits", targets)
        for i, t in enumerate(targets):
            write_legacy_cutout(root / "cutouts" / f"cutout-{t.targetid}.fits", t.ra, t.dec, size=image_size, seed=i)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2, help="coadd files (default 2)")
    parser.add_argument("--spectra-per-file", type=int, default=500, help="spectra per coadd (default 500)")
    parser.add_argument("--image-size", type=int, default=64, help="cutout side in pixels (default 64)")
    parser.add_argument(
        "--num-proc", type=int, default=1, help="also time this many processes (default 1: only serial)"
    )
    parser.add_argument("--out", required=True, help="JSON result file")
    args = parser.parse_args(argv)
    datasets.disable_progress_bars()

    work = Path(tempfile.mkdtemp(prefix="galspec-bench-"))
    try:
        inputs = work / "in"
        (inputs / "cutouts").mkdir(parents=True)
        start = time.perf_counter()
        write_inputs(inputs, args.files, args.spectra_per_file, args.image_size)
        write_s = time.perf_counter() - start
        n_spectra = args.files * args.spectra_per_file

        start = time.perf_counter()
        for path in sorted(inputs.glob("coadd-*.fits")):
            read_desi_coadd(path)
        read_s = time.perf_counter() - start

        runs = []
        for num_proc in sorted({1, args.num_proc}):
            builder = DesiGalaxies(
                data_dir=inputs, cache_dir=str(work / f"cache{num_proc}"), image_size=args.image_size
            )
            start = time.perf_counter()
            builder.download_and_prepare(num_proc=num_proc if num_proc > 1 else None)
            prepare_s = time.perf_counter() - start
            written = read_build_report(builder.cache_dir)["n_written"]
            runs.append(
                {
                    "num_proc": num_proc,
                    "seconds": round(prepare_s, 3),
                    "rows_written": written,
                    "spectra_per_s": round(n_spectra / prepare_s, 1),
                    "spectra_per_s_per_process": round(n_spectra / prepare_s / num_proc, 1),
                }
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "bench_data: DESI builder preparation throughput",
        "files": args.files,
        "spectra_per_file": args.spectra_per_file,
        "image_size": args.image_size,
        "write_inputs_s": round(write_s, 3),
        "read_desi_coadd_spectra_per_s": round(n_spectra / read_s, 1),
        "prepare": runs,
        "target_spectra_per_s_per_process": 200,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "datasets_version": datasets.__version__,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
