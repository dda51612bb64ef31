"""IFU spectroscopy with one fiber, end to end, on the synthetic universe.

1. Simulate a survey: one DESI-like fiber per galaxy (coadd + redrock + Legacy cutout), and MaNGA-format
   IFU truth (LOGCUBE + MAPS) for some galaxies. The IFU galaxies are split in two: *training cubes* for
   the supervised baseline and *held-out* galaxies for the comparison. Held-out galaxies never enter
   any training set.
2. Build the one-fiber data set with the DESI loader (``galspec build-dataset``'s code).
3. Pretrain the one-fiber model (``examples/pretrain.py``'s training function) on those fibers.
4. Train the supervised baseline, the same architecture, directly on the training cubes: every spaxel
   spectrum with its sky position is a training row.
5. Predict a cube for each held-out galaxy on its truth cube's spaxel grid, fit H-alpha, [NII], H-beta
   and [OIII] in every spaxel, and compare the maps with the truth MAPS (Pearson r, bias and scatter in
   dex over spaxels with truth S/N > 3). The one-fiber maps are smoothed to MaNGA's 2.5" PSF first.
6. Calibration: the one-fiber model's coverage at 1 and 2 sigma on the held-out galaxies' own DESI
   fibers (image in, spectrum out); the baseline's on the held-out truth cubes' spaxels.

Writes DIR/metrics.json (keys ``one_fiber`` and ``supervised``), DIR/maps_<line>.png (truth | one-fiber |
supervised | residual), DIR/calibration.png and DIR/summary.txt.

    python examples/ifu_from_one_fiber.py --output_dir runs/ifu --quick     # ~5 minutes on 2 CPU cores
    python examples/ifu_from_one_fiber.py --output_dir runs/ifu             # the default setting
"""

from __future__ import annotations

import argparse
import json
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
from scipy.ndimage import gaussian_filter  # noqa: E402

from galspec_hf import GalSpecForMaskedSpectra  # noqa: E402
from galspec_hf.analysis.lines import fit_emission_lines  # noqa: E402
from galspec_hf.constants import (
    DAP_CHANNEL_NAMES,
    FWHM_PER_SIGMA,
    MANGA_PSF_FWHM_ARCSEC,
    MANGA_SPAXEL_ARCSEC,
    SPEED_OF_LIGHT_KMS,
)  # noqa: E402
from galspec_hf.data.build import build_desi_dataset  # noqa: E402
from galspec_hf.data.readers import read_legacy_cutout, read_manga_cube, read_manga_maps  # noqa: E402
from galspec_hf.metrics import coverage_curve, stacked_line_map_agreement  # noqa: E402
from galspec_hf.models.galspec.processing_galspec import resample_spectrum  # noqa: E402
from galspec_hf.simulate import simulate_survey  # noqa: E402

# The lines compared: our fit's names -> the DAP MAPS channel names of the truth files.
LINES = {name: DAP_CHANNEL_NAMES[name] for name in ("Halpha", "NII_6585", "Hbeta", "OIII_5008")}
# Equal-area diameter of a 0.5" spaxel, arcsec: the "fiber" of the supervised baseline's training rows.
SPAXEL_EQUIVALENT_DIAMETER = 2 * MANGA_SPAXEL_ARCSEC / math.sqrt(math.pi)
# DESI spectral resolution FWHM ~1.8 A (R = 2000-5500 over 3600-9800 A; DESI Collaboration 2022, AJ 164, 207).
DESI_RESOLUTION_FWHM_A = 1.8
# Equivalent Gaussian FWHM of a top-hat aperture of diameter D: sigma = D / 4 (second moment of a disk).
TOPHAT_FWHM_PER_DIAMETER = FWHM_PER_SIGMA / 4

