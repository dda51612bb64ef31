"""``galspec line-maps``: fit emission lines in every spaxel of a LOGCUBE-like FITS and write maps (FITS + PNG)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import CLIError


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "line-maps",
        help="emission-line flux/velocity/dispersion/EW maps and Dn4000 of a MaNGA-like LOGCUBE",
        description=(
            "Fit Gaussian emission lines (kinematics tied within Balmer and forbidden groups, [NII] and [OIII] "
            "doublet ratios fixed, local linear continuum) in every spaxel of a MaNGA DRP LOGCUBE-like file and "
            "write DIR/line_maps.fits (DAP-MAPS-like) and DIR/line_maps.png. See docs/LINES.md."
        ),
    )
    parser.add_argument("cube", type=Path, help="LOGCUBE-like FITS (HDUs FLUX, IVAR, MASK, WAVE; (L, ny, nx))")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--redshift", type=float, default=None, help="redshift (default: the Z keyword of the primary header)"
    )
    parser.add_argument(
        "--instrument",
        choices=("manga", "desi"),
        default=None,
        help="instrumental resolution when the cube has no SPECRES HDU (default: manga); giving it overrides SPECRES",
    )
    parser.add_argument("--chunk-size", type=int, default=256, help="spaxels fitted together (default 256)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _header_redshift(header) -> float | None:
    from .. import constants as C  # noqa: PLC0415

    if "Z" in header:
        return float(header["Z"])
    if "SCINPVEL" in header:  # MaNGA DAP input velocity cz, km/s
        return float(header["SCINPVEL"]) / C.SPEED_OF_LIGHT_KMS
    return None


def _spectral_resolution(path: Path, n_wave: int):
    """The LOGCUBE's SPECRES (R = lambda / FWHM per wavelength) when present and usable, else None."""
    import numpy as np  # noqa: PLC0415
    from astropy.io import fits  # noqa: PLC0415

    with fits.open(path) as hdul:
        if "SPECRES" not in hdul or hdul["SPECRES"].data is None:
            return None
        resolution = np.asarray(hdul["SPECRES"].data, np.float64)
    if resolution.shape != (n_wave,) or not np.all(np.isfinite(resolution)) or np.any(resolution <= 0):
        return None
    return resolution


def run(args: argparse.Namespace) -> int:
    if not args.cube.is_file():
        raise CLIError(f"{args.cube}: file not found")
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} exists and is not a folder")
    if args.chunk_size < 1:
        raise CLIError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    from astropy.io import fits  # noqa: PLC0415

    from ..analysis.lines import desi_instrumental_sigma_kms, fit_emission_lines  # noqa: PLC0415
    from ..data import read_manga_cube  # noqa: PLC0415

    cube = read_manga_cube(args.cube)  # checks the layout first; errors name the file and HDU
    primary = fits.getheader(args.cube, 0)
    redshift = args.redshift
    if redshift is None:
        redshift = _header_redshift(primary)
        if redshift is None:
            raise CLIError(f"{args.cube}: no Z (or SCINPVEL) keyword in the primary header; give --redshift")
    if not math.isfinite(redshift) or redshift <= -1:
        raise CLIError(f"--redshift must be finite and > -1, got {redshift}")
    resolution = None if args.instrument is not None else _spectral_resolution(args.cube, cube.wavelength.size)
    sigma_inst = desi_instrumental_sigma_kms(cube.wavelength) if args.instrument == "desi" else None
    wcs_header = cube.wcs.to_header()
    maps = fit_emission_lines(
        cube.wavelength,
        cube.flux,
        cube.ivar,
        redshift,
        mask=cube.mask,
        spectral_axis=0,
        spectral_resolution=resolution,
        instrumental_sigma_kms=sigma_inst,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
        meta={"wcs_header": wcs_header, "spaxel_offset_arcsec": cube.spaxel_offset_arcsec},
    )
    args.out.mkdir(parents=True, exist_ok=True)
    header = primary.copy()  # the cube's primary header (PLATEIFU, OBJRA, ...), plus what was fitted
    header["Z"] = (redshift, "redshift the velocities are relative to")
    header["CUBE"] = (args.cube.name[:68], "input cube")
    fits_path = maps.to_fits(args.out / "line_maps.fits", header=header)
    png_path = maps.plot(args.out / "line_maps.png")
    n_spaxel = maps.dn4000.size
    import numpy as np  # noqa: PLC0415

    n_ha = int(np.sum(np.isfinite(maps.flux["Halpha"]) & (maps.flux["Halpha"] > 3 * maps.flux_err["Halpha"])))
    print(f"fitted {n_spaxel} spaxels at z = {redshift:.5f}; H-alpha detected (S/N > 3) in {n_ha}")
    print(f"wrote {fits_path} and {png_path}")
    return 0
