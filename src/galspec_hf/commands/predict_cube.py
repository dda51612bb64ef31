"""``galspec predict-cube``: an IFU-like cube from an image, written as a MaNGA-like LOGCUBE."""

from __future__ import annotations

import argparse

from . import _checks, add_command

#: As galspec_hf.cube.CUBE_CONDITIONING_MODES (a test checks they agree); not imported, so that `galspec --help`
#: stays fast (the cube module imports torch).
CUBE_CONDITIONING_MODES = ("residual", "encoder")

DESCRIPTION = """\
Predict an IFU-like spectral cube for the galaxy at the centre of a Legacy Surveys cutout and write it as a
MaNGA-like LOGCUBE FITS (HDUs FLUX, IVAR = 1/sigma_model^2, MASK, WAVE), which `galspec line-maps` reads.

The model sees the central image_size x image_size pixels of the cutout, set by its configuration (presets
tiny/small/base: 32/64/96 pixels = 8.4/16.8/25.2 arcsec at 0.262 arcsec/pixel); the cube covers that field
on a grid of --spaxel-size spaxels, inside a hexagonal footprint of --bundle-diameter. Every input is checked
before the model is loaded.

With --spectrum (a DESI coadd) and --targetid, the prediction is conditioned on that galaxy's observed fiber
spectrum (the flux that entered the fiber: the coadd's point-source-calibrated flux x MEAN_PSF_TO_FIBER_SPECFLUX,
at its fiber's sky position); without them, on the image alone. --conditioning residual (the default) adds the
fiber's residual spectrum (observed - the model's image-only prediction at the fiber) to the image-only cube in
proportion to the image light under each spaxel; encoder lets the model's encoder see the spectrum (on the
synthetic validation set its H-alpha maps fail on about half the spaxels; docs/RESULTS.md).

examples:
  galspec predict-cube --model runs/pretrain --image cutout.fits --redshift 0.1 --out cube.fits.gz
  galspec predict-cube --model runs/pretrain --image cutout.fits --redshift 0.1 --out cube.fits.gz \
      --spectrum coadd-sv1-bright-1234.fits --targetid 39627745941423456
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers,
        "predict-cube",
        help="predict an IFU-like cube from a cutout (LOGCUBE FITS)",
        description=DESCRIPTION,
    )
    parser.add_argument("--model", required=True, help="folder of a model saved with save_pretrained")
    parser.add_argument(
        "--image", required=True, help="Legacy Surveys cutout FITS (the model's bands and pixel scale)"
    )
    parser.add_argument(
        "--redshift",
        required=True,
        type=float,
        help=f"redshift of the galaxy, {_checks.DESI_GALAXY_Z_MIN:g} to {_checks.DESI_GALAXY_Z_MAX:g}",
    )
    parser.add_argument(
        "--out", required=True, help="output FITS (e.g. cube.fits or cube.fits.gz); its folder must exist"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--spaxel-size", type=float, default=0.5, help="arcsec (default 0.5, as MaNGA)")
    parser.add_argument(
        "--bundle-diameter", type=float, default=None, help="hexagonal footprint, arcsec (default: the field of view)"
    )
    parser.add_argument(
        "--fiber-diameter", type=float, default=None, help="aperture per spaxel, arcsec (default: the model's fiber)"
    )
    parser.add_argument(
        "--spectrum", default=None, help="DESI coadd FITS holding the galaxy's observed fiber (needs --targetid)"
    )
    parser.add_argument("--targetid", type=int, default=None, help="TARGETID of the galaxy in --spectrum")
    parser.add_argument(
        "--conditioning",
        choices=CUBE_CONDITIONING_MODES,
        default="residual",
        help="how the observed fiber is used (default residual; see above)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    # every check before the model is loaded
    _checks.check_redshift(args.redshift)
    _checks.check_positive(args.spaxel_size, "--spaxel-size")
    _checks.check_positive(args.bundle_diameter, "--bundle-diameter")
    _checks.check_positive(args.fiber_diameter, "--fiber-diameter")
    out = _checks.check_output_file(args.out, args.overwrite)
    config = _checks.read_model_config(args.model)
    cutout = _checks.check_cutout(args.image, config)
    if (args.spectrum is None) != (args.targetid is None):
        raise _checks.CLIError("--spectrum and --targetid go together: give both or neither")
    # the coadd read by the check is handed on, not read a second time
    coadd = _checks.check_observed_fiber(args.spectrum, args.targetid) if args.spectrum is not None else None
    print(f"{args.image}: {_checks.describe_crop(cutout.image.shape[-2:], config)}")

    import numpy as np  # noqa: PLC0415
    from astropy.io import fits  # noqa: PLC0415

    from ..cube import predict_cube_file  # noqa: PLC0415

    path = predict_cube_file(
        args.model,
        args.image,
        args.redshift,
        out,
        args.spaxel_size,
        args.bundle_diameter,
        args.fiber_diameter,
        overwrite=args.overwrite,
        coadd=coadd,
        targetid=args.targetid,
        conditioning=args.conditioning,
    )
    mask = fits.getdata(path, "MASK")[0]
    header = fits.getheader(path, 0)
    ny, nx = mask.shape
    inside = int(np.sum(mask == 0))
    print(
        f'cube: {ny}x{nx} spaxels of {header["SPAXSIZE"]:g}" ({ny * header["SPAXSIZE"]:.1f}" x '
        f'{nx * header["SPAXSIZE"]:.1f}"), {inside} inside the footprint, each read through a '
        f'{header["FIBERDIA"]:.2f}" aperture, at z = {args.redshift:g}'
    )
    if args.spectrum is not None:
        print(f"conditioned on the observed fiber of TARGETID {args.targetid} in {args.spectrum} "
              f"({args.conditioning})")  # fmt: skip
    print(f"wrote {path}")
    return 0
