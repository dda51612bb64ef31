"""Does a trained model's image-only spectrum depend on the image? Three measurements on held-out fibers.

1. ``continuum_colour``: the continuum colour of each fiber's predicted spectrum against its observed one
   (:func:`galspec_hf.scoreboard.continuum_colour_check`): a model that ignores the image has a spread ratio near 0.
2. ``perturbation``: the median relative change of the predicted spectrum's *shape* (each spectrum over its median)
   when the g band of every image is tripled, and when each galaxy is given another galaxy's image.
3. ``linear_probe``: ridge regressions of the observed continuum colour on (a) the mean normalised image of the
   central 16 x 16 pixels per band (what the network is given), (b) the encoder's output states averaged over tokens,
   (c) the decoder trunk's spectrum-token states averaged over tokens; r of each on the held-out fibers. Where (a) is
   high and (b), (c) low, the network has discarded what its input holds.
4. ``linear_colour_model_r``: the reference, a per-pixel linear model of the normalised spectrum on the fiber's
   aperture colours (weighted least squares on the training rows): the held-out r of its continuum colour.

    python examples/probe_image_dependence.py runs/default_s0_fresh/one_fiber_model \\
        --fibers runs/default_s0_fresh/fibers_train --output runs/probe.json

`--fibers` is a DESI data set on the model's grid (examples/ifu_from_one_fiber.py writes ``fibers_train``); its
rows are split as pretrain.py splits them (``--validation_fraction``, ``--seed``): the probes are fitted on
``--n_train`` training rows and scored on the held-out ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _images(rows, config):
    import torch

    from galspec_hf.sky import centred_crop

    return torch.from_numpy(
        np.stack([centred_crop(np.asarray(r["image"], np.float32), config.image_size) for r in rows])
    )


def pooled_features(model, rows, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Per row: the central 16 x 16 pixel mean of the normalised image per band, the encoder's states averaged over
    tokens and the decoder trunk's spectrum-token states averaged over tokens (image alone)."""
    import torch

    from galspec_hf.models.galspec.processing_galspec import compute_flux_scale, normalize_images

    config = model.config
    features = {"input_centre": [], "encoder": [], "decoder_spectrum_tokens": []}
    centre = slice(config.image_size // 2 - 8, config.image_size // 2 + 8)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        images = _images(chunk, config)
        redshift = torch.tensor([float(r["redshift"]) for r in chunk], dtype=torch.float32)
        with torch.no_grad():
            normalized = normalize_images(images, compute_flux_scale(images, config), config)
            features["input_centre"].append(normalized[:, :, centre, centre].mean(dim=(2, 3)).numpy())
            encoded = model.galspec(images, redshift, return_dict=True)
            features["encoder"].append(encoded.last_hidden_state.mean(dim=1).numpy())
            states = model.decoder.embed(encoded, redshift)
            for layer in model.decoder.layers:
                states, _ = layer(states)
            states = model.decoder.layernorm(states)[:, config.num_image_tokens :]
            features["decoder_spectrum_tokens"].append(states.mean(dim=1).numpy())
    return {name: np.concatenate(values) for name, values in features.items()}


def ridge_probe_r(train_x, train_y, test_x, test_y, penalty: float = 10.0) -> float | None:
    """Pearson r, on the test rows, of a ridge regression (standardised features) fitted on the training rows."""
    fit, score = np.isfinite(train_y), np.isfinite(test_y)
    if fit.sum() < 10 or score.sum() < 3:
        return None
    mean, scale = train_x[fit].mean(axis=0), train_x[fit].std(axis=0) + 1e-8
    design = np.c_[(train_x[fit] - mean) / scale, np.ones(fit.sum())]
    weights = np.linalg.solve(design.T @ design + penalty * np.eye(design.shape[1]), design.T @ train_y[fit])
    predicted = np.c_[(test_x[score] - mean) / scale, np.ones(score.sum())] @ weights
    return float(np.corrcoef(predicted, test_y[score])[0, 1]) if predicted.std() > 0 else None


def linear_colour_model_r(model, train, held_out) -> float | None:
    """What the fiber's colours alone give: each normalised spectrum pixel fitted, by inverse-variance weighted
    least squares over the training rows, as a linear function of the fiber's aperture colours
    (:func:`~galspec_hf.models.galspec.processing_galspec.fiber_colours_dex`); the r of the predicted against the
    observed continuum colour on the held-out rows. A reference for a network that uses its image."""
    import torch

    from galspec_hf.models.galspec.processing_galspec import (
        compute_flux_scale,
        fiber_colours_dex,
        normalize_spectra,
        spectrum_scales,
    )
    from galspec_hf.scoreboard import continuum_colours

    config = model.config

    def normalised(rows):
        images = _images(rows, config)
        index = torch.arange(len(rows))
        offsets = torch.tensor(np.stack([np.asarray(r["fiber_offset"], np.float32) for r in rows]))
        diameters = torch.tensor([float(r["fiber_diameter"]) for r in rows], dtype=torch.float32)
        scale = spectrum_scales(images, compute_flux_scale(images, config), index, offsets, diameters, config)
        colours = fiber_colours_dex(images, index, offsets, diameters, config).numpy().astype(np.float64)
        flux = torch.tensor(np.stack([r["flux"] for r in rows]), dtype=torch.float64)
        ivar = torch.tensor(np.stack([r["ivar"] for r in rows]), dtype=torch.float64)
        flux, ivar = normalize_spectra(flux, ivar, scale.double())
        ivar = torch.where(torch.isfinite(flux) & torch.isfinite(ivar), ivar, 0.0).numpy()
        return np.c_[np.ones(len(rows)), colours], np.nan_to_num(flux.numpy()), ivar

    design, flux, ivar = normalised(train)
    gram = np.einsum("ni,nl,nj->lij", design, ivar, design)  # (L, k, k)
    rhs = np.einsum("ni,nl->li", design, ivar * flux)  # (L, k)
    # pseudo-inverse: a colour that does not vary (or a pixel without data) gets no coefficient
    coefficients = (np.linalg.pinv(gram, hermitian=True) @ rhs[..., None])[..., 0]  # (L, k)
    test_design, test_flux, test_ivar = normalised(held_out)
    predicted = test_design @ coefficients.T  # (N, L)
    wave = model.galspec.wavelength.numpy().astype(np.float64)
    redshift = np.array([float(r["redshift"]) for r in held_out])
    ours = continuum_colours(wave, predicted, redshift)
    observed = continuum_colours(wave, test_flux, redshift, test_ivar)
    both = np.isfinite(ours) & np.isfinite(observed)
    return float(np.corrcoef(ours[both], observed[both])[0, 1]) if both.sum() >= 3 else None


def perturbation_changes(model, rows) -> dict[str, float]:
    """Median relative change of the predicted shape (spectrum / its median) when the g band is tripled, and when
    the images are passed round by one galaxy."""
    import torch

    config = model.config
    images = _images(rows, config)
    redshift = torch.tensor([float(r["redshift"]) for r in rows], dtype=torch.float32)
    offsets = torch.zeros(len(rows), 1, 2)

    def shape(pixel_values):
        with torch.no_grad():
            mean = model.predict_spectra(pixel_values, redshift, offsets).mean[:, 0].numpy()
        return mean / np.median(mean, axis=1, keepdims=True)

    reference = shape(images)
    bluer = images.clone()
    bluer[:, config.bands.index("g")] *= 3.0
    swapped = images[torch.roll(torch.arange(len(rows)), 1)]
    return {"g_band_tripled": float(np.median(np.abs(shape(bluer) / reference - 1))),
            "another_galaxys_image": float(np.median(np.abs(shape(swapped) / reference - 1)))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a saved GalSpecForMaskedSpectra (folder)")
    parser.add_argument("--fibers", type=Path, required=True, help="a DESI data set saved with save_to_disk")
    parser.add_argument("--validation_fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_train", type=int, default=600, help="training rows the probes are fitted on")
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    for path, what in ((args.model, "model"), (args.fibers, "--fibers")):
        if not path.is_dir():
            parser.error(f"{what} {path}: no such folder")
    if not 0 < args.validation_fraction < 1:
        parser.error(f"--validation_fraction must be in (0, 1), got {args.validation_fraction}")
    import datasets

    from galspec_hf import GalSpecForMaskedSpectra
    from galspec_hf.scoreboard import continuum_colour_check, continuum_colours
    from galspec_hf.strict_json import write_strict_json

    model = GalSpecForMaskedSpectra.from_pretrained(args.model).eval()
    split = datasets.load_from_disk(str(args.fibers)).train_test_split(
        test_size=args.validation_fraction, seed=args.seed, shuffle=True
    )
    train = list(split["train"].select(range(min(args.n_train, len(split["train"])))).with_format("numpy"))
    held_out = list(split["test"].with_format("numpy"))
    wave = model.galspec.wavelength.numpy().astype(np.float64)

    def colours(rows):
        redshift = np.array([float(r["redshift"]) for r in rows])
        flux, ivar = np.stack([r["flux"] for r in rows]), np.stack([r["ivar"] for r in rows])
        return continuum_colours(wave, flux, redshift, ivar)

    train_features, test_features = pooled_features(model, train), pooled_features(model, held_out)
    train_colour, test_colour = colours(train), colours(held_out)
    result = {
        "model": str(args.model),
        "num_held_out_fibers": len(held_out),
        "continuum_colour": continuum_colour_check(model, held_out),
        "perturbation": perturbation_changes(model, held_out[:64]),
        "linear_probe_r": {name: ridge_probe_r(train_features[name], train_colour, test_features[name], test_colour)
                           for name in train_features},  # fmt: skip
        "linear_colour_model_r": linear_colour_model_r(model, train, held_out),
    }
    colour = result["continuum_colour"]
    print(f"continuum colour of the image-only prediction against the observed ({colour['num_fibers']} fibers): r "
          f"{colour['pearson_r']}, spread ratio {colour['spread_ratio']}")  # fmt: skip
    print("shape change: " + ", ".join(f"{k} {v:.4f}" for k, v in result["perturbation"].items()))
    print("linear probe of the observed colour, held-out r: "
          + ", ".join(f"{k} {'n/a' if v is None else f'{v:+.2f}'}" for k, v in result["linear_probe_r"].items()))
    print(f"a per-pixel linear model of the spectrum on the fiber's colours alone: held-out colour r "
          f"{result['linear_colour_model_r']}")  # fmt: skip
    if args.output is not None:
        write_strict_json(args.output, result)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
