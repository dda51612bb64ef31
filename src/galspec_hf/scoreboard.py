"""Like-for-like scoring of predicted emission-line maps against IFU truth, with null baselines.

The end-to-end experiment (examples/ifu_from_one_fiber.py) predicts line maps for held-out IFU galaxies
with several models and scores them here, every model on the same spaxels:

- :func:`draw_evaluation_sets`: IFU galaxies shuffled with a seed and split into training cubes, a
  validation set (to choose designs) and a test set (the final table), star-forming and quiescent
  galaxies spread over every set; :func:`exclude_targets` keeps held-out galaxies out of training.
- :func:`spaxel_selection`: truth S/N > 3, inside the cube footprint, inside the model image.
- :func:`score_models`: per model, r / scatter / bias over the spaxels where *every* model has a positive
  flux (the count is the same for all models), the failed fraction over the selected spaxels, line-flux
  z-score coverage where a model predicts sigma, per class and per-galaxy medians.
- :func:`smooth_nan_aware`: normalised Gaussian smoothing (data x valid and valid convolved, then divided),
  no zero padding.
- :func:`line_to_light_ratio` and :func:`null_line_map`: the null baselines (one line-to-light ratio x the
  image light under each spaxel).
- :func:`write_metrics_json`: strict JSON, NaN written as null.

The experiment's evaluation of one set is here too: :func:`evaluate_set` reads each galaxy's truth cube, MAPS and
cutout, predicts spectra at its spaxels (:func:`spaxel_offsets_from_cutout`, :func:`predicted_cube`), fits the
line maps (:func:`fit_maps`), smooths image-resolution maps to MaNGA's PSF (:func:`smooth_to_manga_psf`), builds
the nulls from fiber line-to-light ratios (:func:`fiber_ratios`) and scores everything with :func:`score_line`
and :func:`spectrum_coverages`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from galspec_hf.constants import (
    CONTINUUM_COLOUR_BLUE_A,
    CONTINUUM_COLOUR_RED_A,
    DAP_CHANNEL_NAMES,
    FWHM_PER_SIGMA,
    MANGA_PSF_FWHM_ARCSEC,
    MANGA_SPAXEL_ARCSEC,
    TOPHAT_FWHM_PER_DIAMETER,
)
from galspec_hf.metrics import coverage_curve, log_ratio_statistics
from galspec_hf.spectral import desi_sigma_kms
from galspec_hf.strict_json import to_strict_json, write_strict_json  # noqa: F401  (to_strict_json re-exported)

#: The colour of the colour nulls (:func:`colour_null_maps`): g - r, a standard proxy of a stellar population's age
#: and specific star formation (e.g. Strateva et al. 2001, AJ 122, 1861), measured in the same aperture as the light.
COLOUR_BANDS = ("g", "r")
#: Colour bins of equal counts in the colour null's relation: 1000 fibers give 100 a bin, a median to ~0.1 dex.
COLOUR_RELATION_BINS = 10
# Short metric prefixes of the compared lines, used in metrics.json keys (``ha_pearson_r``, ``nii_...``).
LINE_PREFIXES = {"Halpha": "ha", "NII_6585": "nii", "Hbeta": "hb", "OIII_5008": "oiii"}
# The two classes scored separately; from the truth table's boolean `star_forming` column.
CLASSES = ("star_forming", "quiescent")


# ----------------------------------------------------------------------------------------
# Evaluation sets
# ----------------------------------------------------------------------------------------
def draw_evaluation_sets(
    galaxies: list[dict],
    n_train: int,
    n_validation: int,
    n_test: int,
    seed: int,
    min_size_arcsec: float = 0.0,
    size_key: str = "disk_re_arcsec",
    class_key: str = "star_forming",
) -> dict[str, list[dict]]:
    """Split IFU galaxies at random (seeded) into ``train``, ``validation`` and ``test``.

    Parameters
    ----------
    galaxies : list of dict
        Truth rows of the IFU galaxies (each with `size_key` in arcsec and a boolean `class_key`).
    n_train, n_validation, n_test : int
        Set sizes; their sum must not exceed the galaxies above the size floor.
    seed : int
        Seed of the shuffle (numpy default_rng).
    min_size_arcsec : float, default 0
        Galaxies with `size_key` below this are not drawn.

    The galaxies above the floor are shuffled; the validation and test sets are then filled class by class
    in turn (star-forming, quiescent, star-forming, ...) from the shuffled order, so each gets both classes
    whenever both exist and it has >= 2 galaxies; the training cubes are the rest of the shuffled order.
    """
    for name, value in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)):
        if value < 0:
            raise ValueError(f"`{name}` must be >= 0, got {value}")
    eligible = [g for g in galaxies if float(g[size_key]) >= min_size_arcsec]
    if n_train + n_validation + n_test > len(eligible):
        raise ValueError(
            f"n_train + n_validation + n_test = {n_train + n_validation + n_test} exceeds the {len(eligible)} "
            f"galaxies with {size_key} >= {min_size_arcsec}"
        )
    order = [eligible[i] for i in np.random.default_rng(seed).permutation(len(eligible))]
    pools = {True: [g for g in order if bool(g[class_key])], False: [g for g in order if not bool(g[class_key])]}
    sets: dict[str, list[dict]] = {"validation": [], "test": []}
    for name, size in (("validation", n_validation), ("test", n_test)):
        turn = True
        while len(sets[name]) < size:
            pool = pools[turn] if pools[turn] else pools[not turn]
            sets[name].append(pool.pop(0))
            turn = not turn
    held = {id(g) for g in sets["validation"] + sets["test"]}
    sets["train"] = [g for g in order if id(g) not in held][:n_train]
    return sets


def exclude_targets(dataset, targetids) -> object:
    """A `datasets.Dataset` without the rows whose ``targetid`` is in `targetids` (held-out galaxies)."""
    excluded = {int(t) for t in targetids}
    return dataset.filter(lambda row: int(row["targetid"]) not in excluded)


# ----------------------------------------------------------------------------------------
# Maps
# ----------------------------------------------------------------------------------------
def smooth_nan_aware(flux_map: np.ndarray, sigma_pixels: float) -> np.ndarray:
    """Gaussian smoothing that ignores non-finite spaxels and does not pad with zeros, (ny, nx) -> (ny, nx).

    gaussian(data x valid) / gaussian(valid), both with zeros outside the map: every output is a weighted mean
    of valid input spaxels only, so a constant map stays constant up to its edges. Spaxels with no valid
    neighbour within the kernel, and spaxels that were not valid, are NaN.
    """
    flux_map = np.asarray(flux_map, dtype=np.float64)
    valid = np.isfinite(flux_map)
    if sigma_pixels <= 0:
        return np.where(valid, flux_map, np.nan)
    numerator = gaussian_filter(np.where(valid, flux_map, 0.0), sigma_pixels, mode="constant")
    denominator = gaussian_filter(valid.astype(np.float64), sigma_pixels, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = numerator / denominator
    return np.where(valid & (denominator > 1e-6), smoothed, np.nan)


def inside_image(offsets_arcsec: np.ndarray, image_size: int, pixel_scale: float, margin_arcsec: float = 0.0):
    """True where a sky offset (..., 2) arcsec lies inside a centred square image, `margin_arcsec` from its edge."""
    half = image_size * pixel_scale / 2.0 - margin_arcsec
    offsets_arcsec = np.asarray(offsets_arcsec, dtype=np.float64)
    return (np.abs(offsets_arcsec[..., 0]) <= half) & (np.abs(offsets_arcsec[..., 1]) <= half)


def cube_footprint(ivar: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Spaxels of a (L, ny, nx) cube with at least one unmasked pixel of positive ivar: (ny, nx) bool."""
    good = np.isfinite(ivar) & (ivar > 0)
    if mask is not None:
        good &= mask == 0
    return good.any(axis=0)


