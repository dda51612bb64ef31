"""Predicted IFU-like cubes: the spaxel grid and hexagonal footprint, :func:`predict_cube`, and MaNGA-like LOGCUBEs.

The model predicts the spectrum of a fiber anywhere on the image (:meth:`GalSpecForMaskedSpectra.predict_spectra`);
a cube asks it for one fiber per spaxel of a MaNGA-like grid (docs/ARCHITECTURE.md, data flow step 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits
from transformers.utils import ModelOutput

from .constants import DESI_FIBER_DIAMETER_ARCSEC
from .io.desi import DesiCoadd, fiber_spectrum, missing_fibermap_error, read_desi_coadd, target_row
from .io.legacy import read_legacy_cutout
from .io.manga import MANGA_DONOTUSE, write_manga_cube
from .models.galspec import GalSpecForMaskedSpectra, GalSpecProcessor
from .models.galspec.modeling_galspec import broadcast_fiber_diameter, check_observed_fiber, noise_variance
from .models.galspec.processing_galspec import resample_spectrum


@dataclass
class GalSpecCubeOutput(ModelOutput):
    """
    Output of :func:`predict_cube`: an IFU-like cube on a square spaxel grid.

    Args:
        wavelength (`torch.FloatTensor` of shape `(L,)`): wavelengths, Angstrom (vacuum, observed frame).
        mean (`torch.FloatTensor` of shape `(batch, ny, nx, L)`): predicted flux density; per spaxel
            (1e-17 erg/s/cm2/A/spaxel) when `per_spaxel`, else per fiber (1e-17 erg/s/cm2/A). Zero outside
            the footprint.
        sigma (`torch.FloatTensor` of shape `(batch, ny, nx, L)`): predicted sigma_model, same unit.
        spaxel_offset (`torch.FloatTensor` of shape `(ny, nx, 2)`): spaxel centres, arcsec east/north of the
            image centre. Row index runs north, column index runs west (east to the left), as in MaNGA cubes.
        footprint (`torch.BoolTensor` of shape `(ny, nx)`): True inside the hexagonal IFU footprint.
        spaxel_size (`float`): spaxel side, arcsec.
        fiber_diameter (`float`): diameter of the aperture each spaxel spectrum was read through, arcsec.
        conditioning (`str`): how the cube used an observed fiber: `"encoder"`, `"residual"` (see
            :data:`CUBE_CONDITIONING_MODES`), or `None` for a cube predicted from the image alone.
    """

    wavelength: torch.FloatTensor | None = None
    mean: torch.FloatTensor | None = None
    sigma: torch.FloatTensor | None = None
    spaxel_offset: torch.FloatTensor | None = None
    footprint: torch.BoolTensor | None = None
    spaxel_size: float | None = None
    fiber_diameter: float | None = None
    conditioning: str | None = None


#: How :func:`predict_cube` uses the galaxy's observed fiber spectrum:
#:
#: - ``"residual"`` (the default): the image-only cube plus the fiber's residual spectrum (observed - the model's
#:   image-only prediction at the fiber) spread over the spaxels in proportion to the image light under each, so
#:   the spectrum at the fiber's own position and aperture is the observed one and a spaxel where the image has no
#:   light keeps its image-only spectrum. A line flux fitted on such a cube is, to first order (the fitted flux is
#:   linear in the spectrum when the line's kinematics stay put), the experiment's ``residual`` map
#:   (:func:`galspec_hf.scoreboard.fiber_conditioned_maps`), the design chosen on the validation set
#:   (docs/RESULTS.md): within 3 % at the spaxels with a tenth of the fiber's light or more on a toy galaxy
#:   (tests/test_cube.py); the scores there are of the line-map version, not of cubes made here. The fiber's noise
#:   enters sigma, scaled the same way.
#: - ``"encoder"``: the encoder sees the observed spectrum as in masked training
#:   (:meth:`GalSpecForMaskedSpectra.predict_spectra`'s conditioning). On the synthetic validation set its
#:   H-alpha maps fail on about half the spaxels: the training never shows the encoder a whole observed spectrum.
CUBE_CONDITIONING_MODES = ("residual", "encoder")


def fiber_residual_weights(
    pixel_values: torch.Tensor,
    config,
    spaxel_offsets: torch.Tensor,
    spaxel_aperture_arcsec: float,
    fiber_offset: torch.Tensor,
    fiber_diameter_arcsec: torch.Tensor,
) -> torch.Tensor:
    """Image light under each spaxel's aperture over the light in the observed fiber: (batch, K).

    pixel_values (batch, bands, H, H) nanomaggies; spaxel_offsets (K, 2) and fiber_offset (batch, 2) arcsec
    east/north of the image centre; the light is the `normalization_band`'s, without the aperture-flux floor.
    Raises ValueError when the image has no light in the fiber (the residual could not be spread).
    """
    from .models.galspec.processing_galspec import aperture_light, normalization_band_image

    band = normalization_band_image(pixel_values, config)  # (batch, H, H)
    weights = []
    for b in range(band.shape[0]):
        spaxels = aperture_light(band[b], spaxel_offsets, spaxel_aperture_arcsec, config.pixel_scale)  # (K,)
        fiber = aperture_light(band[b], fiber_offset[b : b + 1], float(fiber_diameter_arcsec[b]), config.pixel_scale)
        if not float(fiber[0]) > 0:
            raise ValueError(
                f"observed_fiber_offset {fiber_offset[b].tolist()}: the image has no light in the fiber "
                f"({float(fiber[0]):g} nanomaggies), so its residual cannot be spread over the spaxels"
            )
        weights.append(spaxels / fiber[0])
    return torch.stack(weights).to(pixel_values.dtype if pixel_values.is_floating_point() else torch.float32)


def spaxel_grid(num_spaxels: int, spaxel_size: float) -> torch.Tensor:
    """Spaxel centres of a square cube, (ny, nx, 2) arcsec (east, north); rows run north, columns west."""
    index = (torch.arange(num_spaxels, dtype=torch.float32) - (num_spaxels - 1) / 2) * spaxel_size
    north, west = torch.meshgrid(index, index, indexing="ij")
    return torch.stack([-west, north], dim=-1)


def hexagon_footprint(offsets: torch.Tensor, diameter: float) -> torch.Tensor:
    """True inside a regular hexagon of corner-to-corner `diameter` (arcsec) centred on 0, corners east/west.

    MaNGA IFU bundles are hexagonal, 12.5" to 32.5" across (Drory et al. 2015, AJ 149, 77).
    """
    radius = diameter / 2  # centre-to-corner
    x, y = offsets[..., 0].abs(), offsets[..., 1].abs()
    apothem = radius * math.sqrt(3) / 2
    return (y <= apothem) & (math.sqrt(3) * x + y <= math.sqrt(3) * radius)


@torch.no_grad()
def predict_cube(
    model: GalSpecForMaskedSpectra,
    pixel_values: torch.Tensor,
    redshift: torch.Tensor,
    spaxel_size: float = 0.5,
    num_spaxels: int | None = None,
    bundle_diameter: float | None = None,
    fiber_diameter: float | None = None,
    per_spaxel: bool = True,
    wavelength: torch.Tensor | None = None,
    fiber_batch_size: int = 256,
    progress: bool = False,
    observed_spectrum: torch.Tensor | None = None,
    observed_ivar: torch.Tensor | None = None,
    observed_fiber_offset: torch.Tensor | None = None,
    observed_fiber_diameter: float | torch.Tensor | None = None,
    conditioning: str = "residual",
) -> GalSpecCubeOutput:
    r"""
    Predict an IFU-like cube: the spectrum at every spaxel of a MaNGA-like grid and footprint.

    Spaxel spectra come from `model`'s :meth:`~GalSpecForMaskedSpectra.predict_spectra` (each image encoded
    once), read through a circular aperture of `fiber_diameter` centred on the spaxel. With `per_spaxel=True`
    they are scaled by spaxel area / aperture area, giving flux per spaxel as in MaNGA LOGCUBEs. The cube's
    spatial resolution is that of the image and the aperture, not MaNGA's 2.5" reconstructed PSF.

    Args:
        model (:class:`GalSpecForMaskedSpectra`): the model.
        pixel_values (`torch.FloatTensor` of shape `(batch, bands, image_size, image_size)`): images, nanomaggies.
        redshift (`torch.FloatTensor` of shape `(batch,)`).
        spaxel_size (`float`, *optional*, defaults to 0.5): spaxel side, arcsec (MaNGA: 0.5).
        num_spaxels (`int`, *optional*): spaxels per side; defaults to the image's field of view.
        bundle_diameter (`float`, *optional*): corner-to-corner size (arcsec) of the hexagonal footprint;
            defaults to the field of view. Spaxels outside are not predicted (zero).
        fiber_diameter (`float`, *optional*, defaults to `config.fiber_diameter`): aperture, arcsec.
        per_spaxel (`bool`, *optional*, defaults to `True`): flux per spaxel rather than per aperture.
        wavelength, fiber_batch_size, progress: as in :meth:`GalSpecForMaskedSpectra.predict_spectra`.
        observed_spectrum, observed_ivar, observed_fiber_offset, observed_fiber_diameter: the galaxy's observed
            fiber spectrum (model grid) to condition on, as in :meth:`GalSpecForMaskedSpectra.predict_spectra`;
            without it the cube is predicted from the image alone.
        conditioning (`str`, *optional*, defaults to `"residual"`): how the observed fiber is used, one of
            :data:`CUBE_CONDITIONING_MODES`. `"residual"` adds the fiber's residual spectrum (observed -
            predicted at the fiber, zero at pixels with `observed_ivar` 0) times :func:`fiber_residual_weights` to
            the image-only cube, and its noise (weight^2 / observed_ivar) to sigma^2; it needs the model grid
            (`wavelength` None) and an image with light in the fiber.
    """
    config = model.config
    if conditioning not in CUBE_CONDITIONING_MODES:
        raise ValueError(f"`conditioning` must be one of {CUBE_CONDITIONING_MODES}, got {conditioning!r}")
    conditioned = observed_spectrum is not None
    if conditioned and conditioning == "residual" and wavelength is not None:
        raise ValueError("conditioning='residual' predicts on the model grid: `wavelength` must be None")
    if spaxel_size <= 0:
        raise ValueError(f"`spaxel_size` must be positive (arcsec), got {spaxel_size}")
    field_of_view = config.image_size * config.pixel_scale
    if num_spaxels is None:
        num_spaxels = int(field_of_view // spaxel_size)
    if not isinstance(num_spaxels, int) or num_spaxels < 1:
        raise ValueError(f"`num_spaxels` must be a positive integer, got {num_spaxels!r}")
    bundle_diameter = field_of_view if bundle_diameter is None else float(bundle_diameter)
    if bundle_diameter <= 0:
        raise ValueError(f"`bundle_diameter` must be positive (arcsec), got {bundle_diameter}")
    fiber_diameter = config.fiber_diameter if fiber_diameter is None else float(fiber_diameter)
    offsets = spaxel_grid(num_spaxels, spaxel_size)  # (ny, nx, 2)
    footprint = hexagon_footprint(offsets, bundle_diameter)
    inside = offsets[footprint]  # (K, 2)
    batch = pixel_values.shape[0]
    num_inside = inside.shape[0]
    device = pixel_values.device
    fiber_offsets = inside[None].expand(batch, -1, -1).to(device)  # (batch, K, 2)
    diameters: float | torch.Tensor = fiber_diameter
    observed = {}
    if conditioned and conditioning == "encoder":
        observed = {"observed_spectrum": observed_spectrum, "observed_ivar": observed_ivar,
                    "observed_fiber_offset": observed_fiber_offset, "observed_fiber_diameter": observed_fiber_diameter}
    elif conditioned:  # residual: the image-only prediction at the observed fiber too, from the same encoding
        observed_spectrum, observed_ivar, observed_offset, observed_diameter = check_observed_fiber(
            config, batch, device, observed_spectrum, observed_ivar, observed_fiber_offset, observed_fiber_diameter
        )
        if observed_offset is None:  # the image centre, as in predict_spectra
            observed_offset = torch.zeros(batch, 2, device=device)
        observed_offset = observed_offset[:, None]  # (batch, 1, 2)
        if observed_diameter is None:  # the config's diameter, as in predict_spectra
            observed_diameter = broadcast_fiber_diameter(None, batch, 1, config, device)  # (batch,)
        fiber_offsets = torch.cat([fiber_offsets, observed_offset.to(fiber_offsets)], dim=1)  # (batch, K + 1, 2)
        diameters = torch.cat([torch.full((batch, num_inside), float(fiber_diameter), device=device),
                               observed_diameter[:, None]], dim=1)  # (batch, K + 1)  # fmt: skip
    prediction = model.predict_spectra(
        pixel_values,
        redshift,
        fiber_offsets,
        wavelength=wavelength,
        fiber_diameter=diameters,
        fiber_batch_size=fiber_batch_size,
        progress=progress,
        **observed,
    )
    spaxel_mean, spaxel_sigma = prediction.mean[:, :num_inside], prediction.sigma[:, :num_inside]  # (batch, K, L)
    if conditioned and conditioning == "residual":
        residual, variance = fiber_residual(observed_spectrum, observed_ivar, prediction.mean[:, num_inside])
        weights = fiber_residual_weights(pixel_values, config, inside.to(device), fiber_diameter,
                                         observed_offset[:, 0], observed_diameter,
                                         ).to(spaxel_mean)[..., None]  # (batch, K, 1)  # fmt: skip
        spaxel_mean = spaxel_mean + weights * residual[:, None]
        spaxel_sigma = torch.sqrt(spaxel_sigma**2 + weights**2 * variance[:, None])
    scale = (spaxel_size**2) / (math.pi * fiber_diameter**2 / 4) if per_spaxel else 1.0
    length = prediction.wavelength.shape[0]
    mean = prediction.mean.new_zeros(batch, num_spaxels, num_spaxels, length)
    sigma = prediction.sigma.new_zeros(batch, num_spaxels, num_spaxels, length)
    mean[:, footprint.to(mean.device)] = spaxel_mean * scale
    sigma[:, footprint.to(mean.device)] = spaxel_sigma * scale
    return GalSpecCubeOutput(
        wavelength=prediction.wavelength,
        mean=mean,
        sigma=sigma,
        spaxel_offset=offsets,
        footprint=footprint,
        spaxel_size=float(spaxel_size),
        fiber_diameter=fiber_diameter,
        conditioning=conditioning if conditioned else None,
    )


def fiber_residual(observed_spectrum: torch.Tensor, observed_ivar: torch.Tensor, predicted: torch.Tensor):
    """The observed fiber's residual (observed - `predicted`, the image-only prediction at the fiber) and its noise
    variance (1 / ivar), both (batch, L) and zero at pixels with ivar 0. Raises ValueError for shapes other than
    `predicted`'s (the model grid)."""
    observed_spectrum = torch.as_tensor(observed_spectrum).to(predicted)
    observed_ivar = torch.as_tensor(observed_ivar).to(predicted)
    if observed_spectrum.shape != predicted.shape or observed_ivar.shape != predicted.shape:
        raise ValueError(
            f"`observed_spectrum` / `observed_ivar` must be (batch, L) = {tuple(predicted.shape)} on the model grid, "
            f"got {tuple(observed_spectrum.shape)} / {tuple(observed_ivar.shape)}"
        )
    residual = torch.where(observed_ivar > 0, observed_spectrum - predicted, 0.0)
    return residual, noise_variance(observed_ivar)


