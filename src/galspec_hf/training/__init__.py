"""Training: data, augmentation, checkpoints, adaptation to another survey, and the pretraining loop.

The loop itself (:mod:`.loop`: ``get_dataloaders``, ``evaluate``, ``training_function``, ``main``) and its
command-line options (:mod:`.args`) are imported from their modules, not here, so that ``import
galspec_hf.training`` does not load Accelerate. ``examples/pretrain.py`` and ``examples/finetune.py`` are thin
scripts around them.
"""

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
