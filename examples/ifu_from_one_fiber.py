"""IFU spectroscopy with one fiber, end to end, on the synthetic universe, scored like for like.

1. Simulate a survey: one DESI-like fiber per galaxy (coadd + redrock + Legacy cutout), and MaNGA-format
   IFU truth (LOGCUBE + MAPS) for some galaxies (the simulator gives cubes to galaxies above its size floor).
   The IFU galaxies are shuffled with the seed and split (:func:`galspec_hf.scoreboard.draw_evaluation_sets`)
   into *training cubes* for the supervised baseline, a *validation* set (to choose designs) and a *test*
   set (the final table only), both with star-forming and quiescent galaxies. Validation and test galaxies
   never enter any training set (:func:`galspec_hf.scoreboard.exclude_targets`).
2. Build the one-fiber data set with the DESI loader (``galspec build-dataset``'s code).
3. Pretrain the one-fiber model (``examples/pretrain.py``'s training function) on those fibers.
4. Train the supervised baseline, the same architecture, directly on the training cubes: every spaxel
   spectrum with its sky position is a training row.
5. For each evaluated galaxy, four H-alpha / [NII] 6585 / H-beta / [OIII] 5008 maps on its truth cube's grid:
   ``image_only`` (the one-fiber model, image in), ``supervised``, ``null_light`` (the training survey's median
   line-to-light ratio, fitted on the fibers' own spectra over the image light in each fiber, times the image
   light under each spaxel) and ``null_fiber`` (the galaxy's own DESI fiber's ratio times that light). The
   model cubes are fitted without the model's sigma as weights (the sigma-weighted fits are scored too, in
   ``sigma_weighted_fits``). Image-resolution maps (image_only, nulls) are smoothed to MaNGA's 2.5" PSF with
   NaN-aware normalised smoothing. Every model is scored on the same spaxels (truth S/N > 3, in the cube
   footprint, inside the model image): a non-positive or failed fit there is a failure (``*_failed_fraction``);
   r, scatter and bias over the spaxels where all four maps are positive (``*_num_spaxels``, identical across
   models); per class and per-galaxy medians.
6. Calibration: line-flux z = (predicted - truth) / predicted sigma on the common spaxels (``coverage_1sigma``
   and ``coverage_2sigma``: H-alpha; ``<line>_coverage_*`` per line); and pixel coverage of the spectra, both
   models on the same data (the evaluated truth cubes' selected spaxels, on the model grid).

Writes DIR/metrics.json (``validation`` and ``test``, each ``{"models": {image_only, supervised, null_light,
null_fiber}, ...}``; strict JSON, NaN written as null), DIR/maps_<line>.png (truth | image only | supervised |
null light | null fiber | residual, test set), DIR/calibration.png and DIR/summary.txt.

    python examples/ifu_from_one_fiber.py --output_dir runs/ifu --quick     # ~5 minutes on 2 CPU cores
    python examples/ifu_from_one_fiber.py --output_dir runs/ifu             # the default setting
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from pretrain import build_parser as build_pretrain_parser  # noqa: E402

from galspec_hf import GalSpecForMaskedSpectra  # noqa: E402
from galspec_hf.analysis.lines import fit_emission_lines  # noqa: E402
from galspec_hf.constants import (  # noqa: E402
    DAP_CHANNEL_NAMES,
    FWHM_PER_SIGMA,
    MANGA_PSF_FWHM_ARCSEC,
    MANGA_SPAXEL_ARCSEC,
    SPEED_OF_LIGHT_KMS,
)
from galspec_hf.data.build import build_desi_dataset  # noqa: E402
from galspec_hf.data.readers import read_legacy_cutout, read_manga_cube, read_manga_maps  # noqa: E402
from galspec_hf.metrics import coverage_curve  # noqa: E402
from galspec_hf.models.galspec.processing_galspec import resample_spectrum  # noqa: E402
from galspec_hf.plotting import north_east_arrows  # noqa: E402
from galspec_hf.scoreboard import (  # noqa: E402
    LINE_PREFIXES,
    cube_footprint,
    draw_evaluation_sets,
    exclude_targets,
    fit_fiber_line_fluxes,
    flatten_line_scores,
    image_light,
    inside_image,
    line_to_light_ratio,
    null_line_map,
    per_spaxel_scale,
    score_line,
    smooth_nan_aware,
    spaxel_selection,
    write_metrics_json,
)
from galspec_hf.simulate import simulate_survey  # noqa: E402
from galspec_hf.simulate.survey import IFU_MIN_RE_ARCSEC  # noqa: E402

# The lines compared: our fit's names -> the DAP MAPS channel names of the truth files.
LINES = {name: DAP_CHANNEL_NAMES[name] for name in ("Halpha", "NII_6585", "Hbeta", "OIII_5008")}
# Equal-area diameter of a 0.5" spaxel, arcsec: the "fiber" of the supervised baseline's training rows.
SPAXEL_EQUIVALENT_DIAMETER = 2 * MANGA_SPAXEL_ARCSEC / math.sqrt(math.pi)
# DESI spectral resolution FWHM ~1.8 A (R = 2000-5500 over 3600-9800 A; DESI Collaboration 2022, AJ 164, 207).
DESI_RESOLUTION_FWHM_A = 1.8
# Equivalent Gaussian FWHM of a top-hat aperture of diameter D: sigma = D / 4 (second moment of a disk).
TOPHAT_FWHM_PER_DIAMETER = FWHM_PER_SIGMA / 4

# fiber_continuum: the line fit's continuum on the fibers (the nulls' line-to-light ratios). "local" because the
# simulated spectra are built from kcorrect templates sampled at R ~ 1000, on which the MILES-HC template fit is
# biased (H-alpha and H-beta pulls of +3 to +5, docs/LINES.md); the predicted cubes are fitted in the same mode.
SETTINGS = {
    "quick": {
        "n_galaxies": 300, "n_train_cubes": 4, "n_validation": 2, "n_test": 2, "preset": "tiny",
        "cutout_size": 40, "steps": 300, "baseline_steps": 300, "batch_size": 16, "learning_rate": 2e-3,
        "n_null_fibers": 300, "fiber_continuum": "local", "note": "quick setting: a smoke test, not a result",
    },
    "default": {
        "n_galaxies": 4000, "n_train_cubes": 24, "n_validation": 8, "n_test": 12, "preset": "small",
        "cutout_size": 72, "steps": 1800, "baseline_steps": 1000, "batch_size": 16, "learning_rate": 5e-4,
        "n_null_fibers": 1000, "fiber_continuum": "local",
    },
}  # fmt: skip


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------
def spaxel_offsets_from_cutout(cube, cutout) -> np.ndarray:
    """Sky offsets (ny, nx, 2) arcsec east/north of every spaxel from the cutout centre, through both WCSs."""
    ny, nx = cube.flux.shape[1:]
    y, x = np.mgrid[0:ny, 0:nx]
    world = cube.wcs.pixel_to_world(x, y)
    return cutout.sky_to_offset_arcsec(world.ra.deg, world.dec.deg)


def cube_rows(survey: Path, galaxy: dict, model_wavelength: np.ndarray) -> dict[str, list]:
    """Supervised-baseline rows of one training cube: each spaxel with signal is a 'fiber' spectrum."""
    cube = read_manga_cube(survey / "manga" / f"manga-{galaxy['plateifu']}-LOGCUBE.fits.gz")
    cutout = read_legacy_cutout(survey / galaxy["cutout_file"])
    offsets = spaxel_offsets_from_cutout(cube, cutout)
    flux = np.moveaxis(cube.flux, 0, -1).reshape(-1, cube.flux.shape[0])
    ivar = np.moveaxis(np.where(cube.mask == 0, cube.ivar, 0.0), 0, -1).reshape(-1, cube.flux.shape[0])
    snr = np.nanmedian(flux * np.sqrt(ivar), axis=1)
    keep = snr > 0.5  # spaxels with continuum signal (the rest are sky)
    flux_model, ivar_model = resample_spectrum(cube.wavelength, flux[keep], ivar[keep], model_wavelength)
    n = int(keep.sum())
    return {
        "targetid": [int(galaxy["targetid"])] * n,
        "image": [cutout.image.astype(np.float32)] * n,
        "flux": list(flux_model),
        "ivar": list(ivar_model),
        "redshift": [float(galaxy["redshift"])] * n,
        "fiber_offset": list(offsets.reshape(-1, 2)[keep].astype(np.float32)),
        "fiber_diameter": [SPAXEL_EQUIVALENT_DIAMETER] * n,
    }


def build_baseline_dataset(survey: Path, galaxies: list[dict], model_wavelength: np.ndarray, out: Path) -> int:
    columns: dict[str, list] = {}
    for galaxy in galaxies:
        for key, values in cube_rows(survey, galaxy, model_wavelength).items():
            columns.setdefault(key, []).extend(values)
    bands, size = columns["image"][0].shape[0], columns["image"][0].shape[-1]
    features = datasets.Features(
        {
            "targetid": datasets.Value("int64"),
            "image": datasets.Array3D((bands, size, size), "float32"),
            "flux": datasets.Sequence(datasets.Value("float32"), length=len(model_wavelength)),
            "ivar": datasets.Sequence(datasets.Value("float32"), length=len(model_wavelength)),
            "redshift": datasets.Value("float32"),
            "fiber_offset": datasets.Sequence(datasets.Value("float32"), length=2),
            "fiber_diameter": datasets.Value("float32"),
        }
    )
    datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(out))
    return len(columns["targetid"])


# ----------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------
def train(dataset: Path, output: Path, setting: dict, steps: int, seed: int) -> GalSpecForMaskedSpectra:
    arguments = [
        "--dataset", str(dataset), "--preset", setting["preset"], "--max_steps", str(steps),
        "--per_device_batch_size", str(setting["batch_size"]), "--learning_rate", str(setting["learning_rate"]),
        "--warmup_steps", str(max(10, steps // 20)), "--output_dir", str(output), "--seed", str(seed),
        "--validation_fraction", "0.05", "--max_eval_samples", "64", "--max_shift_pixels", "4",
    ]  # fmt: skip
    # a fresh process, as `accelerate launch examples/pretrain.py` would be: after the simulation's numpy/scipy
    # work in this process, training here ran several times slower (thread pools competing for the 2 cores)
    build_pretrain_parser().parse_args(arguments)  # check the arguments before starting the process
    subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "pretrain.py"), *arguments], check=True)
    return GalSpecForMaskedSpectra.from_pretrained(output).eval()


# ----------------------------------------------------------------------------------------
# Prediction and comparison
# ----------------------------------------------------------------------------------------
def predicted_cube(model, cutout, redshift: float, offsets: np.ndarray, fiber_diameter: float, per_spaxel: float,
                   where: np.ndarray):
    """Spectra at the spaxels `where` (ny, nx) of a truth grid, flux per spaxel (x `per_spaxel`): (wavelength (L,),
    mean (ny, nx, L), sigma (ny, nx, L)), NaN at the other spaxels (nothing there is scored, so none predicted)."""
    processor_size = model.config.image_size
    image = cutout.crop_center(processor_size).image if cutout.image.shape[-1] != processor_size else cutout.image
    pixel_values = torch.from_numpy(image.astype(np.float32))[None]
    chosen = offsets[where]  # (S, 2)
    prediction = model.predict_spectra(
        pixel_values,
        torch.tensor([redshift], dtype=torch.float32),
        torch.from_numpy(chosen.reshape(1, -1, 2).astype(np.float32)),
        fiber_diameter=fiber_diameter,
        fiber_batch_size=128,
    )
    n_wave = prediction.mean.shape[-1]
    mean = np.full((*where.shape, n_wave), np.nan)
    sigma = np.full((*where.shape, n_wave), np.nan)
    mean[where] = prediction.mean[0].numpy() * per_spaxel
    sigma[where] = prediction.sigma[0].numpy() * per_spaxel
    return prediction.wavelength.numpy().astype(np.float64), mean, sigma


def fit_maps(wavelength, mean, sigma, redshift, weighted: bool, where: np.ndarray) -> tuple[dict, dict | None]:
    """Line-flux maps (ny, nx) of a predicted cube, fitted at the spaxels `where` only (NaN elsewhere), and, for the
    sigma-weighted fit, their predicted 1-sigma errors.

    weighted=False: every pixel has the same weight (the model's sigma does not steer the fit); the errors are
    then not the model's and are returned as None. weighted=True: ivar = 1 / sigma_model^2 without rescaling,
    so ``flux_err`` is the model's own predicted sigma of the line flux. The fit's stellar continuum is the local
    one (a straight line per line complex): the same for every model, ~13x faster than the template fit.
    """
    flux_in, sigma_in = mean[where], sigma[where]  # (S, L)
    ivar = 1.0 / np.clip(sigma_in, 1e-6, None) ** 2 if weighted else np.ones_like(flux_in)
    instrumental = SPEED_OF_LIGHT_KMS * (DESI_RESOLUTION_FWHM_A / FWHM_PER_SIGMA) / wavelength
    maps = fit_emission_lines(
        wavelength, flux_in, ivar, redshift, instrumental_sigma_kms=instrumental, rescale_errors=not weighted,
        continuum="local",
    )

    def scatter(values):
        out = np.full(where.shape, np.nan)
        out[where] = np.asarray(values, dtype=np.float64)
        return out

    flux = {name: scatter(maps.flux[name]) for name in LINES}
    errors = {name: scatter(maps.flux_err[name]) for name in LINES} if weighted else None
    return flux, errors


def smoothing_sigma_spaxels(resolution_fwhm_arcsec: float) -> float:
    """Gaussian sigma (spaxels) that brings a map of `resolution_fwhm_arcsec` to MaNGA's 2.5" reconstructed PSF."""
    kernel_fwhm = math.sqrt(max(MANGA_PSF_FWHM_ARCSEC**2 - resolution_fwhm_arcsec**2, 0.0))
    return kernel_fwhm / FWHM_PER_SIGMA / MANGA_SPAXEL_ARCSEC


def smooth_to_manga_psf(flux_map: np.ndarray, image_psf_fwhm: float, aperture_diameter: float) -> np.ndarray:
    """NaN-aware smoothing of an image-resolution map (image seeing + a top-hat aperture) to MaNGA's 2.5" PSF."""
    effective = math.hypot(image_psf_fwhm, TOPHAT_FWHM_PER_DIAMETER * aperture_diameter)
    return smooth_nan_aware(flux_map, smoothing_sigma_spaxels(effective))


def galaxy_class(galaxy: dict) -> str:
    """``star_forming`` or ``quiescent``, from the simulator's truth column `star_forming` (its main-sequence
    draw); without that column, from the specific SFR: log SFR - log M* > -11 /yr is star-forming."""
    if "star_forming" in galaxy and galaxy["star_forming"] is not None:
        return "star_forming" if bool(galaxy["star_forming"]) else "quiescent"
    return "star_forming" if float(galaxy["log_sfr"]) - float(galaxy["log_mstar"]) > -11.0 else "quiescent"


def fiber_ratios(rows, wavelength: np.ndarray, config, continuum: str) -> dict[str, np.ndarray]:
    """Line-to-light ratio of each fiber row: the line fitted on its own spectrum over the image light in its
    aperture ({line: (N,)}, 1e-17 erg/s/cm2 per nanomaggy)."""
    flux = np.stack([np.asarray(r["flux"], np.float64) for r in rows])
    ivar = np.stack([np.asarray(r["ivar"], np.float64) for r in rows])
    mask = np.stack([np.asarray(r["mask"]) for r in rows])
    redshift = np.array([float(r["redshift"]) for r in rows])
    fluxes = fit_fiber_line_fluxes(wavelength, flux, ivar, mask, redshift, LINES, continuum=continuum)
    light = np.array(
        [
            image_light(np.asarray(r["image"]), np.asarray(r["fiber_offset"])[None], float(r["fiber_diameter"]),
                        config, pixel_scale=float(r["pixel_scale"]))[0]
            for r in rows
        ]
    )  # fmt: skip
    return {line: line_to_light_ratio(fluxes[line], light) for line in LINES}


def _coverages(observed, ivar, mean, sigma) -> dict:
    levels = [float(k) for k in np.linspace(0.25, 3.0, 12)]
    one, two, *curve = coverage_curve(observed, ivar, mean, sigma, [1.0, 2.0, *levels])
    return {
        "spectrum_coverage_1sigma": one,
        "spectrum_coverage_2sigma": two,
        "spectrum_coverage_curve": [[k, fraction] for k, fraction in zip(levels, curve, strict=True)],
    }


MODELS = ("image_only", "supervised", "null_light", "null_fiber")
MODEL_TITLES = {"image_only": "image only", "supervised": "supervised", "null_light": "null light",
                "null_fiber": "null fiber"}  # fmt: skip


def evaluate_set(survey: Path, galaxies: list[dict], models: dict, null_inputs: dict, wave) -> dict:
    """Maps, selections, scores and spectrum coverage of one evaluation set (see the module docstring)."""
    one_fiber, supervised = models["image_only"], models["supervised"]
    config = one_fiber.config
    per_line = {
        line: {"maps": {m: [] for m in MODELS}, "weighted": {m: [] for m in ("image_only", "supervised")},
               "sigma": {m: [] for m in ("image_only", "supervised")}, "truth": [], "selection": []}
        for line in LINES
    }  # fmt: skip
    spectra = {m: {"obs": [], "ivar": [], "mean": [], "sigma": []} for m in ("image_only", "supervised")}
    classes, records, panels = [], [], {line: [] for line in LINES}
    for galaxy in galaxies:
        cube = read_manga_cube(survey / "manga" / f"manga-{galaxy['plateifu']}-LOGCUBE.fits.gz")
        maps = read_manga_maps(survey / "manga" / f"manga-{galaxy['plateifu']}-MAPS.fits.gz")
        cutout = read_legacy_cutout(survey / galaxy["cutout_file"])
        offsets = spaxel_offsets_from_cutout(cube, cutout)
        z, psf = float(galaxy["redshift"]), float(galaxy["psf_fwhm_r_arcsec"])
        footprint = cube_footprint(cube.ivar, cube.mask)
        # the model sees a config.image_size crop: a spaxel counts when its whole aperture lies inside it
        in_image = inside_image(offsets, config.image_size, cutout.pixel_scale_arcsec, SPAXEL_EQUIVALENT_DIAMETER / 2)
        # only spaxels inside the model image and the cube footprint can be scored: predict and fit only those
        needed = in_image & footprint
        scale_1f = per_spaxel_scale(config.fiber_diameter, MANGA_SPAXEL_ARCSEC)
        _, mean_1f, sigma_1f = predicted_cube(one_fiber, cutout, z, offsets, config.fiber_diameter, scale_1f, needed)
        _, mean_sup, sigma_sup = predicted_cube(supervised, cutout, z, offsets, SPAXEL_EQUIVALENT_DIAMETER, 1.0,
                                                needed)  # fmt: skip
        fits = {
            "image_only": fit_maps(wave, mean_1f, sigma_1f, z, weighted=False, where=needed)[0],
            "supervised": fit_maps(wave, mean_sup, sigma_sup, z, weighted=False, where=needed)[0],
        }
        weighted = {
            "image_only": fit_maps(wave, mean_1f, sigma_1f, z, weighted=True, where=needed),
            "supervised": fit_maps(wave, mean_sup, sigma_sup, z, weighted=True, where=needed),
        }
        light = image_light(cutout.image, offsets, SPAXEL_EQUIVALENT_DIAMETER, config,
                            pixel_scale=cutout.pixel_scale_arcsec)  # fmt: skip
        light_smoothed = smooth_to_manga_psf(np.where(in_image, light, np.nan), psf, SPAXEL_EQUIVALENT_DIAMETER)
        own_ratio = null_inputs["own_ratio"].get(int(galaxy["targetid"]), {})

        def smooth_1f(flux_map, in_image=in_image, psf=psf):
            return smooth_to_manga_psf(np.where(in_image, flux_map, np.nan), psf, config.fiber_diameter)

        cls = galaxy_class(galaxy)
        classes.append(cls)
        record = {"plateifu": galaxy["plateifu"], "targetid": int(galaxy["targetid"]), "class": cls,
                  "disk_re_arcsec": float(galaxy["disk_re_arcsec"])}  # fmt: skip
        for line, channel in LINES.items():
            index = maps.line_names.index(channel)
            truth_map = np.where(maps.emline_flux_mask[index] == 0, maps.emline_flux[index], np.nan)
            truth_ivar = np.where(maps.emline_flux_mask[index] == 0, maps.emline_flux_ivar[index], 0.0)
            selection = spaxel_selection(truth_map, truth_ivar, footprint, in_image)
            candidates = spaxel_selection(truth_map, truth_ivar, footprint, np.ones_like(in_image))
            record[f"{LINE_PREFIXES[line]}_spaxels_outside_image"] = int((candidates & ~in_image).sum())
            data = per_line[line]
            data["truth"].append(truth_map)
            data["selection"].append(selection)
            data["maps"]["image_only"].append(smooth_1f(fits["image_only"][line]))
            data["maps"]["supervised"].append(fits["supervised"][line])
            data["maps"]["null_light"].append(null_line_map(null_inputs["survey_ratio"][line], light_smoothed))
            data["maps"]["null_fiber"].append(null_line_map(own_ratio.get(line, np.nan), light_smoothed))
            data["weighted"]["image_only"].append(smooth_1f(weighted["image_only"][0][line]))
            data["weighted"]["supervised"].append(weighted["supervised"][0][line])
            # smoothing averages neighbouring spaxels; their errors are taken as fully correlated (conservative)
            data["sigma"]["image_only"].append(smooth_1f(weighted["image_only"][1][line]))
            data["sigma"]["supervised"].append(weighted["supervised"][1][line])
            if len(panels[line]) < 3:
                panels[line].append({"name": galaxy["plateifu"], "truth": truth_map, "good": selection,
                                     "east": offsets[..., 0], "north": offsets[..., 1],
                                     **{m: data["maps"][m][-1] for m in MODELS}})  # fmt: skip
        records.append(record)
        # spectrum coverage, both models on the same data: the H-alpha-selected spaxels of the truth cube
        chosen = per_line["Halpha"]["selection"][-1]
        flux = np.moveaxis(cube.flux, 0, -1)[chosen]
        ivar = np.moveaxis(np.where(cube.mask == 0, cube.ivar, 0.0), 0, -1)[chosen]
        if chosen.any():
            obs, obs_ivar = resample_spectrum(cube.wavelength, flux, ivar, wave)
            for name, mean, sigma in (("image_only", mean_1f, sigma_1f), ("supervised", mean_sup, sigma_sup)):
                spectra[name]["obs"].append(obs)
                spectra[name]["ivar"].append(obs_ivar)
                spectra[name]["mean"].append(mean[chosen])
                spectra[name]["sigma"].append(sigma[chosen])

    line_scores, weighted_scores = {}, {}
    for line, data in per_line.items():
        line_scores[line] = score_line(data["maps"], data["truth"], data["selection"], sigmas=data["sigma"],
                                       classes=classes)  # fmt: skip
        weighted_scores[line] = score_line(
            {**data["weighted"], "null_light": data["maps"]["null_light"], "null_fiber": data["maps"]["null_fiber"]},
            data["truth"], data["selection"], sigmas=data["sigma"], classes=classes,
        )  # fmt: skip
    result = {"models": flatten_line_scores(line_scores)}
    weighted_flat = flatten_line_scores(weighted_scores)
    result["sigma_weighted_fits"] = {m: weighted_flat[m] for m in ("image_only", "supervised")}
    curves = {}
    for name in ("image_only", "supervised"):
        if spectra[name]["obs"]:
            coverage = _coverages(*(np.concatenate(spectra[name][k]) for k in ("obs", "ivar", "mean", "sigma")))
        else:
            coverage = {"spectrum_coverage_1sigma": None, "spectrum_coverage_2sigma": None,
                        "spectrum_coverage_curve": []}  # fmt: skip
        result["models"][name].update(coverage)
        result["models"][name]["spectrum_coverage_on"] = "the set's truth-cube spaxels with H-alpha truth S/N > 3"
        curves[MODEL_TITLES[name]] = coverage["spectrum_coverage_curve"]
    result["galaxies"] = records
    result["n_galaxies"] = len(galaxies)
    result["classes"] = {c: classes.count(c) for c in ("star_forming", "quiescent")}
    return result, panels, curves


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------
def plot_maps(path: Path, line: str, panels: list[dict], note: str = "") -> None:
    """One row per galaxy: truth | the four models | log residual of image_only, on arcsec axes (east left).

    Grey: no value (outside the model image or the cube footprint, or no truth); black: a fit that failed
    (flux <= 0) on a spaxel that is scored. ``note`` (e.g. the quick setting's "smoke test") goes in the title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    columns = ("truth", *MODELS)
    figure, axes = plt.subplots(len(panels), 6, figsize=(21, 3.6 * len(panels)), squeeze=False,
                                layout="constrained")  # fmt: skip
    figure.suptitle(
        f"{line} flux maps, test set{f' ({note})' if note else ''}\ngrey: no value (outside the model image or cube "
        "footprint, no truth); black: fit failed (flux <= 0) on a scored spaxel; north up, east left", fontsize=11
    )
    cmap = plt.get_cmap("magma").copy()
    cmap.set_bad("0.85")
    failed_cmap = ListedColormap(["black"])
    for row, panel in zip(axes, panels, strict=True):
        truth = panel["truth"]
        east, north = panel["east"], panel["north"]  # (ny, nx) arcsec of each spaxel centre
        extent = (east[0, 0], east[0, -1], north[0, 0], north[-1, 0])
        positive = truth[np.isfinite(truth) & (truth > 0)]
        vmin, vmax = np.percentile(np.log10(positive), [5, 99.5]) if positive.size else (-2, 1)
        for ax, key in zip(row[:5], columns, strict=True):
            values = np.asarray(panel[key], dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                shown = np.where(np.isfinite(values) & (values > 0), np.log10(values), np.nan)
            image = ax.imshow(shown, origin="lower", vmin=vmin, vmax=vmax, cmap=cmap, extent=extent)
            failed = panel["good"] & ~(np.isfinite(values) & (values > 0))
            if failed.any():
                ax.imshow(np.where(failed, 1.0, np.nan), origin="lower", cmap=failed_cmap, extent=extent)
            ax.set_title(f"{panel['name']}: {MODEL_TITLES.get(key, key)}", fontsize=9)
            ax.set_xlabel("east offset (arcsec)", fontsize=8)
            ax.tick_params(labelsize=7)
        row[0].set_ylabel("north offset (arcsec)", fontsize=8)
        north_east_arrows(row[0], color="white")
        figure.colorbar(image, ax=row[:5].tolist(), fraction=0.02, pad=0.01,
                        label=f"log10 {line}\n[1e-17 erg/s/cm2/spaxel]")  # fmt: skip
        with np.errstate(divide="ignore", invalid="ignore"):
            residual = np.log10(panel["image_only"] / truth)
        residual[~panel["good"]] = np.nan
        finite = residual[np.isfinite(residual)]
        limit = float(np.clip(np.percentile(np.abs(finite), 95), 0.3, 3.0)) if finite.size else 0.5
        residual_cmap = plt.get_cmap("coolwarm").copy()
        residual_cmap.set_bad("0.85")
        image = row[5].imshow(residual, origin="lower", vmin=-limit, vmax=limit, cmap=residual_cmap, extent=extent)
        row[5].set_title("log10(image only / truth), scored spaxels", fontsize=9)
        row[5].set_xlabel("east offset (arcsec)", fontsize=8)
        row[5].tick_params(labelsize=7)
        figure.colorbar(image, ax=row[5], fraction=0.05, pad=0.01, label="dex")
    figure.savefig(path, dpi=80)
    plt.close(figure)


def plot_calibration(path: Path, curves: dict[str, list]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.special import erf

    figure, ax = plt.subplots(figsize=(5.5, 4.5))
    levels = np.linspace(0, 3.2, 100)
    ax.plot(levels, erf(levels / math.sqrt(2)), "k--", label="calibrated Gaussian")
    for name, curve in curves.items():
        curve = np.asarray(curve)
        if curve.size:
            ax.plot(curve[:, 0], curve[:, 1], "o-", label=name)
    ax.set_xlabel("k (interval of +/- k predictive sigma)")
    ax.set_ylabel("fraction of test-set cube pixels inside")
    ax.legend()
    ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ----------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------
def _format(value, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def run(output_dir: Path, setting: dict, seed: int) -> dict:
    start = time.time()
    output_dir.mkdir(parents=True, exist_ok=True)
    survey = output_dir / "survey"
    n_ifu = setting["n_train_cubes"] + setting["n_validation"] + setting["n_test"]
    log(f"simulating {setting['n_galaxies']} galaxies, {n_ifu} with IFU truth")
    simulate_survey(survey, setting["n_galaxies"], n_ifu=n_ifu, seed=seed, cutout_size=setting["cutout_size"])
    truth = pq.read_table(survey / "truth.parquet").to_pylist()
    ifu = [row for row in truth if row["plateifu"]]
    sets = draw_evaluation_sets(ifu, setting["n_train_cubes"], setting["n_validation"], setting["n_test"], seed=seed,
                                min_size_arcsec=IFU_MIN_RE_ARCSEC)  # fmt: skip
    heldout_ids = {int(g["targetid"]) for g in sets["validation"] + sets["test"]}

    log("building the one-fiber data set from the DESI-format files")
    fibers_all = output_dir / "fibers_all"
    build_desi_dataset(survey, fibers_all, image_size=setting["cutout_size"], overwrite=True, progress=False)
    all_fibers = datasets.load_from_disk(str(fibers_all))
    training_fibers = exclude_targets(all_fibers, heldout_ids)
    training_fibers.save_to_disk(str(output_dir / "fibers_train"))
    log(f"{len(training_fibers)} training fibers ({len(all_fibers) - len(training_fibers)} held-out rows left out)")

    one_fiber = train(output_dir / "fibers_train", output_dir / "one_fiber_model", setting, setting["steps"], seed)
    wave = one_fiber.galspec.wavelength.numpy().astype(np.float64)
    log(f"building the supervised data set from {len(sets['train'])} training cubes")
    n_rows = build_baseline_dataset(survey, sets["train"], wave, output_dir / "cubes_train")
    log(f"{n_rows} spaxel rows")
    supervised = train(
        output_dir / "cubes_train", output_dir / "supervised_model", setting, setting["baseline_steps"], seed
    )

    log("null baselines: line-to-light ratios fitted on the training fibers and the held-out galaxies' fibers")
    numpy_fibers = training_fibers.with_format("numpy")
    picked = np.random.default_rng(seed).permutation(len(numpy_fibers))[: setting["n_null_fibers"]]
    survey_ratios = fiber_ratios([numpy_fibers[int(i)] for i in sorted(picked)], wave, one_fiber.config,
                                 setting["fiber_continuum"])
    survey_ratio = {line: float(np.nanmedian(r)) if np.isfinite(r).any() else float("nan")
                    for line, r in survey_ratios.items()}  # fmt: skip
    heldout_rows = [row for row in all_fibers.with_format("numpy") if int(row["targetid"]) in heldout_ids]
    own = fiber_ratios(heldout_rows, wave, one_fiber.config, setting["fiber_continuum"]) if heldout_rows else {}
    own_ratio = {int(row["targetid"]): {line: float(own[line][i]) for line in LINES}
                 for i, row in enumerate(heldout_rows)}  # fmt: skip
    null_inputs = {"survey_ratio": survey_ratio, "own_ratio": own_ratio}

    models = {"image_only": one_fiber, "supervised": supervised}
    results: dict[str, dict] = {}
    for set_name in ("validation", "test"):
        log(f"{set_name} set: predicting cubes for {len(sets[set_name])} galaxies and fitting emission lines")
        results[set_name], panels, curves = evaluate_set(survey, sets[set_name], models, null_inputs, wave)
        results[set_name]["set"] = set_name
        if set_name == "test":
            for line in LINES:
                plot_maps(output_dir / f"maps_{line}.png", line, panels[line], note=setting.get("note", ""))
            plot_calibration(output_dir / "calibration.png", curves)
    results["null_survey_ratio"] = {
        "per_line": survey_ratio,
        "n_fibers": int(len(picked)),
        "unit": "line flux (1e-17 erg/s/cm2) per nanomaggy of r-band image light in the fiber aperture",
    }
    results["setting"] = {
        **setting,
        "seed": seed,
        "n_training_fibers": len(training_fibers),
        "n_supervised_rows": n_rows,
        "train_cubes": [g["plateifu"] for g in sets["train"]],
    }
    results["wall_seconds"] = time.time() - start
    write_metrics_json(output_dir / "metrics.json", results)
    lines = [f"{setting['note']}: the numbers below show the pipeline runs, not what the method can do"] if (
        setting.get("note")) else []  # fmt: skip
    for set_name in ("validation", "test"):
        models_out = results[set_name]["models"]
        n, classes = results[set_name]["n_galaxies"], results[set_name]["classes"]
        lines.append(
            f"{set_name} set ({n} galaxies, {classes}): H-alpha over {models_out['image_only']['ha_num_spaxels']}"
            " common spaxels (truth S/N > 3, footprint, image)"
        )
        for name in MODELS:
            r = models_out[name]
            lines.append(
                f"  {name:11s}: r = {_format(r['ha_pearson_r'], '.3f')}, scatter {_format(r['ha_scatter_dex'], '.3f')}"
                f" dex, bias {_format(r['ha_bias_dex'], '+.3f')} dex, failed {_format(r['ha_failed_fraction'], '.3f')}"
                f"; line-flux coverage {_format(r['coverage_1sigma'], '.3f')} / {_format(r['coverage_2sigma'], '.3f')}"
            )
    lines.append(
        f"wrote metrics.json, maps_*.png and calibration.png in {output_dir} ({results['wall_seconds']:.0f} s)"
    )
    lines.append(
        f"the one-fiber model (with its processor) is in {output_dir / 'one_fiber_model'}: "
        "AutoModel.from_pretrained / AutoProcessor.from_pretrained load it (see the README)"
    )
    summary = "\n".join(lines)
    (output_dir / "summary.txt").write_text(summary + "\n")
    print(summary)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="IFU spectroscopy with one fiber, end to end on synthetic galaxies.")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--quick", action="store_true", help="a small run (~5 minutes on 2 CPU cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override the one-fiber training steps")
    parser.add_argument("--baseline_steps", type=int, default=None, help="override the baseline training steps")
    args = parser.parse_args(argv)
    setting = dict(SETTINGS["quick" if args.quick else "default"])
    if args.steps is not None:
        setting["steps"] = args.steps
    if args.baseline_steps is not None:
        setting["baseline_steps"] = args.baseline_steps
    torch.manual_seed(args.seed)
    run(Path(args.output_dir), setting, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
