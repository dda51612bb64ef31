"""Input checks shared by the ``galspec`` subcommands, run before any heavy work.

Each check raises :class:`~galspec_hf.errors.CLIError` with one line naming the argument or file and what
was expected; the command line prints it and exits with code 2. (The leading underscore keeps this module
out of the subcommand discovery of :mod:`galspec_hf.cli`.)
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import CLIError, GalSpecFormatError

#: Redshift range a model is asked to predict at, when its configuration does not say: the range redrock scans
#: with its GALAXY templates for DESI (z from -0.005 to 1.7; desihub/redrock, ``py/redrock/templates.py``,
#: ``10**np.arange(np.log10(1 - 0.005), np.log10(1 + 1.7), 3e-4) - 1``), negative redshifts excluded.
DESI_GALAXY_Z_MIN = 0.0
DESI_GALAXY_Z_MAX = 1.7


def check_redshift(value: float, name: str = "--redshift", z_max: float | None = DESI_GALAXY_Z_MAX) -> float:
    """``value`` if finite, >= 0 and (when ``z_max`` is given) <= ``z_max``; else a CLIError naming ``name``."""
    if not math.isfinite(value):
        raise CLIError(f"{name} must be a finite number, got {value}")
    if value < DESI_GALAXY_Z_MIN:
        raise CLIError(f"{name} must be >= {DESI_GALAXY_Z_MIN:g} (a galaxy redshift), got {value}")
    if z_max is not None and value > z_max:
        raise CLIError(
            f"{name} {value} is outside the model's redshift range {DESI_GALAXY_Z_MIN:g}-{z_max:g} "
            "(DESI's galaxy range)"
        )
    return value


def check_positive(value: float | None, name: str) -> None:
    """A CLIError unless ``value`` is None or a finite number > 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise CLIError(f"{name} must be a positive number, got {value}")


def check_output_file(path: str | Path, overwrite: bool, name: str = "--out") -> Path:
    """An output file path whose folder exists, and which does not exist yet unless ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{name} {path} is a folder; expected a file name (e.g. {path / 'cube.fits'})")
    if not path.parent.is_dir():
        raise CLIError(f"{name} {path}: folder {path.parent} does not exist (create it first)")
    if path.exists() and not overwrite:
        raise CLIError(f"{name} {path} exists; use --overwrite to replace it")
    return path


def check_output_folder(path: str | Path, files: tuple[str, ...], overwrite: bool, name: str = "--out") -> Path:
    """An output folder (created later) that holds none of ``files`` yet unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{name} {path} exists and is not a folder")
    existing = [f for f in files if (path / f).exists()]
    if existing and not overwrite:
        raise CLIError(f"{name} {path} already holds {', '.join(existing)}; use --overwrite to replace")
    return path


def read_model_config(model_dir: str | Path, name: str = "--model"):
    """The :class:`GalSpecConfig` of a ``save_pretrained`` folder, read without loading the weights."""
    from ..models.galspec import GalSpecConfig  # noqa: PLC0415

    if not (Path(model_dir) / "config.json").is_file():
        raise CLIError(f"{name} {model_dir}: no config.json there (expected a folder written by save_pretrained)")
    return GalSpecConfig.from_pretrained(model_dir)


def check_cutout(path: str | Path, config, name: str = "--image"):
    """Read a Legacy Surveys cutout and check that the model can use it; return the cutout.

    Checks: a readable FITS image with the model's bands (:func:`~galspec_hf.data.read_legacy_cutout`, whose
    :class:`~galspec_hf.errors.GalSpecFormatError` names the file and HDU), the model's pixel scale
    within 1 % (images are not resampled) and at least ``config.image_size`` pixels on a side.
    """
    from ..io.legacy import read_legacy_cutout  # noqa: PLC0415

    if not Path(path).is_file():
        raise CLIError(f"{name} {path}: file not found")
    try:
        cutout = read_legacy_cutout(path, bands=tuple(config.bands))
    except GalSpecFormatError as error:
        raise CLIError(f"{name} {error}") from None
    if abs(cutout.pixel_scale_arcsec - config.pixel_scale) > 0.01 * config.pixel_scale:
        raise CLIError(
            f"{name} {path}: pixel scale {cutout.pixel_scale_arcsec:.4f} arcsec differs from the model's "
            f"{config.pixel_scale} arcsec (images are not resampled)"
        )
    height, width = cutout.image.shape[-2:]
    if min(height, width) < config.image_size:
        raise CLIError(
            f"{name} {path}: {height}x{width} pixels, smaller than the model's {config.image_size}x{config.image_size}"
        )
    return cutout


def check_observed_fiber(path: str | Path, targetid: int, name: str = "--spectrum"):
    """A DESI coadd that holds `targetid` with a usable point-source-to-fiber factor (one line per problem).

    Returns the coadd it read (:class:`~galspec_hf.io.desi.DesiCoadd`, read with its FIBERMAP), so that the
    command can hand it on to :func:`~galspec_hf.cube.predict_cube_file` instead of reading the file again.
    """
    from ..io.desi import fiber_spectrum, read_desi_coadd, target_row  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise CLIError(f"{name} {path}: file not found")
    try:
        coadd = read_desi_coadd(path, require_fibermap=True)
    except (GalSpecFormatError, OSError) as error:
        raise CLIError(f"{name} {error}") from None
    try:
        row = target_row(coadd, targetid, path)
    except GalSpecFormatError:
        raise CLIError(
            f"--targetid {targetid}: not in {path} (HDU FIBERMAP has {len(coadd.targetid)} targets)"
        ) from None
    try:
        fiber_spectrum(coadd, row)
    except GalSpecFormatError as error:
        raise CLIError(f"{name} {error}") from None
    return coadd


def describe_crop(cutout_shape: tuple[int, int], config) -> str:
    """One line: the cutout's size and the central crop the model sees, in pixels and arcsec."""
    height, width = cutout_shape
    scale, size = config.pixel_scale, config.image_size
    return (
        f'cutout {height}x{width} pixels ({height * scale:.1f}" x {width * scale:.1f}" at {scale}"/pixel); '
        f'the model sees the central {size}x{size} pixels ({size * scale:.1f}" x {size * scale:.1f}")'
    )
