#!/usr/bin/env python
"""Fetch Legacy Surveys FITS cutouts (g, r, z; DR10; 0.262 arcsec/pixel) centred on a list of targets.

The target list (CSV or FITS) needs columns RA and DEC in degrees, and optionally TARGETID: the
cutout of a target with a TARGETID is saved as ``cutouts/cutout-{TARGETID}.fits``, the name that
``galspec build-dataset`` matches; without one the builder matches the cutout by sky position.

    python data_scripts/fetch_legacy_cutouts.py --targets targets.csv --out desi_dr1 --size 64 --dry-run

``--dry-run`` prints the manifest (kind, URL, local path; tab-separated) and downloads nothing.
A real download resumes interrupted files (HTTP Range, where the service honours it) and checks
sizes against the server's Content-Length when it sends one.
"""

from __future__ import annotations

import argparse
import sys

from galspec_hf import constants as C
from galspec_hf.data.fetch import add_manifest_arguments, fetch_main, legacy_cutout_manifest, read_target_list


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", required=True, help="CSV or FITS table with RA, DEC (degrees), optional TARGETID")
    parser.add_argument("--size", type=int, default=64, help="cutout side in pixels (default 64)")
    parser.add_argument("--pixscale", type=float, default=C.LEGACY_PIXEL_SCALE_ARCSEC, help="arcsec per pixel")
    parser.add_argument(
        "--layer", default=C.LEGACY_CUTOUT_LAYER, help=f"imaging layer (default {C.LEGACY_CUTOUT_LAYER})"
    )
    parser.add_argument("--bands", default="".join(C.LEGACY_BANDS), help="bands (default grz)")
    add_manifest_arguments(parser)
    args = parser.parse_args(argv)
    if args.size < 1:
        print(f"fetch_legacy_cutouts: error: --size must be positive, got {args.size}", file=sys.stderr)
        return 2

    def entries():
        return legacy_cutout_manifest(
            read_target_list(args.targets),
            source=args.targets,
            size=args.size,
            pixel_scale_arcsec=args.pixscale,
            layer=args.layer,
            bands=args.bands,
        )

    return fetch_main("fetch_legacy_cutouts", entries, args)


if __name__ == "__main__":
    sys.exit(main())
