"""A training set for a custom survey: spectra from SDSS ``spec-*.fits`` files paired with image cutouts.

Each pair is one galaxy: its fiber spectrum (SDSS COADD: loglam, flux, ivar, and_mask; the fiber's
PLUG_RA/PLUG_DEC and Z from SPECOBJ) and a cutout in the Legacy Surveys ``fits-cutout`` layout
(bands x H x W, BANDS header, TAN WCS) in any bands, e.g. HSC g, r, i, z, y stacked into one file.
Spectra are resampled onto the target model's wavelength grid with inverse-variance propagation,
images are brought to the standard orientation through their WCS and centre-cropped, and the fiber
offset is the fiber's sky position relative to the cutout centre, through the cutout WCS. Rows have
the features ``examples/pretrain.py`` and ``examples/finetune.py`` read. A pair that cannot be read is
skipped, counted and reported with its reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GalSpecFormatError
from ..io.legacy import read_legacy_cutout
from ..io.sdss import read_sdss_spec
from ..models.galspec import GalSpecConfig, GalSpecProcessor
from ..models.galspec.processing_galspec import resample_spectrum
from ..sky import centred_crop


def build_custom_dataset(
    pairs: list[tuple[str | Path, str | Path]],
    output_dir: str | Path,
    config: GalSpecConfig,
    image_size: int | None = None,
    fiber_diameter: float | None = None,
) -> dict:
    """Write a ``save_to_disk`` data set from (spectrum file, cutout file) pairs for a model `config`.

    Parameters
    ----------
    pairs : list of (spec path, cutout path)
    output_dir : folder for ``Dataset.save_to_disk``
    config : the configuration of the model to train (grid, bands, pixel scale, fiber diameter)
    image_size : side of the stored images in pixels (default: ``config.image_size``; larger leaves room
        for shift augmentation)
    fiber_diameter : arcsec (default ``config.fiber_diameter``)

    Returns
    -------
    dict with ``n_written`` and ``skipped`` (a list of {"spectrum", "cutout", "reason"}).
    """
    import datasets

    image_size = image_size or config.image_size
    fiber_diameter = fiber_diameter or config.fiber_diameter
    wavelength = np.asarray(config.wavelength_grid())
    processor = GalSpecProcessor.from_config(config)
    rows: dict[str, list] = {key: [] for key in ("targetid", "image", "flux", "ivar", "redshift", "fiber_offset")}
    skipped = []
    for index, (spec_path, cutout_path) in enumerate(pairs):
        try:
            spectrum = read_sdss_spec(spec_path)
            cutout = read_legacy_cutout(cutout_path, bands=tuple(config.bands))
            image = processor.orient_cutout(cutout)  # ValueError naming the file on a pixel-scale mismatch
            if min(cutout.image.shape[-2:]) < image_size:
                raise GalSpecFormatError(f"{cutout_path}: image {cutout.image.shape[-2:]} smaller than {image_size}")
            if not np.isfinite(spectrum.redshift) or not np.isfinite(spectrum.ra):
                raise GalSpecFormatError(f"{spec_path}: SPECOBJ lacks Z or PLUG_RA/PLUG_DEC")
        except (GalSpecFormatError, OSError, ValueError) as error:
            skipped.append({"spectrum": str(spec_path), "cutout": str(cutout_path), "reason": str(error)})
            continue
        ivar = np.where(spectrum.and_mask != 0, 0.0, spectrum.ivar)
        flux, ivar = resample_spectrum(spectrum.wavelength, spectrum.flux, ivar, wavelength)
        rows["targetid"].append(index)
        rows["image"].append(centred_crop(image, image_size).astype(np.float32))
        rows["flux"].append(flux)
        rows["ivar"].append(ivar)
        rows["redshift"].append(float(spectrum.redshift))
        rows["fiber_offset"].append(cutout.sky_to_offset_arcsec(spectrum.ra, spectrum.dec).astype(np.float32))
    n = len(rows["targetid"])
    features = datasets.Features(
        {
            "targetid": datasets.Value("int64"),
            "image": datasets.Array3D((len(config.bands), image_size, image_size), "float32"),
            "flux": datasets.Sequence(datasets.Value("float32"), length=len(wavelength)),
            "ivar": datasets.Sequence(datasets.Value("float32"), length=len(wavelength)),
            "redshift": datasets.Value("float32"),
            "fiber_offset": datasets.Sequence(datasets.Value("float32"), length=2),
            "fiber_diameter": datasets.Value("float32"),
        }
    )
    rows["fiber_diameter"] = [float(fiber_diameter)] * n
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(output_dir))
    return {"n_written": n, "skipped": skipped}
