"""Training data: open a data set made by ``galspec build-dataset`` (or any with the same features) and batch it.

Rows carry at least ``image`` (bands, H, W) nanomaggies, ``flux``, ``ivar`` (and optionally
``mask``) on the model grid, ``redshift``, ``fiber_offset`` (2,) arcsec east/north of the cutout
centre and ``fiber_diameter`` (arcsec). A pixel with a non-zero ``mask`` gets ivar 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..sky import centred_crop

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


def shuffled_rows(rows: Iterable[dict], buffer_size: int, rng: np.random.Generator) -> Iterator[dict]:
    """Yield ``rows`` in a random order through a buffer of ``buffer_size`` rows held as preallocated arrays.

    The buffer is filled first; after that every incoming row takes the slot of a row drawn at random,
    which is yielded (the tf.data / ``datasets`` shuffle-buffer algorithm); at the end of the stream the
    rest is yielded in a random order. Each column lives in one ``(buffer_size, *shape)`` array made
    when the first row arrives, so the memory held is fixed by ``buffer_size`` and the row size, and is
    reached as soon as the buffer fills (``datasets``' own buffer holds Python rows or Arrow tables and,
    once a stream outlasts it, about 2.5 buffers of them: benchmarks/bench_memory.py, docs/BENCHMARKS.md).
    A column whose shape changes from row to row, or that is not numeric, is kept in an object array instead.

    Parameters
    ----------
    rows : iterable of dict
        Rows with the same keys, values array-like (e.g. a ``datasets.IterableDataset`` in numpy format).
    buffer_size : int
        Rows held at once; 1 keeps the input order.
    rng : numpy.random.Generator
        Source of the order: the same generator state gives the same order (exact resume).
    """
    if buffer_size < 1:
        raise ValueError(f"`buffer_size` must be >= 1, got {buffer_size}")
    columns: dict[str, np.ndarray] | None = None
    filled = 0
    for row in rows:
        if columns is None:
            columns = {key: _buffer_column(value, buffer_size) for key, value in row.items()}
        if filled < buffer_size:
            slot, filled = filled, filled + 1
        else:
            slot = int(rng.integers(buffer_size))
            yield _read_slot(columns, slot)
        for key, column in columns.items():
            value = row[key]
            if column.dtype != object and np.shape(value) != column.shape[1:]:
                columns[key] = column = _ragged_column(column, filled)
            if column.dtype == object:
                column[slot] = np.array(value, copy=True) if isinstance(value, np.ndarray) else value
            else:
                column[slot] = value
    for slot in rng.permutation(filled):
        yield _read_slot(columns, int(slot))


def _buffer_column(value, buffer_size: int) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind in "biuf":
        return np.empty((buffer_size, *array.shape), dtype=array.dtype)
    return np.empty(buffer_size, dtype=object)


def _ragged_column(column: np.ndarray, filled: int) -> np.ndarray:
    """The first ``filled`` rows of a fixed-shape column as an object column of per-row arrays."""
    ragged = np.empty(len(column), dtype=object)
    for slot in range(filled):
        ragged[slot] = column[slot].copy()
    return ragged


def _read_slot(columns: dict[str, np.ndarray], slot: int) -> dict:
    # a copy: the slot is overwritten by the next incoming row while the batch is still being gathered
    return {key: column[slot].copy() if column.dtype != object else column[slot] for key, column in columns.items()}


class GalSpecStreamShuffler(torch.utils.data.IterableDataset):
    """A streamed data set in a seeded random order that changes each epoch, with bounded memory.

    The row order comes from :func:`shuffled_rows`; :func:`shuffle_stream`, which makes this object,
    also has ``datasets`` shuffle the shard order (``set_epoch`` reaches both). Iterating twice with the same
    ``seed``, ``rank`` and epoch gives the same rows in the same order, which is what lets
    ``examples/pretrain.py`` resume a stream exactly by skipping the batches already seen.

    Parameters
    ----------
    dataset : datasets.IterableDataset
        The stream, already split between processes (``split_dataset_by_node``) if training on several.
    buffer_size : int
        Rows in the shuffle buffer.
    seed : int
        Seed of both orders.
    rank : int
        Process index, so that processes draw different row orders.
    """

    def __init__(self, dataset, buffer_size: int = 1000, seed: int = 0, rank: int = 0):
        super().__init__()
        if buffer_size < 1:
            raise ValueError(f"`buffer_size` must be >= 1, got {buffer_size}")
        self.dataset = dataset
        self.buffer_size = buffer_size
        self.seed = seed
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict]:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        return shuffled_rows(self.dataset, self.buffer_size, rng)


def shuffle_stream(dataset, buffer_size: int, seed: int, rank: int = 0, world_size: int = 1) -> GalSpecStreamShuffler:
    """Shuffle a ``datasets.IterableDataset``'s shards, split it between processes, and shuffle its rows.

    The one place where a stream is sharded between processes: the DataLoader made from the result must
    not also go through ``accelerator.prepare`` (sharding twice drops data).

    The stream's format is left as given. Give a stream read from Arrow or Parquet files (what
    :func:`load_training_dataset` opens) in numpy format, ``dataset.with_format("numpy")``: its rows then
    arrive as arrays, not nested Python lists. Leave a stream made by a Python generator (the DESI
    builder reading FITS files) in the default format: numpy formatting re-encodes each of its rows
    (measured 28x slower with ``benchmarks/bench_data.py``'s files); the buffer turns lists into arrays.
    """
    from datasets.distributed import split_dataset_by_node

    # buffer_size=1: `datasets` shuffles the shard order only; the rows are shuffled by `shuffled_rows`
    dataset = dataset.shuffle(seed=seed, buffer_size=1, max_buffer_input_shards=1)
    dataset = split_dataset_by_node(dataset, rank=rank, world_size=world_size)
    return GalSpecStreamShuffler(dataset, buffer_size=buffer_size, seed=seed, rank=rank)


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
        return centred_crop(image, size)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        images = [self._cut(np.asarray(row["image"], dtype=np.float32)) for row in rows]
        size = min(min(i.shape[-2:]) for i in images)
        images = [centred_crop(i, size) for i in images]
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
