"""``galspec line-maps``: fit emission lines in every spaxel of a LOGCUBE-like FITS and write maps (FITS + PNG)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CLIError
from . import _checks, add_command

DESCRIPTION = """\
Fit Gaussian emission lines in every spaxel of a MaNGA DRP LOGCUBE-like file (kinematics tied within the
Balmer and the forbidden lines, [NII] and [OIII] doublet ratios fixed) and measure Dn4000. Writes
DIR/line_maps.fits (DAP-MAPS-like, read by galspec_hf.data.read_manga_maps) and DIR/line_maps.png (maps in
arcsec offsets, north up, east left; spaxels without data, without a detection (S/N < 3) or with kinematics
at the fit's search limit are shown masked). See docs/LINES.md.

examples:
  galspec line-maps manga-7815-3702-LOGCUBE.fits.gz --out maps_7815
  galspec line-maps cube.fits --out maps --redshift 0.025 --continuum local
"""

#: Files written into --out.
OUTPUT_FILES = ("line_maps.fits", "line_maps.png")
#: A line counts as detected where flux > DETECTION_SNR x flux_err.
DETECTION_SNR = 3.0


def register(subparsers) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers,
        "line-maps",
        help="emission-line flux/velocity/dispersion/EW maps and Dn4000 of a MaNGA-like LOGCUBE",
        description=DESCRIPTION,
    )
    parser.add_argument("cube", type=Path, help="LOGCUBE-like FITS (HDUs FLUX, IVAR, MASK, WAVE; (L, ny, nx))")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace line_maps.fits/.png already in --out")
    parser.add_argument(
        "--redshift", type=float, default=None, help="redshift (default: the Z keyword of the primary header)"
    )
    parser.add_argument(
        "--instrument",
        choices=("manga", "desi"),
        default=None,
        help="instrumental resolution when the cube has no SPECRES HDU (default: manga); giving it overrides SPECRES",
    )
    parser.add_argument(
        "--continuum",
        choices=("template", "local"),
        default="template",
        help="template (default): a stellar-template continuum over the whole spectrum, about 10-20 ms per "
        "spaxel with data on 2 CPU cores (a 74x74 cube: under a minute; docs/BENCHMARKS.md); local: a straight "
        "line under each line complex, about 3x faster, biased in old stellar populations",
    )
    parser.add_argument(
        "--continuum-refit",
        choices=("same", "sasuke", "off"),
        default="same",
        help="template continuum only: the second pass (the continuum refitted on the spectrum minus the fitted "
        "lines, their windows unmasked, then the lines again): same (default) templates and polynomial as the first "
        "fit; sasuke: as the MaNGA DAP (whole library, no polynomial; about 1.4x slower); off: about 15 %% faster",
    )
    parser.add_argument(
        "--templates",
        type=Path,
        default=None,
        help="template continuum only: another stellar library, an FSPS SSP FITS file (one template per age) or an "
        ".npz in the layout of the shipped MILES-HC file (default: MILES-HC)",
    )
    parser.add_argument(
        "--dispersions",
        choices=("tied", "free", "auto"),
        default="tied",
        help="tied (default): one line width for the Balmer lines and one for the forbidden lines; free: each line "
        "its own, within 1.4x of its group's (as the MaNGA DAP); auto: free where the strongest line has S/N >= 10",
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


def lines_on_grid(wavelength, redshift: float) -> tuple[list[str], list[str]]:
    """The fitted lines whose observed wavelength lambda_rest (1 + z) falls on / off ``wavelength`` (Angstrom)."""
    from .. import constants as C  # noqa: PLC0415

    low, high = float(min(wavelength)), float(max(wavelength))
    on, off = [], []
    for name in C.MODELLED_EMISSION_LINES:
        (on if low <= C.EMISSION_LINES_VACUUM_A[name] * (1 + redshift) <= high else off).append(name)
    return on, off


def panel_masks(maps, line: str = "Halpha") -> dict:
    """Why each spaxel of ``line``'s maps is not shown: boolean (ny, nx) arrays.

    ``no_value``: not measured (no unmasked pixels, outside the footprint; DAP NOVALUE/DONOTUSE or NaN);
    ``undetected``: measured but flux <= DETECTION_SNR x flux_err; ``at_limit``: detected, but the velocity or
    dispersion sits at the fit's search limit (DAP NEARBOUND), so the kinematics mean nothing.
    """
    import numpy as np  # noqa: PLC0415

    from .. import constants as C  # noqa: PLC0415

    flux, error = np.asarray(maps.flux[line], float), np.asarray(maps.flux_err[line], float)
    bits = np.asarray(maps.mask[line]).astype(np.int64)
    no_value = ~np.isfinite(flux) | ~np.isfinite(error)
    no_value |= (bits & ((1 << C.DAP_MASK_NOVALUE_BIT) | (1 << C.DAP_MASK_DONOTUSE_BIT))) != 0
    with np.errstate(invalid="ignore"):
        detected = ~no_value & (flux > DETECTION_SNR * error)
    undetected = ~no_value & ~detected
    at_limit = detected & ((bits & (1 << C.DAP_MASK_NEARBOUND_BIT)) != 0)
    return {"no_value": no_value, "undetected": undetected, "at_limit": at_limit}


_MASK_COLOURS = {  # background shown where a panel is masked, with its legend label
    "no_value": ("#ffffff", "no data / outside footprint"),
    "undetected": ("#bdbdbd", f"undetected (S/N < {DETECTION_SNR:g})"),
    "at_limit": ("#636363", "kinematics at the fit limit"),
}


def plot_line_maps(maps, path, offsets_arcsec, title: str, lines=("Halpha", "Hbeta", "NII_6585", "OIII_5008")) -> Path:
    """Write a PNG of line-flux, H-alpha kinematics and EW, and Dn4000 maps with masked spaxels shown as masked.

    Parameters
    ----------
    maps : LineMaps with 2-D (ny, nx) maps.
    path : output PNG.
    offsets_arcsec : array (ny, nx, 2), spaxel centres in arcsec east/north of the galaxy (the cube's).
    title : figure title (galaxy and redshift).
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from matplotlib.colors import ListedColormap  # noqa: PLC0415
    from matplotlib.patches import Patch  # noqa: PLC0415

    from .. import constants as C  # noqa: PLC0415
    from ..plotting import north_east_arrows  # noqa: PLC0415

    ny, nx = maps.shape
    offsets = np.asarray(offsets_arcsec, float)

    def edges(first: float, last: float, n: int) -> tuple[float, float]:
        step = (last - first) / (n - 1) if n > 1 else 0.5
        return first - step / 2, last + step / 2

    left, right = edges(offsets[ny // 2, 0, 0], offsets[ny // 2, -1, 0], nx)  # east offset: left is east
    bottom, top = edges(offsets[0, nx // 2, 1], offsets[-1, nx // 2, 1], ny)
    extent = (left, right, bottom, top)

    ha = panel_masks(maps, "Halpha")
    panels = []
    for line in lines:
        masks = panel_masks(maps, line)
        label = f"{C.DAP_CHANNEL_NAMES[line]} flux"
        panels.append((label, maps.flux[line], "viridis", "1e-17 erg/s/cm2/spaxel", masks, ("no_value", "undetected")))
    kinematics = ("no_value", "undetected", "at_limit")
    panels += [
        ("Ha-6564 velocity", maps.velocity_kms["Halpha"], "RdBu_r", "km/s (relative to z)", ha, kinematics),
        ("Ha-6564 dispersion", maps.dispersion_kms["Halpha"], "magma", "km/s (intrinsic)", ha, kinematics),
        ("Ha-6564 EW", maps.ew_rest_a["Halpha"], "viridis", "Angstrom (rest frame)", ha, ("no_value", "undetected")),
        ("Dn4000", maps.dn4000, "cividis", "ratio", None, ()),
    ]
    ncol = 4
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.9 * nrow + 0.8), squeeze=False, layout="constrained")
    used = set()
    for ax, (name, data, cmap, unit, masks, reasons) in zip(axes.ravel(), panels, strict=False):
        data = np.asarray(data, float)
        hidden = np.zeros(data.shape, bool)
        category = np.zeros(data.shape, int)  # 0: shown; else 1 + the first reason (in _MASK_COLOURS order)
        for index, reason in enumerate(_MASK_COLOURS, start=1):
            if reason in reasons:
                category[masks[reason] & ~hidden] = index
                hidden |= masks[reason]
        category[~np.isfinite(data) & ~hidden] = 1  # NaN for another reason (e.g. EW where continuum <= 0)
        hidden |= ~np.isfinite(data)
        for index, reason in enumerate(_MASK_COLOURS, start=1):
            if np.any(category == index):
                used.add(reason)
        background = ListedColormap(["#ffffff"] + [colour for colour, _ in _MASK_COLOURS.values()])
        ax.imshow(category, origin="lower", extent=extent, cmap=background, vmin=0, vmax=len(_MASK_COLOURS))
        shown = np.ma.masked_array(data, mask=hidden)
        values = data[~hidden]
        vmin, vmax = np.percentile(values, [2, 98]) if values.size else (0.0, 1.0)
        if cmap == "RdBu_r":
            vmax = max(abs(vmin), abs(vmax), 1.0)
            vmin = -vmax
        if vmin == vmax:
            vmax = vmin + 1.0
        image = ax.imshow(shown, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax)
        if values.size:
            bar = fig.colorbar(image, ax=ax, shrink=0.85)
            bar.set_label(unit, fontsize=8)
            bar.ax.tick_params(labelsize=7)
        else:
            ax.text(0.5, 0.5, "nothing to show", transform=ax.transAxes, ha="center", va="center", fontsize=9)
        ax.set_title(f"{name} ({values.size} of {data.size} spaxels)", fontsize=9)
        ax.set_xlabel("east offset [arcsec]", fontsize=8)
        ax.set_ylabel("north offset [arcsec]", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    # north up, east left (the x axis runs east to west): arrows in the first panel's corner
    north_east_arrows(axes[0, 0])
    handles = [Patch(facecolor=colour, edgecolor="black", label=label) for colour, label in _MASK_COLOURS.values()]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, title="masked spaxels")
    fig.suptitle(title, fontsize=11)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    if not args.cube.is_file():
        raise CLIError(f"{args.cube}: file not found")
    _checks.check_output_folder(args.out, OUTPUT_FILES, args.overwrite)
    if args.chunk_size < 1:
        raise CLIError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    if args.redshift is not None:
        _checks.check_redshift(args.redshift, z_max=None)
    if args.templates is not None and args.continuum != "template":
        raise CLIError(f"--templates is for --continuum template, got --continuum {args.continuum}")
    if args.templates is not None and not args.templates.is_file():
        raise CLIError(f"--templates {args.templates}: file not found")
    import numpy as np  # noqa: PLC0415
    from astropy.io import fits  # noqa: PLC0415

    from ..analysis.continuum import load_continuum_templates  # noqa: PLC0415
    from ..analysis.lines import desi_instrumental_sigma_kms, fit_emission_lines  # noqa: PLC0415
    from ..data import read_manga_cube  # noqa: PLC0415

    templates = None
    if args.templates is not None:
        try:
            templates = load_continuum_templates(args.templates)
        except (ValueError, OSError, KeyError) as error:
            raise CLIError(f"--templates {args.templates}: {error}") from None
    cube = read_manga_cube(args.cube)  # checks the layout first; errors name the file and HDU
    primary = fits.getheader(args.cube, 0)
    redshift = args.redshift
    if redshift is None:
        redshift = _header_redshift(primary)
        if redshift is None:
            raise CLIError(f"{args.cube}: no Z (or SCINPVEL) keyword in the primary header; give --redshift")
        _checks.check_redshift(redshift, name=f"{args.cube}: header redshift", z_max=None)
    on, off = lines_on_grid(cube.wavelength, redshift)
    low, high = cube.wavelength.min(), cube.wavelength.max()
    if not on:
        raise CLIError(
            f"--redshift {redshift:g}: every emission line falls outside the cube's wavelength range "
            f"{low:.0f}-{high:.0f} A"
        )
    if off:
        print(f"at z = {redshift:g} outside the cube's {low:.0f}-{high:.0f} A (not measured): {', '.join(off)}")
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
        continuum=args.continuum,
        dispersions=args.dispersions,
        continuum_refit=args.continuum_refit,
        templates=templates,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
        meta={"wcs_header": wcs_header, "spaxel_offset_arcsec": cube.spaxel_offset_arcsec},
    )
    args.out.mkdir(parents=True, exist_ok=True)
    header = primary.copy()  # the cube's primary header (PLATEIFU, OBJRA, ...), plus what was fitted
    header["Z"] = (redshift, "redshift the velocities are relative to")
    header["CUBE"] = (args.cube.name[:68], "input cube")
    header["DISPERS"] = (args.dispersions, "emission-line dispersions: tied, free or auto")
    header["CONTREFT"] = (args.continuum_refit if args.continuum == "template" else "off",
                          "template continuum refit: same, sasuke or off")  # fmt: skip
    if args.continuum == "template":
        header["CONTTPL"] = ("MILES-HC" if templates is None else Path(templates.name).name[:60],
                             "stellar template library")  # fmt: skip
    fits_path = maps.to_fits(args.out / OUTPUT_FILES[0], header=header)
    galaxy = str(primary.get("PLATEIFU", primary.get("OBJECT", args.cube.name)))
    if "OBJRA" in primary and "OBJDEC" in primary:
        galaxy += f" (RA {float(primary['OBJRA']):.4f}, Dec {float(primary['OBJDEC']):+.4f})"
    title = f"{galaxy}: emission-line maps at z = {redshift:.5f} ({args.continuum} continuum)"
    png_path = plot_line_maps(maps, args.out / OUTPUT_FILES[1], cube.spaxel_offset_arcsec, title)

    ha = panel_masks(maps, "Halpha")
    n_spaxel = maps.dn4000.size
    n_data = int(np.sum(~ha["no_value"]))
    n_detected = n_data - int(np.sum(ha["undetected"]))
    print(
        f"fitted {n_spaxel} spaxels at z = {redshift:.5f} ({n_data} with data); H-alpha detected "
        f"(S/N > {DETECTION_SNR:g}) in {n_detected} of {n_spaxel} spaxels, kinematics at the fit limit in "
        f"{int(np.sum(ha['at_limit']))} of them"
    )
    print(f"wrote {fits_path} and {png_path}")
    return 0
