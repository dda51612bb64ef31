"""``galspec build-dataset``: a folder of DESI coadd/redrock files and Legacy Surveys cutouts -> a data set.

Examples::

    galspec build-dataset --input desi_folder --output desi_arrow
    galspec build-dataset --input desi_folder --output desi_parquet --format parquet --num-proc 4
    galspec build-dataset --input desi_folder --output desi_parquet --format parquet --push-to-hub org/desi-galaxies

A JSON report of every skipped file or record, with its reason, is written next to the output
(``<output>.report.json``) and summarised on the console.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path

from ..errors import CLIError
from . import add_command

DESCRIPTION = """\
Build the DESI x Legacy Surveys training set from a folder of DESI coadd-*.fits and redrock-*.fits files and
Legacy Surveys cutout FITS files (searched recursively), as an Arrow folder (datasets.load_from_disk) or
Parquet shards.

Every skipped file or record is written, with its reason, to OUTPUT.report.json next to the output and
summarised on the console. A folder with nothing usable still gets its report, then exits with code 2.

examples:
  galspec build-dataset --input desi_folder --output desi_arrow
  galspec build-dataset --input desi_folder --output desi_parquet --format parquet --num-proc 4
  galspec build-dataset --input desi_folder --output desi_parquet --format parquet --push-to-hub org/desi-galaxies
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers,
        "build-dataset",
        help="build the DESI x Legacy Surveys training set (Arrow or Parquet) from a folder of survey files",
        description=DESCRIPTION,
    )
    parser.add_argument("--input", required=True, help="folder of coadd-*.fits, redrock-*.fits and cutout FITS files")
    parser.add_argument("--output", required=True, help="output folder (must be new or empty, unless --overwrite)")
    parser.add_argument(
        "--format",
        choices=("arrow", "parquet"),
        default="arrow",
        help="arrow: Dataset.save_to_disk folder (default); parquet: Parquet shards",
    )
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO",
        default=None,
        help="also push the data set to this Hugging Face Hub dataset repository (needs network and a token)",
    )
    parser.add_argument("--num-proc", type=int, default=None, help="worker processes (split by coadd file)")
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64; centre crop)")
    parser.add_argument("--min-deltachi2", type=float, default=25.0, help="keep DELTACHI2 > this (default 25)")
    parser.add_argument("--z-min", type=float, default=0.0, help="keep Z > this (default 0)")
    parser.add_argument("--z-max", type=float, default=1.0, help="keep Z < this (default 1)")
    parser.add_argument("--cache-dir", default=None, help="preparation cache (default: a temporary folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..data.build import build_desi_dataset, report_path_for, summarize_report
    from ..data.desi_builder import REPORT_DIRNAME, read_build_report
    from ..strict_json import to_strict_json

    if not Path(args.input).is_dir():
        raise CLIError(f"--input folder {args.input} does not exist")
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise CLIError(f"--output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        raise CLIError(f"--output {output} exists and is not empty; use --overwrite to replace it")
    if args.num_proc is not None and args.num_proc < 1:
        raise CLIError(f"--num-proc must be a positive integer, got {args.num_proc}")
    if args.image_size < 1:
        raise CLIError(f"--image-size must be a positive integer, got {args.image_size}")
    for name in ("min_deltachi2", "z_min", "z_max"):
        if not math.isfinite(getattr(args, name)):
            raise CLIError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(args, name)}")
    if args.z_min >= args.z_max:
        raise CLIError(f"--z-min ({args.z_min}) must be below --z-max ({args.z_max})")
    # a preparation cache this command can read after a build that found nothing (the report lives there)
    temporary = None if args.cache_dir is not None else tempfile.mkdtemp(prefix="galspec-build-")
    cache_dir = args.cache_dir if args.cache_dir is not None else temporary
    try:
        try:
            report = build_desi_dataset(
                args.input,
                args.output,
                file_format=args.format,
                num_proc=args.num_proc,
                push_to_hub=args.push_to_hub,
                cache_dir=cache_dir,
                overwrite=args.overwrite,
                progress=not args.no_progress,
                image_size=args.image_size,
                min_deltachi2=args.min_deltachi2,
                z_min=args.z_min,
                z_max=args.z_max,
            )
        except ValueError:
            # `datasets` refuses an empty split ('Instruction "train" corresponds to no data!'); when the
            # preparation's own report shows that nothing was written, that is the user's folder, not a bug
            parts = sorted(Path(cache_dir).rglob(f"{REPORT_DIRNAME}/part-*.jsonl"))
            report = read_build_report(parts[-1].parent.parent) if parts else None
            if report is None or report["n_written"] > 0:
                raise
            report = {"output_dir": str(output), "format": args.format, "num_rows": 0, **report}
            report_path = report_path_for(output)
            report["report_path"] = str(report_path)
            report_path.write_text(json.dumps(to_strict_json(report), indent=2, allow_nan=False) + "\n")
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    lines = summarize_report(report).splitlines()
    if report["num_rows"] == 0:
        lines[0] = f"wrote no data set: no row to write to {output}"
    print("\n".join(lines))
    if report["num_rows"] == 0:
        raise CLIError(
            f"--input {args.input}: no usable galaxy ({report['n_coadd_files']} coadd files, "
            f"{report['n_skipped']} files/records skipped); reasons in {report['report_path']}"
        )
    return 0
