"""The whole synthetic survey: galaxies -> Legacy cutouts, DESI coadd + redrock files, MaNGA truth, truth table.

Layout written under ``out_dir`` (mirrors the real archives)::

    desi/coadd-<petal>-<tileid>-thru20250101.fits     many targets per file
    desi/redrock-<petal>-<tileid>-thru20250101.fits
    legacysurvey/cutout-<TARGETID>.fits
    manga/manga-<plateifu>-LOGCUBE.fits.gz            IFU subset
    manga/manga-<plateifu>-MAPS.fits.gz
    truth.parquet                                     one row per galaxy, every true parameter; its schema
                                                      metadata holds the survey's settings (galspec:*)

Every galaxy draws its randomness from ``numpy.random.default_rng([seed, index])`` (its imaging depth from
``[seed, index, DEPTH_STREAM]``, its cube from ``[seed, index, 7]``), so the survey is deterministic for a seed and
galaxy ``i`` is the same whatever ``n_galaxies`` is.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import constants as C
from .galaxy import (
    LINE_NAMES,
    Galaxy,
    check_offcentre_fraction,
    offcentre_draw_probability,
    render_maps,
    sample_galaxy_and_lines,
)
from .imaging import (
    add_image_noise,
    background_pixel_noise_nmgy,
    band_weights,
    draw_image_exposures,
    pixel_grid,
    render_image,
    write_cutout,
)
from .spectra import fiber_model, fiber_weights, fibermap_values, observe, write_coadd, write_redrock
from .templates import TemplateSet, load_templates

#: First TARGETID of a synthetic survey (DESI TARGETIDs are 64-bit; real BGS ones are ~3.96e16).
TARGETID_BASE = 39_690_000_000_000_000
#: Third element of the random stream that draws a galaxy's imaging depth (exposures per band).
DEPTH_STREAM = 11
#: Model pixels per Legacy pixel (profiles are themselves averaged over 3 x 3 sub-pixels), and Legacy pixels of
#: margin around the cutout for the PSF wings.
IMAGE_OVERSAMPLE = 1
IMAGE_MARGIN_PIX = 16
#: Legacy Surveys FIBERFLUX: flux in a 1.5 arcsec diameter fiber in 1 arcsec FWHM Gaussian seeing (DR9 catalogue
#: description, https://www.legacysurvey.org/dr9/catalogs/; constants.LEGACY_FIBERFLUX_SEEING_FWHM_ARCSEC).
LEGACY_FIBERFLUX_SEEING_ARCSEC = C.LEGACY_FIBERFLUX_SEEING_FWHM_ARCSEC
#: Minimum disk effective radius for a galaxy to be preferred for the IFU subset, arcsec.
IFU_MIN_RE_ARCSEC = 1.0
#: Default Legacy cutout side of a simulated survey, pixels: the ``small`` preset's 96-pixel image (+-12.6", which
#: covers the largest simulated cube, 48 spaxels of 0.5") plus training's 4-pixel random shift on each side.
DEFAULT_CUTOUT_SIZE = 104


@dataclass
class SimulatedGalaxy:
    """Everything simulated for one galaxy (before writing)."""

    galaxy: Galaxy
    image: np.ndarray  # (3, H, W) float32 nanomaggies with noise
    observed: dict  # arm -> (flux, ivar)
    fiber: dict  # output of spectra.fiber_model (noiseless truth)
    photometry: dict
    truth: dict


def targetid_for(seed: int, index: int) -> int:
    """Deterministic, unique-per-(seed, index) TARGETID."""
    return TARGETID_BASE + (seed % 100_000) * 10_000_000 + index


def simulate_galaxy(
    index: int,
    seed: int,
    templates: TemplateSet,
    cutout_size: int = 64,
    offcentre: bool | None = None,
    offcentre_fraction: float | None = None,
) -> SimulatedGalaxy:
    """Simulate galaxy ``index`` of survey ``seed``: image, fiber spectrum, photometry and truth.

    Parameters
    ----------
    index : galaxy number in the survey (>= 0). seed : survey seed.
    templates : stellar populations. cutout_size : Legacy cutout side in pixels (even).
    offcentre : force or forbid an off-centre target (None: drawn).
    offcentre_fraction : fraction of all targets drawn off-centre, in [0, 1] (None: the documented default,
        constants.SIMULATED_OFFCENTRE_FRACTION; see galaxy.offcentre_draw_probability).
    """
    if cutout_size <= 0 or cutout_size % 2:
        raise ValueError(f"cutout_size must be a positive even number, got {cutout_size}")
    rng = np.random.default_rng([seed, index])
    galaxy, total_lines = sample_galaxy_and_lines(
        rng, templates, targetid_for(seed, index), offcentre=offcentre, offcentre_fraction=offcentre_fraction
    )
    fine = C.LEGACY_PIXEL_SCALE_ARCSEC / IMAGE_OVERSAMPLE
    size_fine = (cutout_size + 2 * IMAGE_MARGIN_PIX) * IMAGE_OVERSAMPLE
    east, north = pixel_grid(size_fine, fine)
    maps = render_maps(galaxy, east, north, fine, subsample=3)
    weights = band_weights(galaxy, templates)
    lines = maps["lines_sf"] + maps["lines_agn"]
    clean = render_image(
        galaxy, templates, maps, fine, IMAGE_OVERSAMPLE, IMAGE_MARGIN_PIX * IMAGE_OVERSAMPLE, weights, lines
    )
    # imaging depth from its own stream, so the rest of the galaxy's draws do not depend on it
    exposures = draw_image_exposures(np.random.default_rng([seed, index, DEPTH_STREAM]))
    for band, n in exposures.items():
        setattr(galaxy, f"image_exposures_{band}", n)
    image, image_ivar = add_image_noise(clean, rng, exposures)
    fiber = fiber_model(galaxy, templates, maps, east, north)
    observed = observe(fiber["flux"], galaxy.exptime_s, rng)

    total = {band: float(weights[band][0] + weights[band][1] + weights[band][2:] @ total_lines) for band in weights}
    k_legacy = fiber_weights(east, north, 0.0, 0.0, LEGACY_FIBERFLUX_SEEING_ARCSEC, profile="gaussian")
    fiber_parts = np.array(
        [float((maps["bulge"] * k_legacy).sum()), float((maps["disk"] * k_legacy).sum())]
        + [float((line * k_legacy).sum()) for line in lines]
    )
    fiberflux = {band: float(weights[band] @ fiber_parts) for band in C.LEGACY_BANDS}
    # catalogue flux errors: background noise over a ~2 x (seeing FWHM) aperture (Legacy-like, approximate)
    flux_ivar = {}
    for band in C.LEGACY_BANDS:
        n_pix = math.pi * (getattr(galaxy, f"psf_fwhm_{band}_arcsec") / C.LEGACY_PIXEL_SCALE_ARCSEC) ** 2
        n_pix += math.pi * (2 * galaxy.disk_re_arcsec / C.LEGACY_PIXEL_SCALE_ARCSEC) ** 2
        flux_ivar[band] = 1.0 / (background_pixel_noise_nmgy(band, exposures[band]) ** 2 * n_pix)
    photometry = {"flux": total, "fiberflux": fiberflux, "flux_ivar": flux_ivar}

    truth = galaxy.to_dict()
    for band in C.LEGACY_BANDS:
        truth[f"mag_{band}"] = C.NANOMAGGY_AB_ZEROPOINT - 2.5 * math.log10(max(total[band], 1e-9))
        truth[f"flux_{band}_nmgy"] = total[band]
        truth[f"fiberflux_{band}_nmgy"] = fiberflux[band]
    for i, name in enumerate(LINE_NAMES):
        truth[f"line_flux_total_{name}"] = float(total_lines[i])
        truth[f"line_flux_fiber_{name}"] = float(fiber["line_flux"][i])
    truth["fiber_bulge_light_fraction"] = fiber["bulge_fraction"]
    truth["fiber_disk_light_fraction"] = fiber["disk_fraction"]
    truth["fiber_velocity_gas_kms"] = fiber["velocity_gas_kms"]
    truth["fiber_velocity_stars_kms"] = fiber["velocity_stars_kms"]
    truth["fiber_offset_east_arcsec"] = galaxy.fiber_east_arcsec - galaxy.centre_east_arcsec
    truth["fiber_offset_north_arcsec"] = galaxy.fiber_north_arcsec - galaxy.centre_north_arcsec
    truth["templates"] = templates.source
    del image_ivar
    return SimulatedGalaxy(galaxy, image, observed, fiber, photometry, truth)


def simulate_survey(
    out_dir: str | Path,
    n_galaxies: int,
    n_ifu: int = 0,
    seed: int = 0,
    templates: str | Path | None = None,
    targets_per_file: int = 500,
    cutout_size: int = DEFAULT_CUTOUT_SIZE,
    ifu_spaxels: int | None = None,
    progress: bool = True,
    offcentre_fraction: float | None = None,
) -> dict:
    """Simulate and write a whole survey (see the module docstring for the layout).

    Parameters
    ----------
    out_dir : output folder (created). n_galaxies : number of DESI targets (>= 1).
    n_ifu : how many of them also get MaNGA-format truth (<= n_galaxies).
    seed : survey seed. templates : None / "kcorrect" / SSP FITS path (see templates.load_templates).
    targets_per_file : targets per coadd/redrock file. cutout_size : Legacy cutout side, pixels (default
        :data:`DEFAULT_CUTOUT_SIZE`, enough for the ``small`` preset's image with training's shift margin).
    ifu_spaxels : cube side in spaxels (default: from the galaxy size, 24-48).
    progress : show a tqdm progress bar.
    offcentre_fraction : fraction of all targets that are off-centre pieces of large galaxies, in [0, 1] (None:
        constants.SIMULATED_OFFCENTRE_FRACTION). Only galaxies with disk R_e above
        constants.SIMULATED_OFFCENTRE_MIN_RE_ARCSEC can be pieces, so the realised fraction stops at
        constants.SIMULATED_OFFCENTRE_ELIGIBLE_FRACTION (a warning says so); see galaxy.offcentre_draw_probability.
        The value is written to truth.parquet's schema metadata (``galspec:offcentre_fraction``); the per-target
        truth is the column ``offcentre_target``.

    Returns
    -------
    dict with the written paths: 'coadd', 'redrock', 'cutouts', 'logcubes', 'maps' (lists) and 'truth'.
    """
    if n_galaxies < 1:
        raise ValueError(f"n_galaxies must be >= 1, got {n_galaxies}")
    if not 0 <= n_ifu <= n_galaxies:
        raise ValueError(f"n_ifu must be between 0 and n_galaxies ({n_galaxies}), got {n_ifu}")
    if targets_per_file < 1:
        raise ValueError(f"targets_per_file must be >= 1, got {targets_per_file}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    offcentre_fraction = check_offcentre_fraction(offcentre_fraction)
    if offcentre_fraction > C.SIMULATED_OFFCENTRE_ELIGIBLE_FRACTION:
        warnings.warn(
            f"offcentre_fraction {offcentre_fraction} is above the share of galaxies large enough to be pieces "
            f"(~{C.SIMULATED_OFFCENTRE_ELIGIBLE_FRACTION}); every one of those will be off-centre instead",
            stacklevel=2,
        )
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    from .ifu import simulate_cube, write_logcube, write_maps  # noqa: PLC0415

    template_set = load_templates(None if templates is None else str(templates))
    out_dir = Path(out_dir)
    for sub in ("desi", "legacysurvey", "manga"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    written = {"coadd": [], "redrock": [], "cutouts": [], "logcubes": [], "maps": []}
    rows = []
    batch: list[SimulatedGalaxy] = []
    n_ifu_done = 0

    def flush(batch_index: int) -> None:
        tileid = 90_000 + (seed % 1000) * 100 + batch_index
        stem = f"{batch_index % 10}-{tileid}-thru20250101.fits"
        galaxies = [s.galaxy for s in batch]
        photometry = [s.photometry for s in batch]
        observed = [s.observed for s in batch]
        fibermap = fibermap_values(galaxies, photometry, tileid)
        coadd = write_coadd(out_dir / "desi" / f"coadd-{stem}", galaxies, photometry, observed, tileid, fibermap)
        rr_rng = np.random.default_rng([seed, 1_000_000_000 + batch_index])
        redrock = write_redrock(
            out_dir / "desi" / f"redrock-{stem}", galaxies, photometry, observed, tileid, rr_rng, fibermap
        )
        written["coadd"].append(coadd)
        written["redrock"].append(redrock)
        for s in batch:
            s.truth["coadd_file"] = f"desi/{coadd.name}"
        batch.clear()

    iterator = tqdm(range(n_galaxies), desc="galspec simulate", unit="gal", disable=not progress)
    for index in iterator:
        sim = simulate_galaxy(index, seed, template_set, cutout_size, offcentre_fraction=offcentre_fraction)
        galaxy = sim.galaxy
        cutout = write_cutout(
            out_dir / "legacysurvey" / f"cutout-{galaxy.targetid}.fits",
            sim.image,
            galaxy.target_ra_deg,
            galaxy.target_dec_deg,
        )
        written["cutouts"].append(cutout)
        sim.truth["cutout_file"] = f"legacysurvey/{cutout.name}"
        remaining = n_galaxies - index
        wants_ifu = n_ifu_done < n_ifu and (
            galaxy.disk_re_arcsec >= IFU_MIN_RE_ARCSEC or remaining <= n_ifu - n_ifu_done
        )
        sim.truth["plateifu"] = ""
        if wants_ifu:
            plateifu = f"{8000 + seed % 1000}-{12701 + n_ifu_done}"
            size = ifu_spaxels or int(
                np.clip(2 * math.ceil(2.0 * galaxy.disk_re_arcsec / C.MANGA_SPAXEL_ARCSEC), 24, 48)
            )
            cube = simulate_cube(galaxy, template_set, size, np.random.default_rng([seed, index, 7]))
            written["logcubes"].append(
                write_logcube(out_dir / "manga" / f"manga-{plateifu}-LOGCUBE.fits.gz", galaxy, cube, plateifu)
            )
            written["maps"].append(
                write_maps(out_dir / "manga" / f"manga-{plateifu}-MAPS.fits.gz", galaxy, cube, plateifu)
            )
            sim.truth["plateifu"] = plateifu
            n_ifu_done += 1
        rows.append(sim.truth)
        batch.append(sim)
        if len(batch) == targets_per_file:
            flush(len(written["coadd"]))
    if batch:
        flush(len(written["coadd"]))
    table = pa.Table.from_pylist(rows)
    settings = {
        "galspec:seed": str(seed),
        "galspec:offcentre_fraction": repr(offcentre_fraction),
        "galspec:offcentre_draw_probability_eligible": repr(offcentre_draw_probability(offcentre_fraction)),
        "galspec:offcentre_min_re_arcsec": repr(C.SIMULATED_OFFCENTRE_MIN_RE_ARCSEC),
        "galspec:image_pass_coverage": repr(C.DECAM_PASS_COVERAGE_PROBABILITY),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **settings})
    truth_path = out_dir / "truth.parquet"
    pq.write_table(table, truth_path)
    written["truth"] = truth_path
    return written
