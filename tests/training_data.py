"""A small Arrow data set with the features of ``galspec build-dataset``, written by the tests."""

from __future__ import annotations

import datasets
import numpy as np
import torch

from galspec_hf import GalSpecConfig

from .galspec_testing import toy_galaxies


def write_toy_dataset(path, config: GalSpecConfig, num_rows: int = 48, seed: int = 0, margin: int = 4):
    """Toy galaxies (image brightness sets the spectrum) saved with ``save_to_disk``; images have a margin."""
    values = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "transformers_version")}
    values.update(image_size=config.image_size + 2 * margin, image_patch_size=1)
    big = GalSpecConfig(**values)
    rows = toy_galaxies(big, num_rows, seed=seed)
    ivar = rows["spectrum_ivar"].numpy()
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
        "image": rows["pixel_values"].numpy(),
        "flux": rows["spectrum"].numpy(),
        "ivar": ivar,
        "mask": mask,
        "redshift": rows["redshift"].numpy(),
        "fiber_offset": torch.zeros(num_rows, 2).numpy(),
        "fiber_diameter": np.full(num_rows, config.fiber_diameter, dtype=np.float32),
    }
    dataset = datasets.Dataset.from_dict(data, features=features)
    dataset.save_to_disk(str(path))
    return dataset
