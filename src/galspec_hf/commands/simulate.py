"""``galspec simulate``: write a synthetic survey with ground truth in the real file formats."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import CLIError
from . import _checks, add_command


def register(subparsers) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers,
        "simulate",
        help="write a synthetic survey (DESI coadd/redrock, Legacy cutouts, MaNGA truth, truth table)",
        description=(
            "Simulate galaxies with known spatially resolved spectra and write them as DESI coadd + redrock\n"
            "files, Legacy Surveys cutouts and, for --n-ifu of them, MaNGA LOGCUBE + MAPS files, plus\n"
            "DIR/truth.parquet."
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
    parser.add_argument("--cutout-size", type=int, default=104,
                        help="Legacy cutout side, pixels (even; default 104: the small preset's 96 + shift margin)")
    parser.add_argument("--ifu-spaxels", type=int, default=None, help="cube side in spaxels (default: from size)")
    parser.add_argument(
        "--offcentre-fraction",
        type=float,
        default=None,
        metavar="F",
        help="fraction (0-1) of all targets that are off-centre pieces of large galaxies "
        "(default: constants.SIMULATED_OFFCENTRE_FRACTION; see docs/SIMULATION.md)",
    )
    parser.add_argument("--overwrite", action="store_true", help="write into a folder that already holds a survey")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _check_templates(source: str | None) -> None:
    """A CLIError unless ``source`` is None, 'kcorrect' (installed) or a readable FSPS SSP FITS file."""
    from ..simulate.templates import kcorrect_template_path  # noqa: PLC0415

    if source is None:
        if kcorrect_template_path() is None and not os.environ.get("GALSPEC_SSP_TEMPLATES"):
            raise CLIError("kcorrect is not installed: give --templates SSP.fits (or set GALSPEC_SSP_TEMPLATES)")
        return
    if source == "kcorrect":
        if kcorrect_template_path() is None:
            raise CLIError("--templates kcorrect: kcorrect is not installed; give an FSPS SSP FITS file")
        return
    from astropy.io import fits  # noqa: PLC0415

    path = Path(source)
    if not path.is_file():
        raise CLIError(f"--templates {source}: file not found")
    try:
        with fits.open(path) as hdul:
            missing = [name for name in ("FLUX", "WAVE", "METADATA") if name not in hdul]
            if not missing:
                columns = getattr(hdul["METADATA"], "columns", None)
                if columns is None or "age" not in columns.names:
                    missing = ["METADATA column age"]
    except (OSError, ValueError) as error:  # astropy: OSError for a non-FITS file, ValueError for a bad header
        raise CLIError(f"--templates {source}: not a readable FITS file ({error})") from None
    if missing:
        raise CLIError(
            f"--templates {source}: {', '.join(missing)} missing; expected an FSPS SSP file "
            "(HDUs FLUX, WAVE, METADATA with column age)"
        )


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
    if args.offcentre_fraction is not None and not 0.0 <= args.offcentre_fraction <= 1.0:  # also refuses nan
        raise CLIError(f"--offcentre-fraction must be between 0 and 1, got {args.offcentre_fraction}")
    _check_templates(args.templates)
    _checks.check_output_folder(args.out, ("truth.parquet",), args.overwrite)
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
        offcentre_fraction=args.offcentre_fraction,
    )

    def where(kind: str) -> str:
        return f" in {Path(written[kind][0]).parent}" if written[kind] else ""

    print(
        f"wrote {len(written['coadd'])} coadd + {len(written['redrock'])} redrock files{where('coadd')}, "
        f"{len(written['cutouts'])} cutouts{where('cutouts')}, {len(written['logcubes'])} MaNGA cubes + "
        f"maps{where('logcubes')}, and the truth table {written['truth']}"
    )
    return 0