def observed_fiber_from_coadd(coadd: str | Path | DesiCoadd, targetid: int, cutout, config) -> dict:
    """The observed fiber of TARGETID in a DESI coadd, ready for :func:`predict_cube`'s conditioning keywords.

    `coadd` is the coadd file, or the coadd already read from it
    (:func:`~galspec_hf.io.desi.read_desi_coadd`, with its FIBERMAP), which is then not read again.

    The flux is the flux that entered the fiber (:func:`galspec_hf.io.desi.fiber_spectrum`: DESI's point-source
    calibrated flux x MEAN_PSF_TO_FIBER_SPECFLUX), masked pixels get ivar 0, and the spectrum is rebinned onto the
    model grid when that is not DESI's; the fiber's position (FIBERMAP MEAN_FIBER_RA/DEC) is taken to arcsec
    east/north of the cutout centre through the cutout's WCS. Returns {"observed_spectrum", "observed_ivar" (1, L),
    "observed_fiber_offset" (1, 2), "observed_fiber_diameter"}. Raises GalSpecFormatError (file, column) for a
    TARGETID that is not in the file (:func:`~galspec_hf.io.desi.target_row`), a coadd read without its FIBERMAP
    or a spectrum without a usable fiber factor.
    """
    if not isinstance(coadd, DesiCoadd):
        coadd = read_desi_coadd(coadd, require_fibermap=True)
    elif coadd.fibermap is None:
        raise missing_fibermap_error(coadd.path, "; the coadd given was read without it")
    index = target_row(coadd, targetid)
    flux, ivar, _ = fiber_spectrum(coadd, index)
    ivar = np.where(coadd.mask[index] == 0, ivar, 0.0)
    grid = config.wavelength_grid()
    if len(grid) != len(coadd.wavelength) or not np.allclose(grid, coadd.wavelength):
        flux, ivar = resample_spectrum(coadd.wavelength, flux[None], ivar[None], grid)
        flux, ivar = flux[0], ivar[0]
    offset = cutout.sky_to_offset_arcsec(coadd.fiber_ra[index], coadd.fiber_dec[index])
    return {
        "observed_spectrum": torch.as_tensor(np.asarray(flux, np.float32))[None],
        "observed_ivar": torch.as_tensor(np.asarray(ivar, np.float32))[None],
        "observed_fiber_offset": torch.as_tensor(np.asarray(offset, np.float32).reshape(1, 2)),
        "observed_fiber_diameter": DESI_FIBER_DIAMETER_ARCSEC,
    }


