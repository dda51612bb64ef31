"""``galspec demo``: predict spectra on a grid of fibers over a galaxy image and write a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CLIError
from . import _checks, add_command

DESCRIPTION = """\
Predict spectra through a 7 x 7 grid of fibers (2 arcsec apart) over a galaxy image and write DIR/demo.png
(the image with the fibers, three predicted spectra with +/- 1 sigma) and DIR/demo.json (a summary).

Without --model the model is built from --preset with random weights: the spectra show the machinery, not
astrophysics. The image is --cutout, else the first Legacy Surveys cutout in ../shared/data/legacysurvey
($GALSPEC_SHARED_DATA), else a synthetic bulge + disk galaxy.

example:
  galspec demo --out demo_output --preset tiny
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "demo", help="predict fiber spectra over a galaxy image and plot them", description=DESCRIPTION
    )
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--preset", default="small", help="model preset when --model is not given (default: small)")
    parser.add_argument("--model", default=None, help="folder of a model saved with save_pretrained")
    parser.add_argument(
        "--cutout", default=None, help="Legacy Surveys cutout FITS (default: the one in ../shared/data)"
    )
    parser.add_argument("--redshift", type=float, default=0.1, help="redshift of the galaxy (default: 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and synthetic image")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from .. import list_models
    from ..demo import run_demo
    from ..models.galspec import GalSpecConfig

    _checks.check_redshift(args.redshift)
    if args.model is None and args.preset not in list_models():
        raise CLIError(f"--preset must be one of {list_models()}, got {args.preset!r}")
    if args.model is not None:
        config = _checks.read_model_config(args.model)
    else:
        config = GalSpecConfig.from_preset(args.preset)
    if args.cutout is not None:
        cutout = _checks.check_cutout(args.cutout, config, name="--cutout")
        print(f"{args.cutout}: {_checks.describe_crop(cutout.image.shape[-2:], config)}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    summary = run_demo(
        args.out, preset=args.preset, model_path=args.model, cutout=args.cutout, redshift=args.redshift, seed=args.seed
    )
    print(f"image: {summary['image']}")
    print(f"model: {summary['model']} ({summary['num_parameters']:,} parameters)")
    print(f"predicted {summary['num_fibers']} fiber spectra of {summary['num_wavelengths']} pixels")
    print(f"wrote {summary['png']} and {Path(args.out) / 'demo.json'}")
    return 0
