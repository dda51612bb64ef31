#!/usr/bin/env python
"""Fetch the DESI DR1 coadd and redrock files that hold a list of targets.

The target list (CSV or FITS) needs columns SURVEY, PROGRAM and HEALPIX (nested, nside 64), as in
the DESI DR1 redshift catalogues (zall-pix-iron.fits). Files land in OUT mirroring the archive
(``{survey}/{program}/{healpix//100}/{healpix}/coadd-{survey}-{program}-{healpix}.fits``).

    python data_scripts/fetch_desi_dr1.py --targets targets.csv --out desi_dr1 --dry-run
    python data_scripts/fetch_desi_dr1.py --targets targets.csv --out desi_dr1

``--dry-run`` prints the manifest (kind, URL, local path; tab-separated) and downloads nothing.
A real download resumes interrupted files (HTTP Range) and checks their sizes; rerunning it
skips complete files.
"""

from __future__ import annotations

import argparse
import sys

from galspec_hf.data.fetch import desi_dr1_manifest, read_target_list, run_manifest
from galspec_hf.data.readers import GalspecFormatError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", required=True, help="CSV or FITS table with SURVEY, PROGRAM, HEALPIX")
    parser.add_argument("--out", default="desi_dr1", help="output folder (default: desi_dr1)")
    parser.add_argument("--dry-run", action="store_true", help="print the manifest and download nothing")
    parser.add_argument("--retries", type=int, default=3, help="attempts per file (default 3)")
    args = parser.parse_args(argv)
    try:
        entries = desi_dr1_manifest(read_target_list(args.targets), source=args.targets)
    except (FileNotFoundError, GalspecFormatError) as error:
        print(f"fetch_desi_dr1: error: {error}", file=sys.stderr)
        return 2
    return run_manifest(entries, args.out, dry_run=args.dry_run, retries=args.retries)


if __name__ == "__main__":
    sys.exit(main())
