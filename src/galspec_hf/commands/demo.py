"""``galspec demo``: predict spectra on a grid of fibers over a galaxy image and write a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import CLIError


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("demo", help="predict fiber spectra over a galaxy image and plot them")
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument("--preset", default="small", help="model preset when --model is not given (default: small)")
    parser.add_argument("--model", default=None, help="folder of a model saved with save_pretrained")
    parser.add_argument(
        "--cutout", default=None, help="Legacy Surveys cutout FITS (default: the one in ../shared/data)"
    )
    parser.add_argument("--redshift", type=float, default=0.1, help="redshift of the galaxy (default: 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from .. import list_models
    from ..demo import run_demo

    if args.model is None and args.preset not in list_models():
        raise CLIError(f"--preset must be one of {list_models()}, got {args.preset!r}")
    if args.model is not None and not (Path(args.model) / "config.json").is_file():
        raise CLIError(f"--model {args.model}: no config.json there (expected a folder written by save_pretrained)")
    if args.cutout is not None and not Path(args.cutout).is_file():
        raise CLIError(f"--cutout {args.cutout}: file not found")
    if args.redshift <= -1:
        raise CLIError(f"--redshift must be greater than -1, got {args.redshift}")
    summary = run_demo(
        args.out, preset=args.preset, model_path=args.model, cutout=args.cutout, redshift=args.redshift, seed=args.seed
    )
    print(f"image: {summary['image']}")
    print(f"model: {summary['model']} ({summary['num_parameters']:,} parameters)")
    print(f"predicted {summary['num_fibers']} fiber spectra of {summary['num_wavelengths']} pixels")
    print(f"wrote {summary['png']} and {Path(args.out) / 'demo.json'}")
    return 0
