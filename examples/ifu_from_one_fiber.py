"""IFU spectroscopy with one fiber, end to end, on the synthetic universe, scored like for like.

1. Simulate a survey: one DESI-like fiber per galaxy (coadd + redrock + Legacy cutout), and MaNGA-format
   IFU truth (LOGCUBE + MAPS) for some galaxies (the simulator gives cubes to galaxies above its size floor).
   The IFU galaxies are shuffled with the seed and split (:func:`galspec_hf.scoreboard.draw_evaluation_sets`)
   into *training cubes* for the supervised baseline, a *validation* set (to choose designs) and a *test*
   set (the final table only), both with star-forming and quiescent galaxies. Validation and test galaxies
   never enter any training set (:func:`galspec_hf.scoreboard.exclude_targets`).
2. Build the one-fiber data set with the DESI loader (``galspec build-dataset``'s code).
3. Pretrain the one-fiber model (``examples/pretrain.py``: :mod:`galspec_hf.training.loop`) on those fibers.
4. Train the supervised baseline, the same architecture, directly on the training cubes: every spaxel
   spectrum with its sky position is a training row.
5. For each evaluated galaxy, five H-alpha / [NII] 6585 / H-beta / [OIII] 5008 maps on its truth cube's grid:
   ``one_fiber`` (the one-fiber model given the image and the galaxy's own DESI fiber; ``--conditioning``:
   ``residual``, the default, adds the fiber's line-to-light residual to the image-only map, see
   :data:`galspec_hf.scoreboard.CONDITIONING_MODES`), ``image_only`` (the one-fiber model, image in),
   ``supervised``, ``null_light`` (the training survey's median line-to-light ratio, fitted on the fibers' own
   spectra over the image light in each fiber, times the image light under each spaxel) and ``null_fiber``
   (the galaxy's own DESI fiber's ratio times that light). The model cubes are fitted without the model's sigma
   as weights (the sigma-weighted fits are scored too, in ``sigma_weighted_fits``). Image-resolution maps
   (image_only, nulls) are smoothed to MaNGA's 2.5" PSF with
   NaN-aware normalised smoothing. Every model is scored on the same spaxels (truth S/N > 3, in the cube
   footprint, inside the model image): a non-positive or failed fit there is a failure (``*_failed_fraction``);
   r, scatter and bias over the spaxels where all four maps are positive (``*_num_spaxels``, identical across
   models); per class and per-galaxy medians. One set's maps and scores: :func:`galspec_hf.scoreboard.evaluate_set`.
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
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import torch

from galspec_hf import GalSpecForMaskedSpectra
from galspec_hf.constants import CONTINUUM_COLOUR_BLUE_A, CONTINUUM_COLOUR_RED_A
from galspec_hf.data.build import build_desi_dataset
from galspec_hf.io import read_legacy_cutout, read_manga_cube
from galspec_hf.models.galspec.processing_galspec import resample_spectrum
from galspec_hf.plotting import north_east_arrows
from galspec_hf.scoreboard import (
    COLOUR_BANDS,
    CONDITIONING_MODES,
    LINES,
    MODEL_TITLES,
    MODELS,
    SPAXEL_EQUIVALENT_DIAMETER_ARCSEC,
    continuum_colour_check,
    draw_evaluation_sets,
    evaluate_set,
    exclude_targets,
    fiber_anchor_factors,
    fiber_colours,
    fiber_line_check,
    fiber_null_check,
    fiber_ratios,
    fit_colour_ratio_relation,
    predicted_fiber_line_fluxes,
    spaxel_offsets_from_cutout,
    write_metrics_json,
)
from galspec_hf.simulate import simulate_survey
from galspec_hf.simulate.survey import IFU_MIN_RE_ARCSEC
from galspec_hf.training.args import build_parser as build_pretrain_parser

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
        "cutout_size": 104, "steps": 1800, "baseline_steps": 1000, "batch_size": 16, "learning_rate": 5e-4,
        "n_null_fibers": 1000, "fiber_continuum": "local",
    },
}  # fmt: skip


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------
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
        "fiber_diameter": [SPAXEL_EQUIVALENT_DIAMETER_ARCSEC] * n,
    }


def build_baseline_dataset(survey: Path, galaxies: list[dict], model_wavelength: np.ndarray, out: Path) -> int:
    """The supervised baseline's data set (every training cube's spaxels, :func:`cube_rows`) saved in `out`."""
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
#: The training fraction held out as *validation fibers* by examples/pretrain.py (its --validation_fraction):
#: the central-fiber check (:func:`galspec_hf.scoreboard.fiber_line_check`) runs on these.
VALIDATION_FRACTION = 0.05


def train(
    dataset: Path, output: Path, setting: dict, steps: int, seed: int, design: dict | None = None
) -> GalSpecForMaskedSpectra:
    """Pretrain on `dataset` with ``examples/pretrain.py`` in a fresh process; return the saved model.

    `design`: masking and loss options of the model (``--mask_mode_probabilities`` etc. of pretrain.py).
    """
    arguments = [
        "--dataset", str(dataset), "--preset", setting["preset"], "--max_steps", str(steps),
        "--per_device_batch_size", str(setting["batch_size"]), "--learning_rate", str(setting["learning_rate"]),
        "--warmup_steps", str(max(10, steps // 20)), "--output_dir", str(output), "--seed", str(seed),
        "--validation_fraction", str(VALIDATION_FRACTION), "--max_eval_samples", "64", "--max_shift_pixels", "4",
    ]  # fmt: skip
    for name, value in (design or {}).items():
        if isinstance(value, bool):  # a flag
            arguments += [f"--{name}"] if value else []
        else:
            arguments += [f"--{name}", *(str(v) for v in (value if isinstance(value, list) else [value]))]
    # a fresh process, as `accelerate launch examples/pretrain.py` would be: after the simulation's numpy/scipy
    # work in this process, training here ran several times slower (thread pools competing for the 2 cores)
    build_pretrain_parser().parse_args(arguments)  # check the arguments before starting the process
    subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "pretrain.py"), *arguments], check=True)
    return GalSpecForMaskedSpectra.from_pretrained(output).eval()


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------
def plot_maps(path: Path, line: str, panels: list[dict], note: str = "", set_name: str = "test") -> None:
    """One row per galaxy: truth | every model | log residual of one_fiber, on arcsec axes (east left).

    Grey: no value (outside the model image or the cube footprint, or no truth); black: a fit that failed
    (flux <= 0) on a spaxel that is scored. ``note`` (e.g. the quick setting's "smoke test") goes in the title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    columns = ("truth", *MODELS)
    n_columns = len(columns) + 1
    figure, axes = plt.subplots(len(panels), n_columns, figsize=(3.5 * n_columns, 3.6 * len(panels)), squeeze=False,
                                layout="constrained")  # fmt: skip
    figure.suptitle(
        f"{line} flux maps, {set_name} set{f' ({note})' if note else ''}\ngrey: no value (outside the model image or "
        "cube footprint, no truth); black: fit failed (flux <= 0) on a scored spaxel; north up, east left",
        fontsize=11,
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
        for ax, key in zip(row[:-1], columns, strict=True):
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
        figure.colorbar(image, ax=row[:-1].tolist(), fraction=0.02, pad=0.01,
                        label=f"log10 {line}\n[1e-17 erg/s/cm2/spaxel]")  # fmt: skip
        with np.errstate(divide="ignore", invalid="ignore"):
            residual = np.log10(panel["one_fiber"] / truth)
        residual[~panel["good"]] = np.nan
        finite = residual[np.isfinite(residual)]
        limit = float(np.clip(np.percentile(np.abs(finite), 95), 0.3, 3.0)) if finite.size else 0.5
        residual_cmap = plt.get_cmap("coolwarm").copy()
        residual_cmap.set_bad("0.85")
        image = row[-1].imshow(residual, origin="lower", vmin=-limit, vmax=limit, cmap=residual_cmap, extent=extent)
        row[-1].set_title("log10(one fiber / truth), scored spaxels", fontsize=9)
        row[-1].set_xlabel("east offset (arcsec)", fontsize=8)
        row[-1].tick_params(labelsize=7)
        figure.colorbar(image, ax=row[-1], fraction=0.05, pad=0.01, label="dex")
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
def _score_line_text(name: str, r: dict) -> str:
    """One model's H-alpha scores as one line of the summary."""
    return (
        f"{name:11s}: r = {_format(r['ha_pearson_r'], '.3f')}, scatter {_format(r['ha_scatter_dex'], '.3f')}"
        f" dex, bias {_format(r['ha_bias_dex'], '+.3f')} dex, failed {_format(r['ha_failed_fraction'], '.3f')}"
        f"; line-flux coverage {_format(r['coverage_1sigma'], '.3f')} / {_format(r['coverage_2sigma'], '.3f')}"
    )


def _format(value, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


#: The one-fiber model's design options this script passes on to pretrain.py.
DESIGN_OPTIONS = ("mask_mode_probabilities", "spectrum_loss", "beta_nll_beta", "sigma_penalty_weight",
                  "line_window_weight", "readout_modulation", "readout_colours", "decoder_image_summary",
                  "decoder_photometry", "readout_photometry")  # fmt: skip
#: Setting keys that must match for --reuse_from to reuse an earlier run's survey, data sets and supervised model.
REUSED_SETTING_KEYS = ("n_galaxies", "n_train_cubes", "n_validation", "n_test", "preset", "cutout_size",
                       "baseline_steps", "batch_size", "learning_rate", "seed")  # fmt: skip


def reused_run(reuse_from: Path, setting: dict, seed: int) -> dict:
    """The earlier run's setting, checked against this one (ValueError naming the differing keys)."""
    metrics = reuse_from / "metrics.json"
    if not metrics.is_file():
        raise ValueError(f"--reuse_from {reuse_from}: no metrics.json there (not a finished run of this script)")
    earlier = json.loads(metrics.read_text())["setting"]
    wanted = {**setting, "seed": seed}
    differ = [key for key in REUSED_SETTING_KEYS if earlier.get(key) != wanted.get(key)]
    if differ:
        raise ValueError(
            f"--reuse_from {reuse_from}: its setting differs in {', '.join(differ)} "
            f"({', '.join(f'{k}={earlier.get(k)!r}' for k in differ)})"
        )
    return earlier


#: Where one_fiber's line-flux sigma is calibrated (:func:`galspec_hf.scoreboard.fit_sigma_calibration`):
#: ``validation`` fits on the validation set (its own coverage is then the target by construction) and applies that
#: to the test set; ``train_cubes`` fits on the supervised baseline's training cubes (IFU galaxies the one-fiber
#: model never saw a map of; their fibers are among its training fibers) and applies it to both sets.
SIGMA_CALIBRATION_SETS = ("validation", "train_cubes")


def fitted_sigma_calibration(metrics: dict, source: str = "this run") -> dict:
    """{line: calibration} of one_fiber's sigma as fitted in `metrics` (a metrics.json dict, its
    ``sigma_calibration_fit``); None for a line that had no common spaxels there (its sigma is the model's own)."""
    try:
        per_line = metrics["sigma_calibration_fit"]["per_line"]
        return {line: per_line[line]["calibration"] for line in LINES}
    except (KeyError, TypeError) as error:
        raise ValueError(f"{source}: no fitted sigma calibration (missing key {error})") from None


def run(
    output_dir: Path,
    setting: dict,
    seed: int,
    design: dict | None = None,
    sets: tuple[str, ...] = ("validation", "test"),
    reuse_from: Path | None = None,
    one_fiber_model: Path | None = None,
    conditioning: str = "residual",
    sigma_calibration_from: Path | None = None,
    sigma_calibration_set: str = "validation",
) -> dict:
    """The experiment. `sigma_calibration_set`: one of :data:`SIGMA_CALIBRATION_SETS`. `sigma_calibration_from`: an
    earlier run's metrics.json whose fitted calibration of one_fiber's sigma (:func:`fitted_sigma_calibration`) is
    applied instead of fitting one."""
    start = time.time()
    if sigma_calibration_set not in SIGMA_CALIBRATION_SETS:
        raise ValueError(
            f"`sigma_calibration_set` must be one of {SIGMA_CALIBRATION_SETS}, got {sigma_calibration_set!r}"
        )
    calibration_fit = None  # {"set", "n_galaxies", "per_line": {line: {"calibration": ...}}}
    if sigma_calibration_from is not None:
        earlier = json.loads(Path(sigma_calibration_from).read_text())
        fitted_sigma_calibration(earlier, str(sigma_calibration_from))
        calibration_fit = {**earlier["sigma_calibration_fit"], "from": str(sigma_calibration_from)}
    output_dir.mkdir(parents=True, exist_ok=True)
    source = reuse_from if reuse_from is not None else output_dir
    survey = source / "survey"
    n_ifu = setting["n_train_cubes"] + setting["n_validation"] + setting["n_test"]
    if reuse_from is None:
        log(f"simulating {setting['n_galaxies']} galaxies, {n_ifu} with IFU truth")
        simulate_survey(survey, setting["n_galaxies"], n_ifu=n_ifu, seed=seed, cutout_size=setting["cutout_size"])
    else:
        earlier = reused_run(reuse_from, setting, seed)
        log(f"reusing the survey, data sets and supervised model of {reuse_from}")
    truth = pq.read_table(survey / "truth.parquet").to_pylist()
    ifu = [row for row in truth if row["plateifu"]]
    sets_drawn = draw_evaluation_sets(ifu, setting["n_train_cubes"], setting["n_validation"], setting["n_test"],
                                      seed=seed, min_size_arcsec=IFU_MIN_RE_ARCSEC)  # fmt: skip
    heldout_ids = {int(g["targetid"]) for g in sets_drawn["validation"] + sets_drawn["test"]}

    fibers_all = source / "fibers_all"
    if reuse_from is None:
        log("building the one-fiber data set from the DESI-format files")
        build_desi_dataset(survey, fibers_all, image_size=setting["cutout_size"], overwrite=True, progress=False)
    all_fibers = datasets.load_from_disk(str(fibers_all))
    training_fibers = exclude_targets(all_fibers, heldout_ids)
    if reuse_from is None:
        training_fibers.save_to_disk(str(output_dir / "fibers_train"))
    log(f"{len(training_fibers)} training fibers ({len(all_fibers) - len(training_fibers)} held-out rows left out)")

    if one_fiber_model is None:
        one_fiber = train(source / "fibers_train", output_dir / "one_fiber_model", setting, setting["steps"], seed,
                          design)  # fmt: skip
    else:
        log(f"scoring the trained one-fiber model in {one_fiber_model} (no training)")
        one_fiber = GalSpecForMaskedSpectra.from_pretrained(one_fiber_model).eval()
    wave = one_fiber.galspec.wavelength.numpy().astype(np.float64)
    if reuse_from is None:
        log(f"building the supervised data set from {len(sets_drawn['train'])} training cubes")
        n_rows = build_baseline_dataset(survey, sets_drawn["train"], wave, output_dir / "cubes_train")
        log(f"{n_rows} spaxel rows")
        supervised = train(
            output_dir / "cubes_train", output_dir / "supervised_model", setting, setting["baseline_steps"], seed
        )
    else:
        n_rows = earlier["n_supervised_rows"]
        supervised = GalSpecForMaskedSpectra.from_pretrained(reuse_from / "supervised_model").eval()

    log("central-fiber check: the validation fibers' line fluxes predicted from their images, against the truth")
    # pretrain.py's own held-out split of the training fibers (same fraction and seed), never trained on
    validation_fibers = training_fibers.train_test_split(test_size=VALIDATION_FRACTION, seed=seed, shuffle=True)
    validation_rows = list(validation_fibers["test"].with_format("numpy"))
    truth_by_id = {int(row["targetid"]): row for row in truth}
    central_check = fiber_line_check(one_fiber, validation_rows, truth_by_id, setting["fiber_continuum"])
    # does the image-only continuum follow the image at all? (its colour against the observed one, same fibers)
    colour_check = continuum_colour_check(one_fiber, validation_rows)

    log("null baselines: line-to-light ratios fitted on the training fibers and the held-out galaxies' fibers")
    numpy_fibers = training_fibers.with_format("numpy")
    picked = np.random.default_rng(seed).permutation(len(numpy_fibers))[: setting["n_null_fibers"]]
    picked_rows = [numpy_fibers[int(i)] for i in sorted(picked)]
    survey_ratios = fiber_ratios(picked_rows, wave, one_fiber.config, setting["fiber_continuum"])
    # the colour nulls' relation: the same fibers' ratios against their g - r colours (scoreboard.COLOUR_NULLS)
    picked_colours = fiber_colours(picked_rows, one_fiber.config)
    colour_relation = {line: fit_colour_ratio_relation(picked_colours, r) for line, r in survey_ratios.items()}
    survey_ratio = {line: float(np.nanmedian(r)) if np.isfinite(r).any() else float("nan")
                    for line, r in survey_ratios.items()}  # fmt: skip
    # the fibers of every galaxy scored: the held-out ones, and the training cubes' when they calibrate sigma
    calibrate_on_train = sigma_calibration_set == "train_cubes" and calibration_fit is None
    scored_ids = heldout_ids | ({int(g["targetid"]) for g in sets_drawn["train"]} if calibrate_on_train else set())
    heldout_rows = [row for row in all_fibers.with_format("numpy") if int(row["targetid"]) in scored_ids]
    own = fiber_ratios(heldout_rows, wave, one_fiber.config, setting["fiber_continuum"]) if heldout_rows else {}
    own_ratio = {int(row["targetid"]): {line: float(own[line][i]) for line in LINES}
                 for i, row in enumerate(heldout_rows)}  # fmt: skip
    # the central-fiber check of the image-only nulls, on the same validation fibers as the network's
    central_nulls = fiber_null_check(validation_rows, truth_by_id, one_fiber.config, survey_ratio, colour_relation)
    own_colours = fiber_colours(heldout_rows, one_fiber.config)
    null_inputs = {"survey_ratio": survey_ratio, "own_ratio": own_ratio, "colour_relation": colour_relation,
                   "own_colour": {int(row["targetid"]): float(c) for row, c in zip(heldout_rows, own_colours,
                                                                                   strict=True)}}  # fmt: skip
    # the observed fiber each held-out galaxy's one_fiber prediction is conditioned on (its DESI row)
    observed_fibers = {int(row["targetid"]): row for row in heldout_rows}
    fiber_conditioning = None
    if conditioning != "encoder" and heldout_rows:
        log(f"{conditioning}: each held-out fiber's line fluxes predicted from its image, against the observed ones")
        predicted = predicted_fiber_line_fluxes(one_fiber, heldout_rows, setting["fiber_continuum"])
        predicted_ratio = fiber_ratios(heldout_rows, wave, one_fiber.config, setting["fiber_continuum"],
                                       fluxes=predicted)  # fmt: skip
        # observed / predicted ratio of the same fiber (its light cancels): the factor the anchor mode applies
        factors = fiber_anchor_factors(own, predicted_ratio)
        null_inputs["predicted_ratio"] = {
            int(row["targetid"]): {line: float(predicted_ratio[line][i]) for line in LINES}
            for i, row in enumerate(heldout_rows)
        }
        fiber_conditioning = {
            str(int(row["targetid"])): {line: {"observed_ratio": own_ratio[int(row["targetid"])][line],
                                               "predicted_ratio": float(predicted_ratio[line][i]),
                                               "anchor_factor": float(factors[line][i])} for line in LINES}
            for i, row in enumerate(heldout_rows) if int(row["targetid"]) in heldout_ids
        }  # fmt: skip

    models = {"image_only": one_fiber, "supervised": supervised}
    results: dict[str, dict] = {"central_fiber_check": {
        "set": f"validation fibers ({len(validation_rows)}: pretrain.py's held-out {VALIDATION_FRACTION:.0%})",
        "lines": central_check, "nulls": central_nulls, "continuum_colour": colour_check}}  # fmt: skip
    if calibrate_on_train:
        log(f"sigma calibration: one_fiber's maps of the {len(sets_drawn['train'])} training cubes")
        block = evaluate_set(survey, sets_drawn["train"], models, null_inputs, wave, observed_fibers=observed_fibers,
                             conditioning=conditioning, sigma_calibration="fit")[0]  # fmt: skip
        calibration_fit = {"set": "train_cubes", "n_galaxies": len(sets_drawn["train"]),
                           "per_line": block["sigma_calibration"]["per_line"]}  # fmt: skip
    for set_name in sets:
        log(f"{set_name} set: predicting cubes for {len(sets_drawn[set_name])} galaxies and fitting emission lines")
        # one_fiber's line-flux sigma: fitted here on the validation set, or applied as fitted elsewhere
        if calibration_fit is None and set_name == "validation":
            sigma_calibration = "fit"
        elif calibration_fit is not None:
            sigma_calibration = {line: calibration_fit["per_line"][line]["calibration"] for line in LINES}
        else:
            sigma_calibration = None  # a test set alone, validation-set calibration and no earlier fit: own sigma
        results[set_name], panels, curves = evaluate_set(survey, sets_drawn[set_name], models, null_inputs, wave,
                                                         observed_fibers=observed_fibers, conditioning=conditioning,
                                                         sigma_calibration=sigma_calibration)  # fmt: skip
        results[set_name]["set"] = set_name
        if calibration_fit is None and set_name == "validation":
            calibration_fit = {"set": "validation", "n_galaxies": len(sets_drawn["validation"]),
                               "per_line": results["validation"]["sigma_calibration"]["per_line"]}  # fmt: skip
        if set_name == sets[-1]:
            for line in LINES:
                plot_maps(output_dir / f"maps_{line}.png", line, panels[line], note=setting.get("note", ""),
                          set_name=set_name)  # fmt: skip
            plot_calibration(output_dir / "calibration.png", curves)
    results["null_survey_ratio"] = {
        "per_line": survey_ratio,
        "n_fibers": int(len(picked)),
        "unit": "line flux (1e-17 erg/s/cm2) per nanomaggy of r-band image light in the fiber aperture",
    }
    results["null_colour_relation"] = {
        "per_line": colour_relation,
        "colour": "-".join(COLOUR_BANDS),
        "n_fibers": int(len(picked)),
        "meaning": "median line-to-light ratio of the null_light fibers in bins of equal counts of their colour "
        "(AB mag, image light in the fiber aperture), linear between bin centres "
        "(scoreboard.fit_colour_ratio_relation)",
    }
    results["setting"] = {
        **setting,
        "seed": seed,
        "design": design or {},
        "conditioning": conditioning,
        "sets": list(sets),
        "reused_from": str(reuse_from) if reuse_from is not None else None,
        "one_fiber_model": str(one_fiber_model) if one_fiber_model is not None else None,
        "sigma_calibration_from": str(sigma_calibration_from) if sigma_calibration_from is not None else None,
        "sigma_calibration_set": sigma_calibration_set,
        "n_training_fibers": len(training_fibers),
        "n_supervised_rows": n_rows,
        "train_cubes": [g["plateifu"] for g in sets_drawn["train"]],
    }
    if calibration_fit is not None:
        results["sigma_calibration_fit"] = calibration_fit
    if fiber_conditioning is not None:
        results["fiber_conditioning"] = {
            "per_galaxy": fiber_conditioning,
            "meaning": "each held-out galaxy's own fiber: line-to-light ratio fitted on the observed spectrum and on "
            "the image-only prediction at that fiber, and their quotient (observed / predicted line flux, the anchor "
            "factor); see scoreboard.CONDITIONING_MODES",
        }
    results["wall_seconds"] = time.time() - start
    write_metrics_json(output_dir / "metrics.json", results)
    lines = [f"{setting['note']}: the numbers below show the pipeline runs, not what the method can do"] if (
        setting.get("note")) else []  # fmt: skip
    check = central_check["Halpha"]
    lines.append(
        f"central-fiber check, H-alpha on {check['num_fibers']} validation fibers (image only): bias "
        f"{_format(check['bias_dex'], '+.3f')} dex, scatter {_format(check['scatter_dex'], '.3f')} dex, r "
        f"{_format(check['pearson_r'], '.3f')}"
    )
    lines.append(
        f"  its continuum colour (rest {CONTINUUM_COLOUR_BLUE_A} / {CONTINUUM_COLOUR_RED_A} A) against the observed: "
        f"r {_format(colour_check['pearson_r'], '.3f')}, spread predicted / observed "
        f"{_format(colour_check['spread_ratio'], '.3f')} ({colour_check['num_fibers']} fibers)"
    )
    for name, by_line in central_nulls.items():
        null = by_line["Halpha"]
        lines.append(f"  {name} on the same fibers: bias {_format(null['bias_dex'], '+.3f')} dex, scatter "
                     f"{_format(null['scatter_dex'], '.3f')} dex, r {_format(null['pearson_r'], '.3f')}")  # fmt: skip
    for set_name in sets:
        models_out = results[set_name]["models"]
        n, classes = results[set_name]["n_galaxies"], results[set_name]["classes"]
        lines.append(
            f"{set_name} set ({n} galaxies, {classes}): H-alpha over {models_out['one_fiber']['ha_num_spaxels']}"
            f" common spaxels of {models_out['one_fiber']['ha_num_galaxies']} galaxies (truth S/N > 3, footprint,"
            " image)"
        )
        for name in MODELS:
            lines.append("  " + _score_line_text(name, models_out[name]))
        for key, title in (("fiber_claim", "the one-fiber claim alone (one_fiber and the nulls positive)"),
                           ("colour_nulls", "with the colour nulls (image colour too; all five positive)")):
            block = results[set_name].get(key)
            if block is not None:
                first = block["models"]["one_fiber"]
                lines.append(f"  {title}: {first['ha_num_spaxels']} spaxels of {first['ha_num_galaxies']} galaxies")
                lines.extend("    " + _score_line_text(name, block["models"][name]) for name in block["models"])
        before = results[set_name]["sigma_calibration"]["per_line"]["Halpha"]
        fit = results.get("sigma_calibration_fit")
        if before["fitted_on_this_set"]:
            how = "fitted on this set"
        elif fit is not None:
            how = f"fitted on {fit['set']}" + (", none for H-alpha: no common spaxels there"
                                              if before["calibration"] is None else "")  # fmt: skip
        else:
            how = "none: the model's own sigma"
        lines.append(
            f"  one_fiber's H-alpha coverage with its own sigma, before the calibration ({how}): "
            f"{_format(before['coverage_1sigma_uncalibrated'], '.3f')} / "
            f"{_format(before['coverage_2sigma_uncalibrated'], '.3f')}"
        )
    lines.append(
        f"wrote metrics.json, maps_*.png and calibration.png in {output_dir} ({results['wall_seconds']:.0f} s)"
    )
    lines.append(
        f"the one-fiber model (with its processor) is in {one_fiber_model or output_dir / 'one_fiber_model'}: "
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
    parser.add_argument(
        "--sets",
        nargs="+",
        default=["validation", "test"],
        choices=["validation", "test"],
        help="evaluation sets to score (choose designs on validation; the test set once per design)",
    )
    parser.add_argument("--reuse_from", default=None,
                        help="an earlier run's output_dir with the same setting and seed: reuse its survey, data sets "
                             "and supervised model, train only the one-fiber model")  # fmt: skip
    parser.add_argument("--one_fiber_model", default=None,
                        help="score this trained one-fiber model (a from_pretrained folder) instead of training one; "
                             "needs --reuse_from")  # fmt: skip
    design = parser.add_argument_group("design of the one-fiber model (pretrain.py's masking and loss options)")
    design.add_argument("--mask_mode_probabilities", type=float, nargs=3, default=None,
                        metavar=("RANDOM", "CHUNK", "FULL"))  # fmt: skip
    design.add_argument("--spectrum_loss", choices=["gaussian", "beta_nll"], default=None)
    design.add_argument("--beta_nll_beta", type=float, default=None)
    design.add_argument("--sigma_penalty_weight", type=float, default=None)
    design.add_argument("--line_window_weight", type=float, default=None)
    design.add_argument("--readout_modulation", action="store_true", default=None)
    design.add_argument("--readout_colours", action="store_true", default=None)
    design.add_argument("--decoder_image_summary", action="store_true", default=None)
    design.add_argument("--decoder_photometry", action="store_true", default=None)
    design.add_argument("--readout_photometry", action="store_true", default=None)
    design.add_argument("--conditioning", choices=list(CONDITIONING_MODES), default="residual",
                        help="how one_fiber uses the galaxy's observed fiber: the encoder sees it (encoder); the "
                             "image-only maps times the fiber's observed / predicted line flux (anchor); the "
                             "image-only maps plus the fiber's line-to-light residual times the light (residual, the "
                             "default: chosen on the validation set, docs/RESULTS.md)")
    parser.add_argument("--sigma_calibration_set", choices=SIGMA_CALIBRATION_SETS, default="validation",
                        help="where one_fiber's line-flux sigma is calibrated: the validation set (default) or the "
                             "supervised baseline's training cubes")  # fmt: skip
    parser.add_argument("--sigma_calibration_from", default=None,
                        help="an earlier run's metrics.json: apply the sigma calibration fitted there instead of "
                             "fitting one (e.g. for --sets test)")  # fmt: skip
    args = parser.parse_args(argv)
    setting = dict(SETTINGS["quick" if args.quick else "default"])
    if args.steps is not None:
        setting["steps"] = args.steps
    if args.baseline_steps is not None:
        setting["baseline_steps"] = args.baseline_steps
    chosen = {name: getattr(args, name) for name in DESIGN_OPTIONS if getattr(args, name) is not None}
    design = {**setting.pop("design", {}), **chosen}
    torch.manual_seed(args.seed)
    reuse_from = Path(args.reuse_from) if args.reuse_from else None
    if args.one_fiber_model and reuse_from is None:
        parser.error("--one_fiber_model needs --reuse_from (the run whose survey the model was trained on)")
    if args.one_fiber_model and not (Path(args.one_fiber_model) / "config.json").is_file():
        parser.error(f"--one_fiber_model {args.one_fiber_model}: no config.json there (not a from_pretrained folder)")
    if reuse_from is not None:
        try:
            reused_run(reuse_from, setting, args.seed)  # checked before any work
        except ValueError as error:
            parser.error(str(error))
    one_fiber_model = Path(args.one_fiber_model) if args.one_fiber_model else None
    calibration_path = Path(args.sigma_calibration_from) if args.sigma_calibration_from else None
    if calibration_path is not None:
        try:  # checked before any work
            fitted_sigma_calibration(json.loads(calibration_path.read_text()), str(calibration_path))
        except (OSError, ValueError) as error:
            parser.error(f"--sigma_calibration_from: {error}")
    run(Path(args.output_dir), setting, args.seed, design=design, sets=tuple(args.sets), reuse_from=reuse_from,
        one_fiber_model=one_fiber_model, conditioning=args.conditioning,
        sigma_calibration_from=calibration_path, sigma_calibration_set=args.sigma_calibration_set)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
