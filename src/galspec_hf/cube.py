"""Predict an IFU-like cube for a Legacy Surveys cutout and write it as a MaNGA-like LOGCUBE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from astropy.io import fits

from .data.readers import read_legacy_cutout
from .data.writers import MANGA_DONOTUSE, write_logcube
from .models.galspec import GalSpecCubeOutput, GalSpecForMaskedSpectra, GalSpecProcessor


def predict_cube_for_cutout(
    model: GalSpecForMaskedSpectra,
    cutout_path: str | Path,
    redshift: float,
    spaxel_size: float = 0.5,
    bundle_diameter: float | None = None,
    fiber_diameter: float | None = None,
    progress: bool = True,
) -> tuple[GalSpecCubeOutput, object]:
    """Read a cutout, bring it to the standard orientation through its WCS, and predict its cube.

    Returns the cube output and the cutout (with its WCS and centre).
    """
    config = model.config
    cutout = read_legacy_cutout(cutout_path, bands=tuple(config.bands))
    processor = GalSpecProcessor.from_config(config)
    image = processor.orient_cutout(cutout)
    batch = processor([image], [redshift])
    output = model.predict_cube(
        batch["pixel_values"],
        batch["redshift"],
        spaxel_size=spaxel_size,
        bundle_diameter=bundle_diameter,
        fiber_diameter=fiber_diameter,
        progress=progress,
    )
    return output, cutout


def write_predicted_cube(
    path: str | Path, output: GalSpecCubeOutput, ra_deg: float, dec_deg: float, redshift: float, model_name: str = ""
) -> Path:
    """Write the first galaxy of a cube prediction as a LOGCUBE-like FITS (FLUX, IVAR = 1/sigma^2, MASK, WAVE).

    Spaxels outside the footprint have MASK = DONOTUSE (bit 10) and IVAR = 0. IVAR is the model's own
    uncertainty (sigma_model), the variance a new observation's noise would add to is not included.
    """
    mean = output.mean[0].float().cpu().numpy()  # (ny, nx, L)
    sigma = output.sigma[0].float().cpu().numpy()
    footprint = output.footprint.cpu().numpy()
    flux = np.moveaxis(mean, -1, 0)  # (L, ny, nx)
    variance = np.moveaxis(sigma, -1, 0).astype(np.float64) ** 2
    inside = np.broadcast_to(footprint[None], variance.shape) & (variance > 0)
    ivar = np.divide(1.0, variance, out=np.zeros_like(variance), where=inside)
    mask = np.where(footprint[None], 0, MANGA_DONOTUSE).astype(np.int32) * np.ones_like(flux, dtype=np.int32)
    header = fits.Header()
    header["OBJRA"] = (float(ra_deg), "[deg] galaxy (cutout centre) RA")
    header["OBJDEC"] = (float(dec_deg), "[deg] galaxy (cutout centre) Dec")
    header["Z"] = (float(redshift), "redshift given to the model")
    header["SPAXSIZE"] = (output.spaxel_size, "[arcsec] spaxel side")
    header["FIBERDIA"] = (output.fiber_diameter, "[arcsec] aperture of each spaxel spectrum")
    header["GSMODEL"] = (str(model_name)[:60], "galspec-hf model")
    header["COMMENT"] = "Predicted by galspec-hf from an image: IVAR is 1/sigma_model^2."
    return write_logcube(
        path,
        output.wavelength.double().cpu().numpy(),
        flux,
        ivar,
        mask,
        ra_deg=ra_deg,
        dec_deg=dec_deg,
        spaxel_arcsec=output.spaxel_size,
        primary_header=header,
    )


def predict_cube_file(
    model_path: str,
    cutout_path: str,
    redshift: float,
    out_path: str,
    spaxel_size: float = 0.5,
    bundle_diameter: float | None = None,
    fiber_diameter: float | None = None,
    overwrite: bool = False,
) -> Path:
    """``galspec predict-cube``: model folder + cutout FITS + redshift -> LOGCUBE-like FITS.

    Raises FileExistsError, before the model is loaded, when ``out_path`` exists and ``overwrite`` is False.
    """
    if Path(out_path).exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass overwrite=True to replace it")
    model = GalSpecForMaskedSpectra.from_pretrained(model_path).eval()
    with torch.no_grad():
        output, cutout = predict_cube_for_cutout(
            model, cutout_path, redshift, spaxel_size, bundle_diameter, fiber_diameter
        )
    centre = cutout.wcs.celestial.pixel_to_world((cutout.image.shape[-1] - 1) / 2, (cutout.image.shape[-2] - 1) / 2)
    return write_predicted_cube(out_path, output, centre.ra.deg, centre.dec.deg, redshift, model_name=model_path)
