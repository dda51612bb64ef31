"""Training data: open a data set made by ``galspec build-dataset`` (or any with the same features) and batch it.

Rows carry at least ``image`` (bands, H, W) nanomaggies, ``flux``, ``ivar`` (and optionally
``mask``) on the model grid, ``redshift``, ``fiber_offset`` (2,) arcsec east/north of the cutout
centre and ``fiber_diameter`` (arcsec). A pixel with a non-zero ``mask`` gets ivar 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

REQUIRED_COLUMNS = ("image", "flux", "ivar", "redshift", "fiber_offset")
OPTIONAL_COLUMNS = ("mask", "fiber_diameter")


def load_training_dataset(source: str, streaming: bool = False, split: str = "train"):
    """Open a data set from a ``save_to_disk`` folder, a folder of Parquet shards, or a Hub data set id.

    Parameters
    ----------
    source : str
        Local folder written by ``Dataset.save_to_disk`` (has ``state.json``), a local folder or glob
        of ``*.parquet`` files, or a Hub data set id (``org/name``).
    streaming : bool
        Return a ``datasets.IterableDataset`` that reads lazily.
    """
    import datasets

    path = Path(source)
    if path.is_dir() and (path / "state.json").is_file():
        dataset = datasets.load_from_disk(str(path))
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[split]
        return dataset.to_iterable_dataset(num_shards=max(1, len(dataset.cache_files))) if streaming else dataset
    if path.is_dir() and (path / "dataset_dict.json").is_file():
        dataset = datasets.load_from_disk(str(path))[split]
        return dataset.to_iterable_dataset(num_shards=max(1, len(dataset.cache_files))) if streaming else dataset
    parquet = sorted(path.rglob("*.parquet")) if path.is_dir() else []
    if parquet:
        return datasets.load_dataset("parquet", data_files=[str(p) for p in parquet], split=split, streaming=streaming)
    if path.exists():
        raise ValueError(
            f"--dataset {source}: neither a save_to_disk folder (state.json) nor a folder of .parquet files"
        )
    return datasets.load_dataset(source, split=split, streaming=streaming)


def check_columns(column_names, source: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in column_names]
    if missing:
        raise ValueError(f"data set {source}: missing columns {missing}; expected at least {list(REQUIRED_COLUMNS)}")


class GalSpecCollator:
    """Stack rows into model inputs, cutting each image to ``image_size + 2 * margin`` pixels.

    The margin leaves room for shift augmentation without wrap-around (see
    :func:`galspec_hf.training.augment.augment_batch`).
    """

    def __init__(self, image_size: int, num_wavelengths: int, default_fiber_diameter: float, margin: int = 0):
        self.image_size = image_size
        self.num_wavelengths = num_wavelengths
        self.default_fiber_diameter = default_fiber_diameter
        self.margin = margin

    def _cut(self, image: np.ndarray) -> np.ndarray:
        size = self.image_size + 2 * self.margin
        height, width = image.shape[-2:]
        if height < self.image_size or width < self.image_size:
            raise ValueError(
                f"image is {height}x{width} pixels, smaller than the model's image_size={self.image_size}"
            )
        size = min(size, height - (height - self.image_size) % 2, width - (width - self.image_size) % 2)
        top, left = (height - size) // 2, (width - size) // 2
        return image[..., top : top + size, left : left + size]

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        images = [self._cut(np.asarray(row["image"], dtype=np.float32)) for row in rows]
        size = min(min(i.shape[-2:]) for i in images)
        images = [i[..., (i.shape[-2] - size) // 2 :, (i.shape[-1] - size) // 2 :][..., :size, :size] for i in images]
        flux = np.stack([np.asarray(row["flux"], dtype=np.float32) for row in rows])
        ivar = np.stack([np.asarray(row["ivar"], dtype=np.float32) for row in rows])
        if flux.shape[1] != self.num_wavelengths:
            raise ValueError(f"`flux` has {flux.shape[1]} pixels, the model grid has {self.num_wavelengths}")
        if "mask" in rows[0] and rows[0]["mask"] is not None:
            mask = np.stack([np.asarray(row["mask"]) for row in rows])
            ivar = np.where(mask != 0, 0.0, ivar).astype(np.float32)
        diameter = [row.get("fiber_diameter") for row in rows]
        diameter = [self.default_fiber_diameter if d is None else float(d) for d in diameter]
        batch = {
            "pixel_values": torch.from_numpy(np.stack(images)),
            "spectrum": torch.from_numpy(flux),
            "spectrum_ivar": torch.from_numpy(ivar),
            "redshift": torch.tensor([float(row["redshift"]) for row in rows], dtype=torch.float32),
            "fiber_offset": torch.from_numpy(
                np.stack([np.asarray(row["fiber_offset"], dtype=np.float32) for row in rows])
            ),
            "fiber_diameter": torch.tensor(diameter, dtype=torch.float32),
        }
        if "targetid" in rows[0]:
            batch["targetid"] = torch.tensor([int(row["targetid"]) for row in rows], dtype=torch.int64)
        return batch
