"""Training utilities used by ``examples/pretrain.py`` and ``examples/finetune.py``."""

from .adapt import AdaptedModel, adapt_pretrained, freeze_encoder
from .augment import augment_batch, crop_window, flip_east_west, rotate_90
from .checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from .data import (
    GalSpecCollator,
    GalSpecStreamShuffler,
    check_columns,
    load_training_dataset,
    shuffle_stream,
    shuffled_rows,
)

__all__ = [
    "AdaptedModel",
    "adapt_pretrained",
    "freeze_encoder",
    "GalSpecCollator",
    "GalSpecStreamShuffler",
    "augment_batch",
    "check_columns",
    "crop_window",
    "flip_east_west",
    "load_checkpoint",
    "load_training_dataset",
    "resolve_checkpoint",
    "rotate_90",
    "save_checkpoint",
    "shuffle_stream",
    "shuffled_rows",
]