SETTINGS = {
    "quick": {
        "n_galaxies": 300, "n_train_cubes": 4, "n_heldout": 3, "preset": "tiny", "cutout_size": 40,
        "steps": 300, "baseline_steps": 300, "batch_size": 16, "learning_rate": 2e-3,
    },
    "default": {
        "n_galaxies": 4000, "n_train_cubes": 24, "n_heldout": 12, "preset": "small", "cutout_size": 72,
        "steps": 1800, "baseline_steps": 1000, "batch_size": 16, "learning_rate": 5e-4,
    },
}  # fmt: skip


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------
def split_ifu_galaxies(truth: list[dict], n_train_cubes: int) -> tuple[list[dict], list[dict]]:
    """IFU galaxies in survey order: the first n_train_cubes train the baseline, the rest are held out."""
    ifu = [row for row in truth if row["plateifu"]]
    return ifu[:n_train_cubes], ifu[n_train_cubes:]


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
def predicted_cube(
    model, cutout, redshift: float, offsets: np.ndarray, fiber_diameter: float, per_spaxel_scale: float
):
    """Spectra at every spaxel of a truth grid, (ny, nx, L) mean and sigma, flux per spaxel."""
    processor_size = model.config.image_size
    image = cutout.crop_center(processor_size).image if cutout.image.shape[-1] != processor_size else cutout.image
    pixel_values = torch.from_numpy(image.astype(np.float32))[None]
    ny, nx = offsets.shape[:2]
    prediction = model.predict_spectra(
        pixel_values,
        torch.tensor([redshift], dtype=torch.float32),
        torch.from_numpy(offsets.reshape(1, -1, 2).astype(np.float32)),
        fiber_diameter=fiber_diameter,
        fiber_batch_size=128,
    )
    mean = prediction.mean[0].numpy().reshape(ny, nx, -1) * per_spaxel_scale
    sigma = prediction.sigma[0].numpy().reshape(ny, nx, -1) * per_spaxel_scale
    return prediction.wavelength.numpy().astype(np.float64), mean, sigma


def fit_maps(wavelength, mean, sigma, redshift) -> dict[str, np.ndarray]:
    """Emission-line flux maps (per spaxel) of a predicted cube, fitted with the model's sigma as the error."""
    ivar = 1.0 / np.clip(sigma, 1e-6, None) ** 2
    instrumental = SPEED_OF_LIGHT_KMS * (DESI_RESOLUTION_FWHM_A / FWHM_PER_SIGMA) / wavelength
    maps = fit_emission_lines(wavelength, mean, ivar, redshift, instrumental_sigma_kms=instrumental)
    return {name: np.asarray(maps.flux[name], dtype=np.float64) for name in LINES}


def smooth_to_manga_psf(flux_map: np.ndarray, image_psf_fwhm: float, fiber_diameter: float) -> np.ndarray:
    """Gaussian-smooth a one-fiber map (image seeing + fiber aperture) to MaNGA's 2.5" reconstructed PSF."""
    effective = math.hypot(image_psf_fwhm, TOPHAT_FWHM_PER_DIAMETER * fiber_diameter)
    kernel_fwhm = math.sqrt(max(MANGA_PSF_FWHM_ARCSEC**2 - effective**2, 0.0))
    filled = np.nan_to_num(flux_map, nan=0.0)
    return gaussian_filter(filled, kernel_fwhm / FWHM_PER_SIGMA / MANGA_SPAXEL_ARCSEC, mode="constant")


def coverage_on_fibers(model, dataset_path: Path, heldout_ids: set[int]) -> dict[str, float]:
    """One-fiber model: image-only prediction at each held-out galaxy's observed DESI fiber."""
    data = datasets.load_from_disk(str(dataset_path)).with_format("numpy")
    rows = [row for row in data if int(row["targetid"]) in heldout_ids]
    observed, ivar, mean, sigma = [], [], [], []
    size = model.config.image_size
    for row in rows:
        image = row["image"]
        top = (image.shape[-1] - size) // 2
        pixel_values = torch.from_numpy(image[:, top : top + size, top : top + size].astype(np.float32))[None]
        prediction = model.predict_spectra(
            pixel_values, torch.tensor([float(row["redshift"])]), torch.from_numpy(row["fiber_offset"][None, None])
        )
        observed.append(row["flux"])
        ivar.append(np.where(row["mask"] != 0, 0.0, row["ivar"]))
        mean.append(prediction.mean[0, 0].numpy())
        sigma.append(prediction.sigma[0, 0].numpy())
    arrays = [np.stack(a) for a in (observed, ivar, mean, sigma)]
    return _coverages(*arrays)


