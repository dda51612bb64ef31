"""``galspec predict-cube``: an IFU-like cube from an image, written as a MaNGA-like LOGCUBE."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CLIError


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("predict-cube", help="predict an IFU-like cube from a cutout (LOGCUBE FITS)")
    parser.add_argument("--model", required=True, help="folder of a model saved with save_pretrained")
    parser.add_argument("--image", required=True, help="Legacy Surveys cutout FITS")
    parser.add_argument("--redshift", required=True, type=float, help="redshift of the galaxy")
    parser.add_argument("--out", required=True, help="output FITS (e.g. cube.fits or cube.fits.gz)")
    parser.add_argument("--spaxel-size", type=float, default=0.5, help="arcsec (default 0.5, as MaNGA)")
    parser.add_argument("--bundle-diameter", type=float, default=None, help="hexagonal footprint, arcsec")
    parser.add_argument("--fiber-diameter", type=float, default=None, help="aperture per spaxel, arcsec")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if not (Path(args.model) / "config.json").is_file():
        raise CLIError(f"--model {args.model}: no config.json there (expected a folder written by save_pretrained)")
    if not Path(args.image).is_file():
        raise CLIError(f"--image {args.image}: file not found")
    if args.redshift <= -1:
        raise CLIError(f"--redshift must be greater than -1, got {args.redshift}")
    if args.spaxel_size <= 0:
        raise CLIError(f"--spaxel-size must be positive, got {args.spaxel_size}")
    from ..cube import predict_cube_file

    path = predict_cube_file(
        args.model, args.image, args.redshift, args.out, args.spaxel_size, args.bundle_diameter, args.fiber_diameter
    )
    print(f"wrote {path}")
    return 0