def spaxel_selection(truth, truth_ivar, footprint, in_image, min_snr: float = 3.0) -> np.ndarray:
    """The spaxels every model is scored on: truth * sqrt(truth_ivar) > min_snr, in the footprint and the image."""
    truth = np.asarray(truth, dtype=np.float64)
    truth_ivar = np.asarray(truth_ivar, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        snr = truth * np.sqrt(np.clip(np.nan_to_num(truth_ivar, nan=0.0), 0, None))
        return np.isfinite(truth) & (truth > 0) & (snr > min_snr) & np.asarray(footprint) & np.asarray(in_image)


def per_spaxel_scale(fiber_diameter_arcsec: float, spaxel_arcsec: float) -> float:
    """Spaxel area over a circular fiber's area: turns a fiber's spectrum into the flux of one spaxel of the
    same surface brightness (square spaxel of side `spaxel_arcsec`, fiber of diameter `fiber_diameter_arcsec`)."""
    if fiber_diameter_arcsec <= 0 or spaxel_arcsec <= 0:
        raise ValueError(
            f"`fiber_diameter_arcsec` ({fiber_diameter_arcsec}) and `spaxel_arcsec` ({spaxel_arcsec}) must be > 0"
        )
    return spaxel_arcsec**2 / (math.pi * fiber_diameter_arcsec**2 / 4.0)


def line_to_light_ratio(line_flux, light) -> np.ndarray:
    """Line flux over the image light in the same aperture; NaN where the flux is not finite or the light is not
    finite and positive. A fitted flux <= 0 (no line detected) is kept as it is, so a median over many fibers is
    not biased upwards by dropping them; a null map from a ratio <= 0 is non-positive, i.e. a failure."""
    line_flux = np.asarray(line_flux, dtype=np.float64)
    light = np.asarray(light, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = line_flux / light
    return np.where(np.isfinite(ratio) & np.isfinite(light) & (light > 0), ratio, np.nan)


def null_line_map(ratio: float, light_map: np.ndarray) -> np.ndarray:
    """A null line map: one line-to-light `ratio` times the image light under each spaxel (NaN ratio -> NaN map)."""
    return float(ratio) * np.asarray(light_map, dtype=np.float64)


def image_light(
    image: np.ndarray,
    offsets_arcsec: np.ndarray,
    diameter_arcsec: float,
    config,
    pixel_scale: float | None = None,
    batch_size: int = 256,
    band: str | None = None,
) -> np.ndarray:
    """Image light (nanomaggies) in circular apertures at sky offsets, with the model's own aperture helpers.

    Parameters
    ----------
    image : array (bands, H, W), nanomaggies per pixel, centred on the offsets' origin
    offsets_arcsec : array (..., 2), arcsec east/north of the image centre
    diameter_arcsec : float, the aperture diameter
    config : GalSpecConfig; its `bands` name the image planes, `normalization_band` is the band measured unless
        `band` is given, `pixel_scale` the scale (unless `pixel_scale` is given). The aperture-flux floor is not
        applied: the light is the plain sum of `fiber_aperture_weights` x the band image, so a faint spaxel is not
        lifted to the floor.
    band : str, optional, one of `config.bands` (default: `config.normalization_band`)

    Returns an array of shape (...).
    """
    import torch

    from galspec_hf.models.galspec.processing_galspec import aperture_light, band_image

    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != image.shape[-2]:
        raise ValueError(f"`image` must be (bands, H, H), got {image.shape}")
    scale = float(config.pixel_scale if pixel_scale is None else pixel_scale)
    plane = band_image(torch.from_numpy(image)[None], config, config.normalization_band if band is None else band)[0]
    offsets = np.asarray(offsets_arcsec, dtype=np.float32)
    light = aperture_light(plane, torch.from_numpy(offsets), diameter_arcsec, scale, batch_size)
    return light.numpy().reshape(offsets.shape[:-1])


def aperture_colour(blue_light, red_light) -> np.ndarray:
    """A colour in AB magnitudes, -2.5 log10(blue / red), of two lights in the same apertures (nanomaggies are AB
    fluxes, so the zero points cancel); NaN where either light is not finite and positive."""
    blue = np.asarray(blue_light, dtype=np.float64)
    red = np.asarray(red_light, dtype=np.float64)
    good = np.isfinite(blue) & np.isfinite(red) & (blue > 0) & (red > 0)
    return np.where(good, -2.5 * np.log10(np.where(good, blue, 1.0) / np.where(good, red, 1.0)), np.nan)


def fit_colour_ratio_relation(colours, ratios, num_bins: int = COLOUR_RELATION_BINS) -> dict:
    """The colour null's relation: the median line-to-light ratio in `num_bins` colour bins of equal counts.

    colours, ratios : (N,) fiber colours (:func:`aperture_colour`) and line-to-light ratios (:func:`fiber_ratios`);
        pairs with a non-finite member are left out (a ratio <= 0 stays, as for the survey median of ``null_light``).
    Returns ``{"colour_centres", "median_ratio", "num_fibers"}`` (lists, one per bin, the centre being the bin's
    median colour), or empty lists when fewer than `num_bins` pairs are usable.
    """
    if num_bins < 1:
        raise ValueError(f"`num_bins` must be >= 1, got {num_bins}")
    colours = np.asarray(colours, dtype=np.float64)
    ratios = np.asarray(ratios, dtype=np.float64)
    if colours.shape != ratios.shape:
        raise ValueError(f"`colours` {colours.shape} and `ratios` {ratios.shape} must have the same shape")
    usable = np.isfinite(colours) & np.isfinite(ratios)
    if usable.sum() < num_bins:
        return {"colour_centres": [], "median_ratio": [], "num_fibers": []}
    order = np.argsort(colours[usable], kind="stable")
    bins = np.array_split(order, num_bins)  # equal counts, in colour order
    colour, ratio = colours[usable], ratios[usable]
    return {"colour_centres": [float(np.median(colour[b])) for b in bins],
            "median_ratio": [float(np.median(ratio[b])) for b in bins],
            "num_fibers": [int(b.size) for b in bins]}  # fmt: skip


def colour_line_to_light_ratio(relation: dict, colour) -> np.ndarray:
    """The line-to-light ratio that a :func:`fit_colour_ratio_relation` relation gives at each `colour`: linear
    between bin centres, the end bins' values beyond them; NaN where the colour is NaN or the relation empty."""
    colour = np.asarray(colour, dtype=np.float64)
    centres, medians = relation["colour_centres"], relation["median_ratio"]
    if not centres:
        return np.full(colour.shape, np.nan)
    return np.where(np.isfinite(colour), np.interp(np.nan_to_num(colour), centres, medians), np.nan)


def colour_null_maps(relation: dict, own_ratio: float, fiber_colour: float, colour_map, light_map):
    """The two colour nulls of one line and galaxy, ``(null_colour, null_fiber_colour)`` maps like `light_map`.

    ``null_colour``: the relation's ratio at each spaxel's colour times its light (image alone: light and colour).
    ``null_fiber_colour``: the galaxy's own fiber ratio, moved by the relation from the fiber's colour to each
    spaxel's (x relation(spaxel) / relation(fiber)), times the light (image and fiber). NaN where the relation
    gives <= 0 at the fiber's colour (the quotient is then undefined) or the fiber ratio is NaN.
    """
    spaxel = colour_line_to_light_ratio(relation, colour_map)
    at_fiber = float(colour_line_to_light_ratio(relation, np.asarray(fiber_colour)))
    light_map = np.asarray(light_map, dtype=np.float64)
    null_colour = spaxel * light_map
    if not (np.isfinite(at_fiber) and at_fiber > 0 and np.isfinite(own_ratio)):
        return null_colour, np.full(light_map.shape, np.nan)
    return null_colour, float(own_ratio) * spaxel / at_fiber * light_map


def fit_fiber_line_fluxes(wavelength, flux, ivar, mask, redshift, lines, continuum: str = "template"):
    """Line fluxes (1e-17 erg/s/cm2) fitted on DESI fiber spectra (N, L) with the package's fitter: {line: (N,)}.

    ``continuum`` is passed to :func:`galspec_hf.analysis.fit_emission_lines` ("template": stellar templates first,
    the accurate choice for observed spectra; "local": a straight line per line complex, ~13x faster)."""
    from galspec_hf.analysis.lines import desi_instrumental_sigma_kms, fit_emission_lines

    flux = np.asarray(flux, dtype=np.float64)
    ivar = np.where(np.asarray(mask) != 0, 0.0, np.asarray(ivar, dtype=np.float64))
    maps = fit_emission_lines(
        np.asarray(wavelength, float), flux, ivar, np.asarray(redshift, float),
        instrumental_sigma_kms=desi_instrumental_sigma_kms(np.asarray(wavelength, float)), continuum=continuum,
    )  # fmt: skip
    return {line: np.asarray(maps.flux[line], dtype=np.float64) for line in lines}


# ----------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------
def _positive(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values > 0)


def common_spaxels(predictions: dict[str, list[np.ndarray]], selections: list[np.ndarray]) -> list[np.ndarray]:
    """Per galaxy, the (ny, nx) spaxels that are selected and where every model's map is finite and positive: the
    spaxels on which r, scatter, bias and coverage are computed."""
    common = []
    for g, selection in enumerate(selections):
        mask = np.asarray(selection, dtype=bool).copy()
        for maps in predictions.values():
            mask &= _positive(np.asarray(maps[g], dtype=np.float64))
        common.append(mask)
    return common


def stack_spaxels(maps: list[np.ndarray], masks: list[np.ndarray], galaxies=None) -> np.ndarray:
    """One flat float64 array of the per-galaxy `maps` where their `masks` are True, over `galaxies` (all by
    default), in galaxy order; empty when nothing is selected."""
    galaxies = range(len(maps)) if galaxies is None else galaxies
    return np.concatenate([np.asarray(maps[g], np.float64)[masks[g]] for g in galaxies] or [np.empty(0)])


def line_flux_coverage(predicted: np.ndarray, truth: np.ndarray, sigma: np.ndarray) -> dict:
    """``coverage_1sigma`` / ``coverage_2sigma``: the fraction of spaxels with |predicted - truth| <= 1 / 2 sigma,
    over the (N,) spaxels with a finite positive sigma (``num_sigma_spaxels``); None where there is none."""
    predicted, truth, sigma = (np.asarray(a, np.float64) for a in (predicted, truth, sigma))
    usable = np.isfinite(sigma) & (sigma > 0)
    z = (predicted[usable] - truth[usable]) / sigma[usable]
    return {"coverage_1sigma": float(np.mean(np.abs(z) <= 1.0)) if z.size else None,
            "coverage_2sigma": float(np.mean(np.abs(z) <= 2.0)) if z.size else None,
            "num_sigma_spaxels": int(z.size)}  # fmt: skip


def score_line(
    predictions: dict[str, list[np.ndarray]],
    truth_maps: list[np.ndarray],
    selections: list[np.ndarray],
    sigmas: dict[str, list[np.ndarray]] | None = None,
    classes: list[str] | None = None,
    fiber_distances: list[np.ndarray] | None = None,
) -> dict[str, dict]:
    """Score every model on the same spaxels of one line.

    Parameters
    ----------
    predictions : dict model name -> list of (ny, nx) maps, one per galaxy (line flux per spaxel)
    truth_maps : list of (ny, nx) truth maps
    selections : list of (ny, nx) bool, the spaxels to score (:func:`spaxel_selection`)
    sigmas : dict model name -> list of (ny, nx) predicted 1-sigma line-flux errors, optional
    classes : list of str per galaxy (one of :data:`CLASSES`), optional
    fiber_distances : list of (ny, nx) distances (arcsec) of each spaxel from the galaxy's observed fiber, optional:
        adds ``by_fiber_distance`` (the statistics over the common spaxels in each bin of
        :data:`FIBER_DISTANCE_BINS_ARCSEC`), which shows how far conditioning on the fiber carries

    Returns
    -------
    dict model name -> {``pearson_r``, ``scatter_dex``, ``bias_dex`` over the common spaxels (where every model
    is finite and positive), ``num_spaxels`` (their count, identical across models), ``num_galaxies`` (galaxies
    with at least one common spaxel), ``failed_fraction``
    (selected spaxels where this model is not finite and positive), ``num_selected``, ``coverage_1sigma`` /
    ``coverage_2sigma`` (fraction of common spaxels with |predicted - truth| <= 1 / 2 predicted sigma; None
    without sigma), ``per_class`` {class: the same statistics}, ``per_galaxy_median_pearson_r`` /
    ``..._scatter_dex`` / ``..._bias_dex`` (medians over galaxies with >= 3 common spaxels)}.
    """
    names = list(predictions)
    n_galaxies = len(truth_maps)
    for name in names:
        if len(predictions[name]) != n_galaxies:
            raise ValueError(f"predictions[{name!r}] has {len(predictions[name])} maps, expected {n_galaxies}")
    if len(selections) != n_galaxies:
        raise ValueError(f"`selections` has {len(selections)} maps, expected {n_galaxies}")
    sigmas = sigmas or {}
    common = common_spaxels(predictions, selections)

    def statistics(name: str, galaxies: list[int]) -> dict:
        selected = sum(int(np.asarray(selections[g]).sum()) for g in galaxies)
        failed = sum(
            int((np.asarray(selections[g], dtype=bool) & ~_positive(np.asarray(predictions[name][g], float))).sum())
            for g in galaxies
        )
        predicted = stack_spaxels(predictions[name], common, galaxies)
        truth = stack_spaxels(truth_maps, common, galaxies)
        out = log_ratio_statistics(predicted, truth)
        out.update(num_spaxels=int(predicted.size), num_selected=selected,
                   num_galaxies=sum(1 for g in galaxies if common[g].any()),
                   failed_fraction=failed / selected if selected else None)  # fmt: skip
        if name in sigmas:
            sigma = stack_spaxels(sigmas[name], common, galaxies)
            out.update(line_flux_coverage(predicted, truth, sigma))
        else:
            out["coverage_1sigma"] = out["coverage_2sigma"] = None
        return out

    results = {}
    for name in names:
        result = statistics(name, list(range(n_galaxies)))
        per_galaxy = [statistics(name, [g]) for g in range(n_galaxies)]
        for key in ("pearson_r", "scatter_dex", "bias_dex"):
            values = [p[key] for p in per_galaxy if p["num_spaxels"] >= 3 and np.isfinite(p[key])]
            result[f"per_galaxy_median_{key}"] = float(np.median(values)) if values else None
        result["per_galaxy"] = per_galaxy
        if classes is not None:
            result["per_class"] = {
                c: statistics(name, [g for g in range(n_galaxies) if classes[g] == c]) for c in CLASSES
            }
        if fiber_distances is not None:
            result["by_fiber_distance"] = []
            for low, high in zip(FIBER_DISTANCE_BINS_ARCSEC[:-1], FIBER_DISTANCE_BINS_ARCSEC[1:], strict=True):
                in_bin = [common[g] & (fiber_distances[g] >= low) & (fiber_distances[g] < high)
                          for g in range(n_galaxies)]  # fmt: skip
                predicted = stack_spaxels(predictions[name], in_bin)
                truth = stack_spaxels(truth_maps, in_bin)
                stats = log_ratio_statistics(predicted, truth)
                result["by_fiber_distance"].append({"min_arcsec": low, "max_arcsec": high,
                                                    "num_spaxels": int(predicted.size), **stats})  # fmt: skip
        results[name] = result
    return results


#: Edges (arcsec) of the bins of spaxel distance from the observed fiber in which ``by_fiber_distance`` is scored.
FIBER_DISTANCE_BINS_ARCSEC = (0.0, 1.5, 3.0, 5.0, 8.0, 100.0)


# ----------------------------------------------------------------------------------------
# Calibrated line-flux sigma
# ----------------------------------------------------------------------------------------
#: The 1-sigma coverage a Gaussian error gives (erf(1 / sqrt(2))), the target of :func:`fit_sigma_calibration`.
GAUSSIAN_COVERAGE_1SIGMA = math.erf(1.0 / math.sqrt(2.0))


def fit_sigma_calibration(
    predicted: np.ndarray,
    truth: np.ndarray,
    sigma: np.ndarray,
    fiber_distance_arcsec: np.ndarray,
    edges_arcsec: tuple[float, ...] = FIBER_DISTANCE_BINS_ARCSEC,
    target: float = GAUSSIAN_COVERAGE_1SIGMA,
    min_spaxels: int = 30,
) -> dict:
    """The fractional error term that makes predicted line-flux errors cover the truth, by distance from the fiber.

    A model's own sigma covers only what the network knows it does not know. Conditioned on one fiber, most of the
    error is the fiber's line-to-light ratio carried to places where the galaxy's ratio differs, which grows with
    the distance from the fiber. The calibrated error of a spaxel at distance d is
    ``sqrt(sigma**2 + (fraction(d) * predicted)**2)`` (:func:`apply_sigma_calibration`); in each distance bin,
    ``fraction`` is the smallest value for which a fraction `target` of the spaxels has
    ``|predicted - truth| <= calibrated sigma`` (split-conformal calibration: fit it on a validation set, score the
    coverage on another). A bin with fewer than `min_spaxels` spaxels takes the fraction fitted on all of them.

    Parameters
    ----------
    predicted, truth, sigma, fiber_distance_arcsec : (N,) line fluxes, the model's 1-sigma errors (same unit) and
        each spaxel's distance from the observed fiber (arcsec), over the spaxels to calibrate on (the common
        spaxels, :func:`common_spaxels`; every `predicted` positive)
    edges_arcsec : bin edges of the distance (arcsec)
    target : the 1-sigma coverage wanted (0.683 for a Gaussian)

    Returns
    -------
    {``edges_arcsec``, ``fraction`` (one per bin, dimensionless), ``num_spaxels`` per bin, ``fraction_all`` (fitted
    on every spaxel), ``target_coverage``}
    """
    arrays = [np.asarray(a, np.float64).ravel() for a in (predicted, truth, sigma, fiber_distance_arcsec)]
    if len({a.size for a in arrays}) != 1:
        raise ValueError(f"predicted, truth, sigma and fiber_distance_arcsec must have one size, got "
                         f"{[a.size for a in arrays]}")  # fmt: skip
    if not 0.0 < target < 1.0:
        raise ValueError(f"`target` must lie between 0 and 1, got {target}")
    predicted, truth, sigma, distance = arrays
    usable = _positive(predicted) & np.isfinite(truth) & np.isfinite(distance)
    sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, 0.0)
    # the fraction each spaxel needs to be covered: |p - t| <= sqrt(sigma^2 + (f p)^2)  <=>  f >= needed
    needed = np.sqrt(np.clip((predicted - truth) ** 2 - sigma**2, 0.0, None)) / np.where(usable, predicted, 1.0)
    if not usable.any():
        raise ValueError("fit_sigma_calibration: no spaxel with a positive prediction and a finite truth")
    fraction_all = float(np.quantile(needed[usable], target))
    fractions, counts = [], []
    for low, high in zip(edges_arcsec[:-1], edges_arcsec[1:], strict=True):
        in_bin = usable & (distance >= low) & (distance < high)
        counts.append(int(in_bin.sum()))
        fractions.append(float(np.quantile(needed[in_bin], target)) if in_bin.sum() >= min_spaxels else fraction_all)
    return {"edges_arcsec": [float(e) for e in edges_arcsec], "fraction": fractions, "num_spaxels": counts,
            "fraction_all": fraction_all, "target_coverage": float(target)}  # fmt: skip


def apply_sigma_calibration(
    sigma: np.ndarray, predicted: np.ndarray, fiber_distance_arcsec: np.ndarray, calibration: dict
) -> np.ndarray:
    """``sqrt(sigma**2 + (fraction(d) * |predicted|)**2)`` with the fractions of :func:`fit_sigma_calibration`;
    same shape as `sigma` (a non-finite sigma counts as 0; NaN where `predicted` is not finite)."""
    sigma = np.asarray(sigma, np.float64)
    predicted = np.asarray(predicted, np.float64)
    edges = np.asarray(calibration["edges_arcsec"], np.float64)
    fractions = np.asarray(calibration["fraction"], np.float64)
    # the distance's bin; beyond the last edge the last bin's fraction
    index = np.clip(np.searchsorted(edges, np.asarray(fiber_distance_arcsec, np.float64), side="right") - 1, 0,
                    fractions.size - 1)  # fmt: skip
    base = np.where(np.isfinite(sigma) & (sigma > 0), sigma, 0.0)
    return np.sqrt(base**2 + (fractions[index] * np.abs(predicted)) ** 2)


def flatten_line_scores(line_scores: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """{line: {model: stats}} -> {model: {"<prefix>_pearson_r": ..., ...}} with the metrics.json keys.

    Keys per line prefix p (:data:`LINE_PREFIXES`): p_pearson_r, p_scatter_dex, p_bias_dex, p_failed_fraction,
    p_num_spaxels, p_num_galaxies, p_coverage_1sigma, p_coverage_2sigma, p_per_galaxy_median_pearson_r (and
    _scatter_dex, _bias_dex), p_per_class, p_by_fiber_distance (when scored). H-alpha's line-flux coverage is also
    written as ``coverage_1sigma`` / ``coverage_2sigma`` (None for a model without sigma).
    """
    models: dict[str, dict] = {}
    for line, scores in line_scores.items():
        prefix = LINE_PREFIXES[line]
        for name, stats in scores.items():
            out = models.setdefault(name, {})
            for key in ("pearson_r", "scatter_dex", "bias_dex", "failed_fraction", "num_spaxels", "num_galaxies",
                        "coverage_1sigma", "coverage_2sigma", "per_galaxy_median_pearson_r",
                        "per_galaxy_median_scatter_dex", "per_galaxy_median_bias_dex"):  # fmt: skip
                out[f"{prefix}_{key}"] = stats.get(key)
            if "per_class" in stats:
                out[f"{prefix}_per_class"] = stats["per_class"]
            if "by_fiber_distance" in stats:
                out[f"{prefix}_by_fiber_distance"] = stats["by_fiber_distance"]
            if line == "Halpha":
                out["coverage_1sigma"] = stats.get("coverage_1sigma")
                out["coverage_2sigma"] = stats.get("coverage_2sigma")
                out["ha_per_galaxy"] = stats.get("per_galaxy")
    return models


# ----------------------------------------------------------------------------------------
# The experiment's evaluation: predicted cubes, line maps, smoothing, nulls, one set's scores
# ----------------------------------------------------------------------------------------
# The lines compared: our fit's names -> the DAP MAPS channel names of the truth files.
LINES = {name: DAP_CHANNEL_NAMES[name] for name in ("Halpha", "NII_6585", "Hbeta", "OIII_5008")}
# Equal-area diameter of a 0.5" spaxel, arcsec: the "fiber" of the supervised baseline's training rows.
SPAXEL_EQUIVALENT_DIAMETER_ARCSEC = 2 * MANGA_SPAXEL_ARCSEC / math.sqrt(math.pi)
# The compared models, in the order of the tables and figures, and their titles.
MODELS = ("one_fiber", "image_only", "supervised", "null_light", "null_fiber")
#: The models that predict spectra (the rest are line-to-light maps); one_fiber and image_only are the same
#: network, given the image and the galaxy's observed fiber spectrum, or the image alone.
NETWORK_MODELS = ("one_fiber", "image_only", "supervised")
#: The models of the one-fiber claim: ``one_fiber`` against the two nulls, scored (``fiber_claim`` in an evaluated
#: set) on the spaxels where these three are positive. ``image_only`` and ``supervised`` fail (non-positive line flux)
#: on whole galaxies, which removes those galaxies from the common spaxels of every model; this block keeps them.
FIBER_CLAIM_MODELS = ("one_fiber", "null_fiber", "null_light")
#: Two diagnostic nulls that use the image's colour as well as its light (:func:`colour_null_maps`): scored, when the
#: experiment fits their relation, with the fiber-claim models (``colour_nulls`` in an evaluated set). They ask
#: whether the information a model would need beyond the light is in the image's colours.
COLOUR_NULLS = ("null_colour", "null_fiber_colour")
MODEL_TITLES = {"one_fiber": "one fiber", "image_only": "image only", "supervised": "supervised",
                "null_light": "null light", "null_fiber": "null fiber", "null_colour": "null colour",
                "null_fiber_colour": "null fiber colour"}  # fmt: skip


def spaxel_offsets_from_cutout(cube, cutout) -> np.ndarray:
    """Sky offsets (ny, nx, 2) arcsec east/north of every spaxel from the cutout centre, through both WCSs."""
    ny, nx = cube.flux.shape[1:]
    y, x = np.mgrid[0:ny, 0:nx]
    world = cube.wcs.pixel_to_world(x, y)
    return cutout.sky_to_offset_arcsec(world.ra.deg, world.dec.deg)


def predicted_cube(
    model,
    cutout,
    redshift: float,
    offsets: np.ndarray,
    fiber_diameter: float,
    per_spaxel: float,
    where: np.ndarray,
    observed: dict | None = None,
):
    """Spectra at the spaxels `where` (ny, nx) of a truth grid, flux per spaxel (x `per_spaxel`): (wavelength (L,),
    mean (ny, nx, L), sigma (ny, nx, L)), NaN at the other spaxels (nothing there is scored, so none predicted).

    `observed`: the galaxy's observed fiber to condition on, ``{"flux", "ivar"}`` on the model grid (flux inside
    the fiber, 1e-17 erg/s/cm2/A), ``"fiber_offset"`` (2,) arcsec from the cutout centre and ``"fiber_diameter"``
    arcsec (a row of the DESI data set); None predicts from the image alone."""
    import torch

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
        **_observed_inputs(observed),
    )
    n_wave = prediction.mean.shape[-1]
    mean = np.full((*where.shape, n_wave), np.nan)
    sigma = np.full((*where.shape, n_wave), np.nan)
    mean[where] = prediction.mean[0].numpy() * per_spaxel
    sigma[where] = prediction.sigma[0].numpy() * per_spaxel
    return prediction.wavelength.numpy().astype(np.float64), mean, sigma


def _observed_inputs(observed: dict | None) -> dict:
    """predict_spectra's conditioning keywords for one galaxy's observed fiber (none when `observed` is None)."""
    import torch

    if observed is None:
        return {}

    def row(key):
        return torch.as_tensor(np.asarray(observed[key], dtype=np.float32))[None]

    return {
        "observed_spectrum": row("flux"),
        "observed_ivar": row("ivar"),
        "observed_fiber_offset": row("fiber_offset"),
        "observed_fiber_diameter": float(observed["fiber_diameter"]),
    }


def fit_maps(wavelength, mean, sigma, redshift, weighted: bool, where: np.ndarray) -> tuple[dict, dict | None]:
    """Line-flux maps (ny, nx) of a predicted cube, fitted at the spaxels `where` only (NaN elsewhere), and, for the
    sigma-weighted fit, their predicted 1-sigma errors.

    weighted=False: every pixel has the same weight (the model's sigma does not steer the fit); the errors are
    then not the model's and are returned as None. weighted=True: ivar = 1 / sigma_model^2 without rescaling,
    so ``flux_err`` is the model's own predicted sigma of the line flux. The fit's stellar continuum is the local
    one (a straight line per line complex): the same for every model, ~13x faster than the template fit.
    """
    from galspec_hf.analysis.lines import fit_emission_lines

    flux_in, sigma_in = mean[where], sigma[where]  # (S, L)
    ivar = 1.0 / np.clip(sigma_in, 1e-6, None) ** 2 if weighted else np.ones_like(flux_in)
    instrumental = desi_sigma_kms(wavelength)  # the model predicts DESI spectra: DESI's line-spread function
    maps = fit_emission_lines(
        wavelength,
        flux_in,
        ivar,
        redshift,
        instrumental_sigma_kms=instrumental,
        rescale_errors=not weighted,
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


def smooth_to_manga_psf(
    flux_map: np.ndarray, image_psf_fwhm_arcsec: float, aperture_diameter_arcsec: float
) -> np.ndarray:
    """NaN-aware smoothing of an image-resolution map (image seeing + a top-hat aperture) to MaNGA's 2.5" PSF."""
    effective = math.hypot(image_psf_fwhm_arcsec, TOPHAT_FWHM_PER_DIAMETER * aperture_diameter_arcsec)
    return smooth_nan_aware(flux_map, smoothing_sigma_spaxels(effective))


def galaxy_class(galaxy: dict) -> str:
    """``star_forming`` or ``quiescent``, from the simulator's truth column `star_forming` (its main-sequence
    draw); without that column, from the specific SFR: log SFR - log M* > -11 /yr is star-forming."""
    if "star_forming" in galaxy and galaxy["star_forming"] is not None:
        return "star_forming" if bool(galaxy["star_forming"]) else "quiescent"
    return "star_forming" if float(galaxy["log_sfr"]) - float(galaxy["log_mstar"]) > -11.0 else "quiescent"


def fiber_line_fluxes(rows, wavelength: np.ndarray, continuum: str) -> dict[str, np.ndarray]:
    """Line fluxes fitted on each fiber row's own observed spectrum ({line: (N,)}, 1e-17 erg/s/cm2 inside the
    fiber), with the row's mask and ivar."""
    flux = np.stack([np.asarray(r["flux"], np.float64) for r in rows])
    ivar = np.stack([np.asarray(r["ivar"], np.float64) for r in rows])
    mask = np.stack([np.asarray(r["mask"]) for r in rows])
    redshift = np.array([float(r["redshift"]) for r in rows])
    return fit_fiber_line_fluxes(wavelength, flux, ivar, mask, redshift, LINES, continuum=continuum)


def fiber_ratios(rows, wavelength: np.ndarray, config, continuum: str, fluxes: dict | None = None) -> dict:
    """Line-to-light ratio of each fiber row: the line fitted on its own spectrum (`fluxes` when already fitted by
    :func:`fiber_line_fluxes`) over the image light in its aperture ({line: (N,)}, 1e-17 erg/s/cm2 per
    nanomaggy)."""
    fluxes = fiber_line_fluxes(rows, wavelength, continuum) if fluxes is None else fluxes
    light = fiber_light(rows, config)
    return {line: line_to_light_ratio(fluxes[line], light) for line in LINES}


def fiber_light(rows, config, band: str | None = None) -> np.ndarray:
    """(N,) image light (nanomaggies) in each fiber row's own aperture (its image, offset, diameter and pixel scale),
    in `band` (default: the config's normalization band; :func:`image_light`)."""
    return np.array(
        [
            image_light(np.asarray(r["image"]), np.asarray(r["fiber_offset"])[None], float(r["fiber_diameter"]),
                        config, pixel_scale=float(r["pixel_scale"]), band=band)[0]
            for r in rows
        ]
    )  # fmt: skip


def fiber_colours(rows, config) -> np.ndarray:
    """(N,) :data:`COLOUR_BANDS` colour (AB mag) of the image light in each fiber row's own aperture."""
    return aperture_colour(*(fiber_light(rows, config, band=band) for band in COLOUR_BANDS))


def predicted_fiber_spectra(model, rows, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each fiber row's spectrum as the model predicts it from the image alone, at the row's own fiber position and
    diameter: (wavelength (L,) A, mean (N, L) 1e-17 erg/s/cm2/A, redshift (N,)).

    rows: DESI data-set rows (``image``, ``redshift``, ``fiber_offset``, ``fiber_diameter``; the cutout is cropped to
    the model's image)."""
    import torch

    from galspec_hf.sky import centred_crop

    config = model.config
    means, redshifts = [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        images = np.stack([centred_crop(np.asarray(r["image"], np.float32), config.image_size) for r in chunk])
        prediction = model.predict_spectra(
            torch.from_numpy(images),
            torch.tensor([float(r["redshift"]) for r in chunk], dtype=torch.float32),
            torch.tensor(np.stack([np.asarray(r["fiber_offset"], np.float32) for r in chunk]))[:, None],
            fiber_diameter=torch.tensor([float(r["fiber_diameter"]) for r in chunk]),
        )
        means.append(prediction.mean[:, 0].numpy().astype(np.float64))
        redshifts.extend(float(r["redshift"]) for r in chunk)
    wave = model.galspec.wavelength.numpy().astype(np.float64)
    return wave, np.concatenate(means), np.array(redshifts)


def predicted_fiber_line_fluxes(model, rows, continuum: str, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Each fiber row's line fluxes as the model predicts them from the image alone, at the row's own fiber position
    and diameter, fitted like the observed fibers ({line: (N,)}, 1e-17 erg/s/cm2 inside the fiber).

    rows: as :func:`predicted_fiber_spectra`. The prediction has no noise of its own: the fit uses unit weights."""
    wave, mean, redshift = predicted_fiber_spectra(model, rows, batch_size)
    return fit_fiber_line_fluxes(wave, mean, np.ones_like(mean), np.zeros(mean.shape, np.int32), redshift, LINES,
                                 continuum=continuum)  # fmt: skip


def continuum_colours(wavelength, flux, redshift, ivar=None) -> np.ndarray:
    """log10 of the mean flux density in :data:`~galspec_hf.constants.CONTINUUM_COLOUR_BLUE_A` over that in
    ``CONTINUUM_COLOUR_RED_A`` (rest frame) of each spectrum (N, L) at its redshift (N,); pixels with ivar <= 0 are
    left out when `ivar` is given. NaN where a window has no pixel or the ratio is not positive."""
    flux = np.asarray(flux, np.float64)
    usable = np.isfinite(flux) if ivar is None else np.isfinite(flux) & (np.asarray(ivar) > 0)
    rest = np.asarray(wavelength, np.float64)[None, :] / (1.0 + np.asarray(redshift, np.float64)[:, None])

    def window_mean(low_high):
        inside = usable & (rest > low_high[0]) & (rest < low_high[1])
        count = inside.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, np.where(inside, flux, 0.0).sum(axis=1) / count, np.nan)

    blue, red = window_mean(CONTINUUM_COLOUR_BLUE_A), window_mean(CONTINUUM_COLOUR_RED_A)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((blue > 0) & (red > 0), np.log10(blue / red), np.nan)


def continuum_colour_check(model, rows, batch_size: int = 32) -> dict:
    """Does the image-only prediction follow the image? The continuum colour (:func:`continuum_colours`) of each
    fiber's predicted spectrum against its observed one, over the rows (DESI data-set rows with ``flux`` and
    ``ivar`` on the model grid).

    Returns {``pearson_r``, ``spread_ratio`` (standard deviation over fibers, predicted / observed),
    ``predicted_spread_dex``, ``observed_spread_dex``, ``num_fibers``}. A model whose continuum does not depend on
    the image has a spread ratio near 0 whatever its r; one that follows the image, r and spread ratio near 1."""
    wave, mean, redshift = predicted_fiber_spectra(model, rows, batch_size)
    observed = np.stack([np.asarray(r["flux"], np.float64) for r in rows])
    ivar = np.stack([np.asarray(r["ivar"], np.float64) for r in rows])
    if observed.shape != mean.shape:
        raise ValueError(f"rows' flux has shape {observed.shape}, the model's prediction {mean.shape}")
    predicted, measured = continuum_colours(wave, mean, redshift), continuum_colours(wave, observed, redshift, ivar)
    both = np.isfinite(predicted) & np.isfinite(measured)
    if both.sum() < 3:
        return {"pearson_r": None, "spread_ratio": None, "predicted_spread_dex": None, "observed_spread_dex": None,
                "num_fibers": int(both.sum())}  # fmt: skip
    spread_predicted, spread_observed = float(np.std(predicted[both])), float(np.std(measured[both]))
    return {
        "pearson_r": float(np.corrcoef(predicted[both], measured[both])[0, 1]) if spread_predicted > 0 else None,
        "spread_ratio": spread_predicted / spread_observed if spread_observed > 0 else None,
        "predicted_spread_dex": spread_predicted,
        "observed_spread_dex": spread_observed,
        "num_fibers": int(both.sum()),
    }


def fiber_anchor_factors(observed: dict[str, np.ndarray], predicted: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per line, observed / predicted line flux of the same fiber ({line: (N,)}; NaN where either is not positive).

    The ``anchor`` conditioning: the image-only model gives a line's map its shape, the galaxy's observed fiber
    its level, so every spaxel of the map is multiplied by this factor. It is the network's counterpart of
    ``null_fiber`` (the fiber's ratio times the light): the two differ only in the shape of the map."""
    factors = {}
    for line in LINES:
        obs, pred = np.asarray(observed[line], np.float64), np.asarray(predicted[line], np.float64)
        usable = _positive(obs) & _positive(pred)
        factors[line] = np.where(usable, obs / np.where(usable, pred, 1.0), np.nan)
    return factors


def fiber_line_check(model, rows, truth_by_targetid: dict, continuum: str, batch_size: int = 32) -> dict:
    """The cheap check of the image-in, spectrum-out path: each fiber's line fluxes predicted from its image alone,
    at its own position and diameter, fitted like the nulls' fibers and compared with the simulator's truth.

    rows: DESI data-set rows (``image``, ``redshift``, ``fiber_offset``, ``fiber_diameter``, ``targetid``; the
    cutout is cropped to the model's image); truth_by_targetid: {targetid: truth row with
    ``line_flux_fiber_<line>``, 1e-17 erg/s/cm2 inside the fiber}. Returns {line: {pearson_r, bias_dex,
    scatter_dex over fibers where truth and prediction are positive, num_fibers, failed_fraction (predicted flux
    not positive where the truth is)}}.
    """
    return fiber_flux_statistics(predicted_fiber_line_fluxes(model, rows, continuum, batch_size), rows,
                                 truth_by_targetid)  # fmt: skip


def fiber_flux_statistics(predicted: dict[str, np.ndarray], rows, truth_by_targetid: dict) -> dict:
    """Predicted line fluxes inside each fiber ({line: (N,)}, 1e-17 erg/s/cm2) against the truth table's
    ``line_flux_fiber_<line>`` of each row's target: {line: {pearson_r, bias_dex, scatter_dex over fibers where truth
    and prediction are positive, num_fibers, failed_fraction (prediction not positive where the truth is)}}."""
    result = {}
    for line in LINES:
        truth = np.array([float(truth_by_targetid[int(r["targetid"])][f"line_flux_fiber_{line}"]) for r in rows])
        scored = _positive(truth)
        both = scored & _positive(predicted[line])
        statistics = log_ratio_statistics(predicted[line][both], truth[both])
        statistics.update(num_fibers=int(both.sum()),
                          failed_fraction=float(np.mean(~both[scored])) if scored.any() else None)  # fmt: skip
        result[line] = statistics
    return result


def fiber_null_check(rows, truth_by_targetid: dict, config, survey_ratio: dict, colour_relation: dict) -> dict:
    """The central-fiber check of the two image-only nulls, on the same fibers as :func:`fiber_line_check`: each
    fiber's line flux as ``null_light`` (the survey ratio x the image light in the fiber) and ``null_colour`` (the
    colour relation's ratio at the fiber's colour x that light) predict it, against the truth.
    Returns {"null_light": {line: statistics}, "null_colour": {...}} (:func:`fiber_flux_statistics`)."""
    light = fiber_light(rows, config)
    colour = fiber_colours(rows, config)
    predicted = {
        "null_light": {line: null_line_map(survey_ratio[line], light) for line in LINES},
        "null_colour": {line: colour_line_to_light_ratio(colour_relation[line], colour) * light for line in LINES},
    }
    return {name: fiber_flux_statistics(fluxes, rows, truth_by_targetid) for name, fluxes in predicted.items()}


def spectrum_coverages(observed, ivar, mean, sigma) -> dict:
    """Pixel coverage of predicted spectra: the fraction of observed pixels within 1 and 2 predicted sigma, and the
    curve over k = 0.25 ... 3 (``spectrum_coverage_1sigma``, ``_2sigma``, ``_curve`` as [[k, fraction], ...])."""
    levels = [float(k) for k in np.linspace(0.25, 3.0, 12)]
    one, two, *curve = coverage_curve(observed, ivar, mean, sigma, [1.0, 2.0, *levels])
    return {
        "spectrum_coverage_1sigma": one,
        "spectrum_coverage_2sigma": two,
        "spectrum_coverage_curve": [[k, fraction] for k, fraction in zip(levels, curve, strict=True)],
    }


def fiber_conditioned_maps(conditioning: str, maps: dict, weighted: tuple, own_ratio: dict, predicted_ratio: dict,
                           light: np.ndarray) -> tuple[dict, tuple]:  # fmt: skip
    """One galaxy's one_fiber maps made from its image-only maps at the line-map level (:data:`CONDITIONING_MODES`).

    maps : {line: (ny, nx)} image-only line fluxes per spaxel; weighted : ({line: map}, {line: sigma map}), the
    sigma-weighted fit and its errors; own_ratio / predicted_ratio : {line: ratio}, the fiber's observed and
    image-only predicted line-to-light ratios; light : (ny, nx) image light under each spaxel (nanomaggies), at the
    resolution of `maps`. Returns (maps, weighted) in the same layout; NaN where a line has no usable fiber value.
    """
    weighted_maps, weighted_sigmas = weighted
    if conditioning == "anchor":
        factors = fiber_anchor_factors(
            {line: np.array([own_ratio.get(line, np.nan)]) for line in LINES},
            {line: np.array([predicted_ratio.get(line, np.nan)]) for line in LINES},
        )
        factor = {line: float(factors[line][0]) for line in LINES}
        return ({line: maps[line] * factor[line] for line in LINES},
                ({line: weighted_maps[line] * factor[line] for line in LINES},
                 {line: weighted_sigmas[line] * factor[line] for line in LINES}))  # fmt: skip
    if conditioning == "residual":
        gap = {line: own_ratio.get(line, np.nan) - predicted_ratio.get(line, np.nan) for line in LINES}
        shifted = {line: weighted_maps[line] + gap[line] * light for line in LINES}
        return {line: maps[line] + gap[line] * light for line in LINES}, (shifted, dict(weighted_sigmas))
    raise ValueError(f"`conditioning` must be 'anchor' or 'residual' here, got {conditioning!r}")


#: How ``one_fiber`` uses the galaxy's observed fiber:
#:
#: - ``"encoder"``: the encoder sees the observed spectrum (the conditioning of
#:   :meth:`~galspec_hf.GalSpecForMaskedSpectra.predict_spectra`) and the cube is predicted from it;
#: - ``"anchor"``: the image-only map times the fiber's observed / predicted line flux (:func:`fiber_anchor_factors`):
#:   the network gives the shape, the fiber the level;
#: - ``"residual"``: the image-only map plus the fiber's line-to-light residual (observed - predicted ratio) times the
#:   image light under each spaxel: ``null_fiber`` plus the network's departure from its own light-scaled fiber
#:   prediction, so a network that knows nothing beyond the light gives back ``null_fiber``.
CONDITIONING_MODES = ("encoder", "anchor", "residual")


def evaluate_set(
    survey: Path,
    galaxies: list[dict],
    models: dict,
    null_inputs: dict,
    wave,
    observed_fibers: dict | None = None,
    conditioning: str = "encoder",
    sigma_calibration: dict | str | None = None,
) -> dict:
    """Maps, selections, scores and spectrum coverage of one evaluation set, every model on the same spaxels.

    Parameters
    ----------
    survey : Path, a folder written by :func:`galspec_hf.simulate.simulate_survey` (MaNGA-format truth in
        ``manga/``, Legacy cutouts)
    galaxies : list of truth rows (``plateifu``, ``targetid``, ``redshift``, ``psf_fwhm_r_arcsec``, ``cutout_file``,
        ``disk_re_arcsec``, ``star_forming``)
    models : {"image_only": the one-fiber model, "supervised": the model trained on spaxels}
    null_inputs : {"survey_ratio": {line: ratio}, "own_ratio": {targetid: {line: ratio}}} (:func:`fiber_ratios`), and
        for the anchor and residual conditioning ``"predicted_ratio"``: {targetid: {line: ratio}}, the line-to-light
        ratio of the image-only model's prediction at the galaxy's observed fiber (:func:`predicted_fiber_line_fluxes`
        through :func:`fiber_ratios`). Optional, for the :data:`COLOUR_NULLS`: ``"colour_relation"``: {line:
        :func:`fit_colour_ratio_relation`} and ``"own_colour"``: {targetid: the fiber's colour (:func:`fiber_colours`)}
    wave : the models' wavelength grid (A)
    observed_fibers : {targetid: the galaxy's DESI data-set row (flux, ivar, fiber_offset, fiber_diameter)}: the
        observed fiber that ``one_fiber`` is conditioned on (a galaxy without one gets no one_fiber map)
    conditioning : one of :data:`CONDITIONING_MODES`. With ``"anchor"`` or ``"residual"`` the one_fiber map is made
        from the image-only map at the line-map level (its sigma: the image-only sigma, times the factor for
        ``"anchor"``); there is then no one_fiber spectrum (its spectrum coverage is None)
    sigma_calibration : the calibration of one_fiber's line-flux sigma (:func:`fit_sigma_calibration`): ``"fit"``
        fits it on this set (a validation set: its coverage is then the target by construction), ``{line:
        calibration}`` applies one fitted on another set (a line missing or None: the model's own sigma), None scores
        the model's own sigma. Either way the result's
        ``sigma_calibration`` block holds, per line, the calibration used and the coverage before it

    For each galaxy, five maps per line of :data:`LINES` on its truth grid (:data:`MODELS`): ``one_fiber`` (the
    one-fiber model given the image and the galaxy's observed fiber) and ``image_only`` (the same model, image
    alone), both fitted without the model's sigma and smoothed to MaNGA's PSF, ``supervised``, ``null_light`` and
    ``null_fiber``; the sigma-weighted fits are scored too (``sigma_weighted_fits``). Returns (result, panels,
    curves): the set's metrics
    (``{"models": {...}, "sigma_weighted_fits", "galaxies", "n_galaxies", "classes"}``, the metrics.json block),
    up to three galaxies' maps per line for the figures, and the spectrum coverage curve per model title.
    """
    from galspec_hf.io import read_legacy_cutout, read_manga_cube, read_manga_maps
    from galspec_hf.models.galspec.processing_galspec import resample_spectrum

    if conditioning not in CONDITIONING_MODES:
        raise ValueError(f"`conditioning` must be one of {CONDITIONING_MODES}, got {conditioning!r}")
    if conditioning != "encoder" and "predicted_ratio" not in null_inputs:
        raise ValueError(f"conditioning={conditioning!r} needs null_inputs['predicted_ratio']")
    if not (sigma_calibration is None or sigma_calibration == "fit" or isinstance(sigma_calibration, dict)):
        raise ValueError(
            f"`sigma_calibration` must be None, 'fit' or {{line: calibration}}, got {sigma_calibration!r}"
        )
    one_fiber, supervised = models["image_only"], models["supervised"]
    config = one_fiber.config
    observed_fibers = observed_fibers or {}
    per_line = {
        line: {"maps": {m: [] for m in MODELS}, "weighted": {m: [] for m in NETWORK_MODELS},
               "sigma": {m: [] for m in NETWORK_MODELS}, "colour": {m: [] for m in COLOUR_NULLS}, "truth": [],
               "selection": []}
        for line in LINES
    }  # fmt: skip
    colour_relation = null_inputs.get("colour_relation")
    spectra = {m: {"obs": [], "ivar": [], "mean": [], "sigma": []} for m in NETWORK_MODELS}
    classes, records, panels, distances = [], [], {line: [] for line in LINES}, []
    for galaxy in galaxies:
        cube = read_manga_cube(survey / "manga" / f"manga-{galaxy['plateifu']}-LOGCUBE.fits.gz")
        maps = read_manga_maps(survey / "manga" / f"manga-{galaxy['plateifu']}-MAPS.fits.gz")
        cutout = read_legacy_cutout(survey / galaxy["cutout_file"])
        offsets = spaxel_offsets_from_cutout(cube, cutout)
        z, psf = float(galaxy["redshift"]), float(galaxy["psf_fwhm_r_arcsec"])
        footprint = cube_footprint(cube.ivar, cube.mask)
        # the model sees a config.image_size crop: a spaxel counts when its whole aperture lies inside it
        in_image = inside_image(
            offsets, config.image_size, cutout.pixel_scale_arcsec, SPAXEL_EQUIVALENT_DIAMETER_ARCSEC / 2
        )
        # only spaxels inside the model image and the cube footprint can be scored: predict and fit only those
        needed = in_image & footprint
        scale_1f = per_spaxel_scale(config.fiber_diameter, MANGA_SPAXEL_ARCSEC)
        observed = observed_fibers.get(int(galaxy["targetid"]))
        fiber_at = np.zeros(2) if observed is None else np.asarray(observed["fiber_offset"], np.float64)
        distances.append(np.hypot(*np.moveaxis(offsets - fiber_at, -1, 0)))  # (ny, nx) arcsec from the fiber
        cubes = {  # model -> (mean, sigma), (ny, nx, L) each; one_fiber only for a galaxy with its observed fiber
            "image_only": predicted_cube(one_fiber, cutout, z, offsets, config.fiber_diameter, scale_1f, needed)[1:],
            "supervised": predicted_cube(supervised, cutout, z, offsets, SPAXEL_EQUIVALENT_DIAMETER_ARCSEC, 1.0,
                                         needed)[1:],
        }  # fmt: skip
        if observed is not None and conditioning == "encoder":
            cubes["one_fiber"] = predicted_cube(one_fiber, cutout, z, offsets, config.fiber_diameter, scale_1f,
                                                needed, observed=observed)[1:]  # fmt: skip
        fits, weighted = {}, {}
        for name, (mean, sigma) in cubes.items():
            fits[name] = fit_maps(wave, mean, sigma, z, weighted=False, where=needed)[0]
            weighted[name] = fit_maps(wave, mean, sigma, z, weighted=True, where=needed)

        def spaxel_light(band, cutout=cutout, offsets=offsets, in_image=in_image, psf=psf):
            """The image light under each spaxel in `band`, smoothed to MaNGA's PSF (NaN outside the image)."""
            light = image_light(cutout.image, offsets, SPAXEL_EQUIVALENT_DIAMETER_ARCSEC, config,
                                pixel_scale=cutout.pixel_scale_arcsec, band=band)  # fmt: skip
            return smooth_to_manga_psf(np.where(in_image, light, np.nan), psf, SPAXEL_EQUIVALENT_DIAMETER_ARCSEC)

        # the light under each spaxel in the normalization band and, for the colour nulls, the colour's bands
        bands = (config.normalization_band, *(COLOUR_BANDS if colour_relation is not None else ()))
        lights = {band: spaxel_light(band) for band in dict.fromkeys(bands)}
        light_smoothed = lights[config.normalization_band]
        own_ratio = null_inputs["own_ratio"].get(int(galaxy["targetid"]), {})
        if colour_relation is not None:  # each spaxel's colour, from lights smoothed like the null's light
            colour_map = aperture_colour(*(lights[band] for band in COLOUR_BANDS))
            fiber_colour = null_inputs["own_colour"].get(int(galaxy["targetid"]), np.nan)
        if conditioning != "encoder" and observed is not None:
            # one_fiber from the image-only maps and the galaxy's fiber, line by line (NaN: no usable fiber value)
            predicted_ratio = null_inputs["predicted_ratio"].get(int(galaxy["targetid"]), {})
            # the light at the image-only maps' resolution and unit: the model's fiber aperture, per spaxel
            light_1f = scale_1f * image_light(cutout.image, offsets, config.fiber_diameter, config,
                                              pixel_scale=cutout.pixel_scale_arcsec)  # fmt: skip
            fits["one_fiber"], weighted["one_fiber"] = fiber_conditioned_maps(
                conditioning, fits["image_only"], weighted["image_only"], own_ratio, predicted_ratio, light_1f
            )

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
            for name in NETWORK_MODELS:
                # image-resolution maps (the one-fiber model's) are smoothed to MaNGA's PSF; the supervised model
                # learnt MaNGA-resolution spaxels. Smoothing averages neighbouring spaxels; their errors are taken
                # as fully correlated (conservative). A model without a cube here (no observed fiber) gets NaN.
                smooth = (lambda m: m) if name == "supervised" else smooth_1f
                if name in fits:
                    flux_map, (weighted_map, weighted_sigma) = fits[name][line], weighted[name]
                    weighted_map, weighted_sigma = weighted_map[line], weighted_sigma[line]
                else:
                    flux_map = weighted_map = weighted_sigma = np.full(truth_map.shape, np.nan)
                data["maps"][name].append(smooth(flux_map))
                data["weighted"][name].append(smooth(weighted_map))
                data["sigma"][name].append(smooth(weighted_sigma))
            data["maps"]["null_light"].append(null_line_map(null_inputs["survey_ratio"][line], light_smoothed))
            data["maps"]["null_fiber"].append(null_line_map(own_ratio.get(line, np.nan), light_smoothed))
            if colour_relation is not None:
                for name, flux_map in zip(COLOUR_NULLS, colour_null_maps(colour_relation[line], own_ratio.get(
                        line, np.nan), fiber_colour, colour_map, light_smoothed), strict=True):  # fmt: skip
                    data["colour"][name].append(flux_map)
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
            for name, (mean, sigma) in cubes.items():
                spectra[name]["obs"].append(obs)
                spectra[name]["ivar"].append(obs_ivar)
                spectra[name]["mean"].append(mean[chosen])
                spectra[name]["sigma"].append(sigma[chosen])

    calibration_used = {}
    for line, data in per_line.items():
        # one_fiber's sigma, calibrated by distance from the fiber on the common spaxels (fit_sigma_calibration)
        common = common_spaxels(data["maps"], data["selection"])
        flat = {"predicted": stack_spaxels(data["maps"]["one_fiber"], common),
                "truth": stack_spaxels(data["truth"], common),
                "sigma": stack_spaxels(data["sigma"]["one_fiber"], common),
                "distance": stack_spaxels(distances, common)}  # fmt: skip
        before = line_flux_coverage(flat["predicted"], flat["truth"], flat["sigma"])
        if sigma_calibration == "fit" and flat["predicted"].size:
            calibration = fit_sigma_calibration(flat["predicted"], flat["truth"], flat["sigma"], flat["distance"])
        elif isinstance(sigma_calibration, dict):
            calibration = sigma_calibration.get(line)  # None: no calibration fitted for this line
        else:
            calibration = None
        if calibration is not None:
            data["sigma"]["one_fiber"] = [apply_sigma_calibration(sigma, flux_map, distance, calibration)
                                          for sigma, flux_map, distance in zip(data["sigma"]["one_fiber"],
                                                                               data["maps"]["one_fiber"], distances,
                                                                               strict=True)]  # fmt: skip
        calibration_used[line] = {"calibration": calibration, "fitted_on_this_set": sigma_calibration == "fit",
                                  "coverage_1sigma_uncalibrated": before["coverage_1sigma"],
                                  "coverage_2sigma_uncalibrated": before["coverage_2sigma"]}  # fmt: skip
    line_scores, weighted_scores, claim_scores, colour_scores = {}, {}, {}, {}
    for line, data in per_line.items():
        line_scores[line] = score_line(data["maps"], data["truth"], data["selection"], sigmas=data["sigma"],
                                       classes=classes, fiber_distances=distances)  # fmt: skip
        weighted_scores[line] = score_line(
            {**data["weighted"], "null_light": data["maps"]["null_light"], "null_fiber": data["maps"]["null_fiber"]},
            data["truth"], data["selection"], sigmas=data["sigma"], classes=classes,
        )  # fmt: skip
        if all(name in data["maps"] for name in FIBER_CLAIM_MODELS):
            claim_scores[line] = score_line({name: data["maps"][name] for name in FIBER_CLAIM_MODELS}, data["truth"],
                                            data["selection"], sigmas=data["sigma"], classes=classes,
                                            fiber_distances=distances)  # fmt: skip
            if colour_relation is not None:
                colour_scores[line] = score_line(
                    {**{name: data["maps"][name] for name in FIBER_CLAIM_MODELS}, **data["colour"]}, data["truth"],
                    data["selection"], sigmas=data["sigma"], classes=classes, fiber_distances=distances,
                )  # fmt: skip
    result = {"models": flatten_line_scores(line_scores)}
    if claim_scores:
        result["fiber_claim"] = {
            "models": flatten_line_scores(claim_scores),
            "meaning": "one_fiber, null_fiber and null_light on the spaxels where these three are positive (the "
            "common spaxels of `models` also need image_only and supervised, which fail on whole galaxies)",
        }
    if colour_scores:
        result["colour_nulls"] = {
            "models": flatten_line_scores(colour_scores),
            "colour": "-".join(COLOUR_BANDS),
            "meaning": "the fiber-claim models and two nulls that use the image's colour too, on the spaxels where "
            "all five are positive: null_colour = ratio(colour of the spaxel) x light, the ratio from a relation "
            "fitted on the training fibers; null_fiber_colour = the galaxy's fiber ratio x ratio(spaxel colour) / "
            "ratio(fiber colour) x light (scoreboard.colour_null_maps)",
        }
    weighted_flat = flatten_line_scores(weighted_scores)
    result["sigma_weighted_fits"] = {m: weighted_flat[m] for m in NETWORK_MODELS}
    curves = {}
    for name in NETWORK_MODELS:
        if spectra[name]["obs"]:
            stacked = (np.concatenate(spectra[name][k]) for k in ("obs", "ivar", "mean", "sigma"))
            coverage = spectrum_coverages(*stacked)
        else:
            coverage = {"spectrum_coverage_1sigma": None, "spectrum_coverage_2sigma": None,
                        "spectrum_coverage_curve": []}  # fmt: skip
        result["models"][name].update(coverage)
        result["models"][name]["spectrum_coverage_on"] = "the set's truth-cube spaxels with H-alpha truth S/N > 3"
        curves[MODEL_TITLES[name]] = coverage["spectrum_coverage_curve"]
    result["sigma_calibration"] = {
        "model": "one_fiber",
        "per_line": calibration_used,
        "meaning": "one_fiber's line-flux sigma is sqrt(sigma_model^2 + (fraction(d) x predicted)^2), d the spaxel's "
        "distance from the observed fiber (scoreboard.fit_sigma_calibration); coverage_* in models is after it",
    }
    result["galaxies"] = records
    result["n_galaxies"] = len(galaxies)
    result["classes"] = {c: classes.count(c) for c in ("star_forming", "quiescent")}
    return result, panels, curves


# ----------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------
def write_metrics_json(path: str | Path, metrics: dict) -> Path:
    """Write `metrics` as strict JSON (NaN -> null; json.dumps(allow_nan=False) passes), indented."""
    return write_strict_json(path, metrics)
