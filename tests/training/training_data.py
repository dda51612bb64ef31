"""A small Arrow data set with the features of ``galspec build-dataset``, written by the tests."""

from __future__ import annotations

import datasets
import numpy as np

from galspec_hf import GalSpecConfig

from ..galspec_testing import toy_galaxies


def write_toy_dataset(
    path,
    config: GalSpecConfig,
    num_rows: int = 48,
    seed: int = 0,
    margin: int = 4,
    fiber_offset=None,
    mark_fiber: float | None = None,
):
    """Toy galaxies (image brightness sets the spectrum) saved with ``save_to_disk``; images have a margin.

    fiber_offset : (num_rows, 2) arcsec east/north of the image centre, optional (default the centre).
    mark_fiber : when given, the pixel under each fiber centre is set to this value (nanomaggies) in every
        band, so a test can follow the fiber through cuts and augmentation; the fiber must sit on a pixel centre.
    """
    values = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "transformers_version")}
    values.update(image_size=config.image_size + 2 * margin, image_patch_size=1)
    big = GalSpecConfig(**values)
    rows = toy_galaxies(big, num_rows, seed=seed)
    ivar = rows["spectrum_ivar"].numpy()
    offsets = np.zeros((num_rows, 2), np.float32) if fiber_offset is None else np.asarray(fiber_offset, np.float32)
    images = rows["pixel_values"].numpy()
    if mark_fiber is not None:
        centre = (big.image_size - 1) / 2  # row index runs north, column index west
        pixel_rows = np.rint(centre + offsets[:, 1] / big.pixel_scale).astype(int)
        pixel_cols = np.rint(centre - offsets[:, 0] / big.pixel_scale).astype(int)
        images[np.arange(num_rows), :, pixel_rows, pixel_cols] = mark_fiber
    mask = np.zeros(ivar.shape, dtype=np.int32)
    mask[:, 100:110] = 2  # flagged pixels (as DESI's mask bits); the collator must zero their ivar
    features = datasets.Features(
        {
            "targetid": datasets.Value("int64"),
            "image": datasets.Array3D((len(config.bands), big.image_size, big.image_size), "float32"),
            "flux": datasets.Sequence(datasets.Value("float32"), length=config.num_wavelengths),
            "ivar": datasets.Sequence(datasets.Value("float32"), length=config.num_wavelengths),
            "mask": datasets.Sequence(datasets.Value("int32"), length=config.num_wavelengths),
            "redshift": datasets.Value("float32"),
            "fiber_offset": datasets.Sequence(datasets.Value("float32"), length=2),
            "fiber_diameter": datasets.Value("float32"),
        }
    )
    data = {
        "targetid": np.arange(num_rows, dtype=np.int64) + 1000 * (seed + 1),
        "image": images,
        "flux": rows["spectrum"].numpy(),
        "ivar": ivar,
        "mask": mask,
        "redshift": rows["redshift"].numpy(),
        "fiber_offset": offsets,
        "fiber_diameter": np.full(num_rows, config.fiber_diameter, dtype=np.float32),
    }
    dataset = datasets.Dataset.from_dict(data, features=features)
    dataset.save_to_disk(str(path))
    return dataset
