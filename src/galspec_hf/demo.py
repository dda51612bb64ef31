"""The README's demo: predict spectra on a grid of fibers over a galaxy image and plot them.

For now the model is built from a preset with random weights (no pretrained weights can be
downloaded here), so the spectra show the machinery, not astrophysics; pass ``--model DIR`` to use
a trained model saved with ``save_pretrained``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .models.galspec import GalSpecConfig, GalSpecForMaskedSpectra, GalSpecProcessor
from .strict_json import write_strict_json


@dataclass
class DemoImage:
    """A cutout for the demo: image (bands, H, W) in nanomaggies, standard orientation, and where it came from."""

    image: np.ndarray
    source: str


def default_shared_data() -> Path:
    """``$GALSPEC_SHARED_DATA`` or ``../shared/data`` relative to the working directory."""
    return Path(os.environ.get("GALSPEC_SHARED_DATA", Path.cwd().parent / "shared" / "data"))


def find_legacy_cutout(shared_data: Path | None = None) -> Path | None:
    """The first Legacy Surveys cutout in ``shared_data/legacysurvey``, or None."""
    folder = (shared_data or default_shared_data()) / "legacysurvey"
    matches = sorted(folder.glob("*.fits")) if folder.is_dir() else []
    return matches[0] if matches else None


def load_cutout(path: Path, bands: list[str]) -> DemoImage:
    """Read a Legacy Surveys cutout (``read_legacy_cutout``) and bring it to the standard orientation via its WCS."""
    from .io.legacy import read_legacy_cutout

    cutout = read_legacy_cutout(path, bands=tuple(bands))
    return DemoImage(GalSpecProcessor.orient_image(cutout.image, cutout.wcs.celestial.pixel_scale_matrix), str(path))


def synthetic_image(config: GalSpecConfig, seed: int = 0) -> DemoImage:
    """A simple two-component galaxy (red bulge, blue disk) with sky noise, when no real cutout is present."""
    rng = np.random.default_rng(seed)
    size = config.image_size
    coordinate = (np.arange(size) - (size - 1) / 2) * config.pixel_scale
    x, y = np.meshgrid(coordinate, coordinate)
    inclination, angle = np.radians(50.0), np.radians(30.0)
    major = x * np.cos(angle) + y * np.sin(angle)
    minor = (-x * np.sin(angle) + y * np.cos(angle)) / np.cos(inclination)
    disk = np.exp(-np.hypot(major, minor) / 2.5)
    bulge = np.exp(-7.669 * ((np.hypot(x, y) / 0.8) ** 0.25 - 1))  # de Vaucouleurs, b_4 = 7.669
    colours = {"g": (0.4, 1.0), "r": (1.0, 1.0), "z": (1.6, 0.8)}
    image = np.stack(
        [
            20 * colours.get(b, (1, 1))[0] * bulge / bulge.sum() + 30 * colours.get(b, (1, 1))[1] * disk / disk.sum()
            for b in config.bands
        ]
    )
    image += rng.normal(0.0, 0.003, size=image.shape)
    return DemoImage(image.astype(np.float32), "synthetic bulge + disk (no real cutout found)")


def fiber_grid(half_width_arcsec: float, spacing_arcsec: float) -> np.ndarray:
    """Fiber positions on a square grid, (K, 2) arcsec east/north."""
    steps = np.arange(-half_width_arcsec, half_width_arcsec + 1e-9, spacing_arcsec)
    east, north = np.meshgrid(steps, steps)
    return np.stack([east.ravel(), north.ravel()], axis=-1)


def rgb_image(image: np.ndarray) -> np.ndarray:
    """An arcsinh-stretched RGB view of a (3, H, W) g, r, z image (Lupton et al. 2004 style), (H, W, 3)."""
    stretched = np.arcsinh(np.clip(image, 0, None) / 0.02)
    stretched = stretched / max(np.percentile(stretched, 99.5), 1e-6)
    return np.clip(np.stack([stretched[2], stretched[1], stretched[0]], axis=-1), 0, 1)


def run_demo(
    output_dir: str | Path,
    preset: str = "small",
    model_path: str | None = None,
    cutout: str | None = None,
    redshift: float = 0.1,
    seed: int = 0,
) -> dict:
    """Predict spectra on a 7 x 7 fiber grid (2 arcsec spacing) and write ``demo.png`` and ``demo.json``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if model_path:
        model = GalSpecForMaskedSpectra.from_pretrained(model_path)
    else:
        model = GalSpecForMaskedSpectra(GalSpecConfig.from_preset(preset))
    model.eval()
    config = model.config
    processor = GalSpecProcessor.from_config(config)

    cutout_path = Path(cutout) if cutout else find_legacy_cutout()
    demo_image = load_cutout(cutout_path, config.bands) if cutout_path else synthetic_image(config, seed)
    batch = processor([demo_image.image], [redshift])
    fibers = fiber_grid(6.0, 2.0)
    prediction = model.predict_spectra(
        batch["pixel_values"], batch["redshift"], torch.from_numpy(fibers)[None].float()
    )
    wavelength = prediction.wavelength.numpy()
    mean, sigma = prediction.mean[0].numpy(), prediction.sigma[0].numpy()

    figure, (ax_image, ax_spectra) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1, 2]})
    half = config.image_size * config.pixel_scale / 2
    # east is to the left: the x axis runs from +half (left) to -half (right)
    ax_image.imshow(rgb_image(batch["pixel_values"][0].numpy()), origin="lower", extent=(half, -half, -half, half))
    highlighted = [int(np.argmin(np.hypot(*(fibers - target).T))) for target in ([0, 0], [2, 2], [-4, 0])]
    colours = ["tab:red", "tab:orange", "tab:cyan"]
    for index, (east, north) in enumerate(fibers):
        colour = colours[highlighted.index(index)] if index in highlighted else "white"
        ax_image.add_patch(Circle((east, north), config.fiber_diameter / 2, fill=False, color=colour, lw=1.2))
    ax_image.set_xlabel("east offset [arcsec]")
    ax_image.set_ylabel("north offset [arcsec]")
    ax_image.set_title(f'{Path(demo_image.source).name}\n{len(fibers)} fibers of {config.fiber_diameter}" diameter')
    for colour, index in zip(colours, highlighted, strict=True):
        label = f'fiber at ({fibers[index, 0]:+.0f}", {fibers[index, 1]:+.0f}")'
        ax_spectra.plot(wavelength, mean[index], color=colour, lw=0.6, label=label)
        ax_spectra.fill_between(
            wavelength, mean[index] - sigma[index], mean[index] + sigma[index], color=colour, alpha=0.25, lw=0
        )
    weights = "trained weights: " + model_path if model_path else f"untrained '{preset}' preset (random weights)"
    ax_spectra.set_title(f"predicted fiber spectra, mean +/- 1 sigma, z = {redshift} ({weights})")
    ax_spectra.set_xlabel("observed wavelength [Angstrom, vacuum]")
    ax_spectra.set_ylabel("flux density [1e-17 erg/s/cm2/A]")
    ax_spectra.legend(loc="upper right")
    figure.tight_layout()
    png = output_dir / "demo.png"
    figure.savefig(png, dpi=110)
    plt.close(figure)

    summary = {
        "image": demo_image.source,
        "model": model_path or f"preset:{preset} (random weights)",
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "redshift": redshift,
        "num_fibers": int(len(fibers)),
        "num_wavelengths": int(wavelength.shape[0]),
        "median_flux_centre_fiber": float(np.median(mean[highlighted[0]])),
        "median_sigma_centre_fiber": float(np.median(sigma[highlighted[0]])),
        "png": str(png),
    }
    write_strict_json(output_dir / "demo.json", summary)
    return summary