def _coverages(observed, ivar, mean, sigma) -> dict[str, float]:
    levels = [float(k) for k in np.linspace(0.25, 3.0, 12)]
    one, two, *curve = coverage_curve(observed, ivar, mean, sigma, [1.0, 2.0, *levels])
    return {
        "coverage_1sigma": one,
        "coverage_2sigma": two,
        "coverage_curve": [[k, fraction] for k, fraction in zip(levels, curve, strict=True)],
    }


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------
def plot_maps(path: Path, line: str, panels: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(panels), 4, figsize=(13, 3.2 * len(panels)), squeeze=False)
    for row, panel in zip(axes, panels, strict=True):
        truth = panel["truth"]
        positive = truth[np.isfinite(truth) & (truth > 0)]
        vmin, vmax = np.percentile(np.log10(positive), [5, 99.5]) if positive.size else (-2, 1)
        titles = {"truth": "truth", "one_fiber": "one fiber", "supervised": "supervised"}
        for ax, (key, title) in zip(row[:3], titles.items(), strict=True):
            with np.errstate(divide="ignore", invalid="ignore"):
                image = ax.imshow(np.log10(panel[key]), origin="lower", vmin=vmin, vmax=vmax, cmap="magma")
            ax.set_title(f"{panel['name']}: {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        figure.colorbar(image, ax=row[2], fraction=0.046, label=f"log10 {line} flux [1e-17 erg/s/cm2/spaxel]")
        with np.errstate(divide="ignore", invalid="ignore"):
            residual = np.log10(panel["one_fiber"] / truth)
        residual[~panel["good"]] = np.nan
        image = row[3].imshow(residual, origin="lower", vmin=-0.5, vmax=0.5, cmap="coolwarm")
        row[3].set_title("log10(one fiber / truth), truth S/N > 3", fontsize=9)
        row[3].set_xticks([])
        row[3].set_yticks([])
        figure.colorbar(image, ax=row[3], fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
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
        ax.plot(curve[:, 0], curve[:, 1], "o-", label=name)
    ax.set_xlabel("k (interval of +/- k predictive sigma)")
    ax.set_ylabel("fraction of held-out pixels inside")
    ax.legend()
    ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ----------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------
def run(output_dir: Path, setting: dict, seed: int) -> dict:
    start = time.time()
    output_dir.mkdir(parents=True, exist_ok=True)
    survey = output_dir / "survey"
    n_ifu = setting["n_train_cubes"] + setting["n_heldout"]
    log(f"simulating {setting['n_galaxies']} galaxies, {n_ifu} with IFU truth")
    simulate_survey(survey, setting["n_galaxies"], n_ifu=n_ifu, seed=seed, cutout_size=setting["cutout_size"])
    truth = pq.read_table(survey / "truth.parquet").to_pylist()
    train_cubes, heldout = split_ifu_galaxies(truth, setting["n_train_cubes"])
    heldout_ids = {int(g["targetid"]) for g in heldout}

    log("building the one-fiber data set from the DESI-format files")
    fibers_all = output_dir / "fibers_all"
    build_desi_dataset(survey, fibers_all, image_size=setting["cutout_size"], overwrite=True, progress=False)
    all_fibers = datasets.load_from_disk(str(fibers_all))
    training_fibers = all_fibers.filter(lambda row: int(row["targetid"]) not in heldout_ids)
    training_fibers.save_to_disk(str(output_dir / "fibers_train"))
    log(
        f"{len(training_fibers)} training fibers ({len(all_fibers) - len(training_fibers)} held-out galaxies left out)"
    )

    one_fiber = train(output_dir / "fibers_train", output_dir / "one_fiber_model", setting, setting["steps"], seed)
    model_wavelength = one_fiber.galspec.wavelength.numpy()
    log(f"building the supervised data set from {len(train_cubes)} training cubes")
    n_rows = build_baseline_dataset(survey, train_cubes, model_wavelength, output_dir / "cubes_train")
    log(f"{n_rows} spaxel rows")
    supervised = train(
        output_dir / "cubes_train", output_dir / "supervised_model", setting, setting["baseline_steps"], seed
    )

    log(f"predicting cubes for {len(heldout)} held-out galaxies and fitting emission lines")
    fiber_area = math.pi * one_fiber.config.fiber_diameter**2 / 4
    per_line = {line: {"one_fiber": [], "supervised": [], "truth": [], "truth_ivar": []} for line in LINES}
    panels = {line: [] for line in LINES}
    cube_obs, cube_ivar, cube_mean, cube_sigma = [], [], [], []
    for galaxy in heldout:
        cube = read_manga_cube(survey / "manga" / f"manga-{galaxy['plateifu']}-LOGCUBE.fits.gz")
        maps = read_manga_maps(survey / "manga" / f"manga-{galaxy['plateifu']}-MAPS.fits.gz")
        cutout = read_legacy_cutout(survey / galaxy["cutout_file"])
        offsets = spaxel_offsets_from_cutout(cube, cutout)
        z = float(galaxy["redshift"])
        wave, mean_1f, sigma_1f = predicted_cube(
            one_fiber, cutout, z, offsets, one_fiber.config.fiber_diameter, MANGA_SPAXEL_ARCSEC**2 / fiber_area
        )
        _, mean_sup, sigma_sup = predicted_cube(supervised, cutout, z, offsets, SPAXEL_EQUIVALENT_DIAMETER, 1.0)
        maps_1f = fit_maps(wave, mean_1f, sigma_1f, z)
        maps_sup = fit_maps(wave, mean_sup, sigma_sup, z)
        # supervised calibration on the truth cube's spaxels, on the model grid
        flux = np.moveaxis(cube.flux, 0, -1)
        ivar = np.moveaxis(np.where(cube.mask == 0, cube.ivar, 0.0), 0, -1)
        obs, obs_ivar = resample_spectrum(
            cube.wavelength, flux.reshape(-1, flux.shape[-1]), ivar.reshape(-1, flux.shape[-1]), wave
        )
        cube_obs.append(obs)
        cube_ivar.append(obs_ivar)
        cube_mean.append(mean_sup.reshape(-1, mean_sup.shape[-1]))
        cube_sigma.append(sigma_sup.reshape(-1, sigma_sup.shape[-1]))
        for line, channel in LINES.items():
            index = maps.line_names.index(channel)
            truth_map = np.where(maps.emline_flux_mask[index] == 0, maps.emline_flux[index], np.nan)
            truth_ivar = np.where(maps.emline_flux_mask[index] == 0, maps.emline_flux_ivar[index], 0.0)
            smoothed = smooth_to_manga_psf(
                maps_1f[line], float(galaxy["psf_fwhm_r_arcsec"]), one_fiber.config.fiber_diameter
            )
            per_line[line]["one_fiber"].append(smoothed)
            per_line[line]["supervised"].append(maps_sup[line])
            per_line[line]["truth"].append(truth_map)
            per_line[line]["truth_ivar"].append(truth_ivar)
            good = np.isfinite(truth_map) & (truth_map * np.sqrt(truth_ivar) > 3)
            if len(panels[line]) < 3:
                panels[line].append(
                    {
                        "name": galaxy["plateifu"],
                        "truth": truth_map,
                        "one_fiber": smoothed,
                        "supervised": maps_sup[line],
                        "good": good,
                    }
                )

    results: dict[str, dict] = {"one_fiber": {}, "supervised": {}}
    for line, data in per_line.items():
        key = {"Halpha": "ha", "NII_6585": "nii", "Hbeta": "hb", "OIII_5008": "oiii"}[line]
        for model_name in ("one_fiber", "supervised"):
            agreement = stacked_line_map_agreement(data[model_name], data["truth"], data["truth_ivar"])
            stacked = agreement["stacked"]
            results[model_name][f"{key}_pearson_r"] = stacked["pearson_r"]
            results[model_name][f"{key}_scatter_dex"] = stacked["scatter_dex"]
            results[model_name][f"{key}_bias_dex"] = stacked["bias_dex"]
            results[model_name][f"{key}_num_spaxels"] = stacked["num_spaxels"]
            if line == "Halpha":
                results[model_name]["ha_per_galaxy"] = agreement["per_galaxy"]
        plot_maps(output_dir / f"maps_{line}.png", line, panels[line])

    log("calibration")
    one_fiber_coverage = coverage_on_fibers(one_fiber, fibers_all, heldout_ids)
    supervised_coverage = _coverages(*(np.concatenate(a) for a in (cube_obs, cube_ivar, cube_mean, cube_sigma)))
    for name, cov in (("one_fiber", one_fiber_coverage), ("supervised", supervised_coverage)):
        results[name].update(cov)
    results["one_fiber"]["coverage_on"] = "held-out galaxies' DESI fiber spectra (image in, spectrum out)"
    results["supervised"]["coverage_on"] = "held-out truth cube spaxels, resampled to the model grid"
    plot_calibration(
        output_dir / "calibration.png",
        {
            "one fiber (DESI fibers)": one_fiber_coverage["coverage_curve"],
            "supervised (cube spaxels)": supervised_coverage["coverage_curve"],
        },
    )
    results["setting"] = {
        **setting,
        "seed": seed,
        "n_heldout_galaxies": len(heldout),
        "n_training_fibers": len(training_fibers),
        "n_supervised_rows": n_rows,
    }
    results["wall_seconds"] = time.time() - start
    (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
    lines = [f"H-alpha maps over {results['one_fiber']['ha_num_spaxels']} held-out spaxels with truth S/N > 3:"]
    for name, label in (("one_fiber", "one fiber "), ("supervised", "supervised")):
        r = results[name]
        lines.append(
            f"  {label}: r = {r['ha_pearson_r']:.3f}, scatter {r['ha_scatter_dex']:.3f} dex, "
            f"bias {r['ha_bias_dex']:+.3f} dex; coverage {r['coverage_1sigma']:.3f} / {r['coverage_2sigma']:.3f}"
        )
    lines.append(
        f"wrote metrics.json, maps_*.png and calibration.png in {output_dir} ({results['wall_seconds']:.0f} s)"
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