def predict_cube_for_cutout(
    model: GalSpecForMaskedSpectra,
    cutout_path: str | Path,
    redshift: float,
    spaxel_size: float = 0.5,
    bundle_diameter: float | None = None,
    fiber_diameter: float | None = None,
    progress: bool = True,
    coadd: str | Path | DesiCoadd | None = None,
    targetid: int | None = None,
    conditioning: str = "residual",
) -> tuple[GalSpecCubeOutput, object]:
    """Read a cutout, bring it to the standard orientation through its WCS, and predict its cube.

    With `coadd` (a DESI coadd file, or the :class:`~galspec_hf.io.desi.DesiCoadd` already read from it)
    and `targetid`, the cube is conditioned on that galaxy's observed fiber (:func:`observed_fiber_from_coadd`, the
    way `conditioning` says: :data:`CUBE_CONDITIONING_MODES`); without them, on the image alone. Returns the cube
    output and the cutout (with its WCS and centre).
    """
    config = model.config
    cutout = read_legacy_cutout(cutout_path, bands=tuple(config.bands))
    processor = GalSpecProcessor.from_config(config)
    image = processor.orient_cutout(cutout)
    batch = processor([image], [redshift])
    if (coadd is None) != (targetid is None):
        raise ValueError("`coadd` and `targetid` go together: give both or neither")
    observed = observed_fiber_from_coadd(coadd, targetid, cutout, config) if coadd is not None else {}
    output = predict_cube(
        model,
        batch["pixel_values"],
        batch["redshift"],
        spaxel_size=spaxel_size,
        bundle_diameter=bundle_diameter,
        fiber_diameter=fiber_diameter,
        progress=progress,
        conditioning=conditioning,
        **observed,
    )
    return output, cutout


