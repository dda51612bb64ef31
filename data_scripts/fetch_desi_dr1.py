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

from galspec_hf.data.fetch import add_manifest_arguments, desi_dr1_manifest, fetch_main, read_target_list


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", required=True, help="CSV or FITS table with SURVEY, PROGRAM, HEALPIX")
    add_manifest_arguments(parser)
    args = parser.parse_args(argv)
    return fetch_main(
        "fetch_desi_dr1", lambda: desi_dr1_manifest(read_target_list(args.targets), source=args.targets), args
    )


if __name__ == "__main__":
    sys.exit(main())
