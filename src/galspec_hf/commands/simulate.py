"""``galspec simulate``: write a synthetic survey with ground truth in the real file formats."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import CLIError


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "simulate",
        help="write a synthetic survey (DESI coadd/redrock, Legacy cutouts, MaNGA truth, truth table)",
        description=(
            "Simulate galaxies with known spatially resolved spectra and write them as DESI coadd + redrock files, "
            "Legacy Surveys cutouts and, for --n-ifu of them, MaNGA LOGCUBE + MAPS files, plus DIR/truth.parquet."
        ),
    )
    parser.add_argument("--n-galaxies", type=int, required=True, help="number of DESI targets")
    parser.add_argument("--n-ifu", type=int, default=0, help="galaxies that also get MaNGA-format truth (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="survey seed (default 0); output is deterministic")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--templates",
        default=None,
        help="stellar population templates: 'kcorrect' (default when installed) or an FSPS SSP FITS file",
    )
    parser.add_argument("--targets-per-file", type=int, default=500, help="targets per coadd/redrock file")
    parser.add_argument("--cutout-size", type=int, default=64, help="Legacy cutout side in pixels (even)")
    parser.add_argument("--ifu-spaxels", type=int, default=None, help="cube side in spaxels (default: from size)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    if args.n_galaxies < 1:
        raise CLIError(f"--n-galaxies must be >= 1, got {args.n_galaxies}")
    if not 0 <= args.n_ifu <= args.n_galaxies:
        raise CLIError(f"--n-ifu must be between 0 and --n-galaxies ({args.n_galaxies}), got {args.n_ifu}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    if args.cutout_size <= 0 or args.cutout_size % 2:
        raise CLIError(f"--cutout-size must be a positive even number, got {args.cutout_size}")
    if args.targets_per_file < 1:
        raise CLIError(f"--targets-per-file must be >= 1, got {args.targets_per_file}")
    if args.ifu_spaxels is not None and args.ifu_spaxels < 4:
        raise CLIError(f"--ifu-spaxels must be >= 4, got {args.ifu_spaxels}")
    if args.templates not in (None, "kcorrect") and not Path(args.templates).is_file():
        raise CLIError(f"--templates: file {args.templates} not found")
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} exists and is not a folder")
    from ..simulate import simulate_survey  # noqa: PLC0415

    written = simulate_survey(
        args.out,
        n_galaxies=args.n_galaxies,
        n_ifu=args.n_ifu,
        seed=args.seed,
        templates=args.templates,
        targets_per_file=args.targets_per_file,
        cutout_size=args.cutout_size,
        ifu_spaxels=args.ifu_spaxels,
        progress=not args.no_progress,
    )
    print(
        f"wrote {len(written['coadd'])} coadd + {len(written['redrock'])} redrock files, "
        f"{len(written['cutouts'])} cutouts, {len(written['logcubes'])} MaNGA cubes + maps, and {written['truth']}"
    )
    return 0