def write_predicted_cube(
    path: str | Path,
    output: GalSpecCubeOutput,
    ra_deg: float,
    dec_deg: float,
    redshift: float,
    model_name: str = "",
    conditioned_on: str = "",
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
    header["GSCOND"] = (bool(conditioned_on), "conditioned on an observed fiber spectrum")
    if conditioned_on:
        header["GSCONDM"] = (str(output.conditioning), "conditioning: residual or encoder")
        noise = " plus the fiber's noise spread with its residual" if output.conditioning == "residual" else ""
        header["COMMENT"] = (
            f"Predicted by galspec-hf from an image and {conditioned_on} ({output.conditioning} conditioning): "
            f"IVAR is 1/sigma^2, sigma the model's own{noise}."
        )
    else:
        header["COMMENT"] = "Predicted by galspec-hf from an image: IVAR is 1/sigma_model^2."
    return write_manga_cube(
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
    coadd: str | Path | DesiCoadd | None = None,
    targetid: int | None = None,
    conditioning: str = "residual",
) -> Path:
    """``galspec predict-cube``: model folder + cutout FITS + redshift (+ the galaxy's DESI coadd and TARGETID, to
    condition on its observed fiber, the way `conditioning` says: :data:`CUBE_CONDITIONING_MODES`) -> LOGCUBE-like
    FITS.

    ``coadd`` may also be the :class:`~galspec_hf.io.desi.DesiCoadd` already read from the coadd file
    (as ``galspec predict-cube`` passes it after its input check), which is then not read again.

    Raises FileExistsError, before the model is loaded, when ``out_path`` exists and ``overwrite`` is False.
    """
    if Path(out_path).exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass overwrite=True to replace it")
    model = GalSpecForMaskedSpectra.from_pretrained(model_path).eval()
    with torch.no_grad():
        output, cutout = predict_cube_for_cutout(
            model, cutout_path, redshift, spaxel_size, bundle_diameter, fiber_diameter,
            coadd=coadd, targetid=targetid, conditioning=conditioning,
        )  # fmt: skip
    centre = cutout.wcs.celestial.pixel_to_world((cutout.image.shape[-1] - 1) / 2, (cutout.image.shape[-2] - 1) / 2)
    conditioned = ""
    if coadd is not None:
        coadd_file = coadd.path if isinstance(coadd, DesiCoadd) else coadd
        conditioned = f"the observed fiber of TARGETID {targetid} in {Path(coadd_file).name}"
    return write_predicted_cube(out_path, output, centre.ra.deg, centre.dec.deg, redshift, model_name=model_path,
                                conditioned_on=conditioned)  # fmt: skip
