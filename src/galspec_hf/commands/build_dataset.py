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

from ..cli import CLIError


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "build-dataset",
        help="build the DESI x Legacy Surveys training set (Arrow or Parquet) from a folder of survey files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    from ..data.build import build_desi_dataset, summarize_report

    if args.num_proc is not None and args.num_proc < 1:
        raise CLIError(f"--num-proc must be a positive integer, got {args.num_proc}")
    if args.image_size < 1:
        raise CLIError(f"--image-size must be a positive integer, got {args.image_size}")
    if args.z_min >= args.z_max:
        raise CLIError(f"--z-min ({args.z_min}) must be below --z-max ({args.z_max})")
    try:
        report = build_desi_dataset(
            args.input,
            args.output,
            file_format=args.format,
            num_proc=args.num_proc,
            push_to_hub=args.push_to_hub,
            cache_dir=args.cache_dir,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            image_size=args.image_size,
            min_deltachi2=args.min_deltachi2,
            z_min=args.z_min,
            z_max=args.z_max,
        )
    except (FileNotFoundError, FileExistsError) as error:
        raise CLIError(str(error)) from None
    print(summarize_report(report))
    return 0
