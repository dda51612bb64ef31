"""The command-line arguments of GalSpec pretraining (and, extended, of fine-tuning and the experiment).

:func:`build_parser` is the parser of ``examples/pretrain.py``; ``examples/finetune.py`` adds its survey
options to it, and ``examples/ifu_from_one_fiber.py`` checks its training arguments with it.
:func:`validate_args` rejects inconsistent values before any work starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["build_parser", "validate_args"]


def build_parser() -> argparse.ArgumentParser:
    """The pretraining parser: data, model, optimisation and output options (see examples/README.md)."""
    parser = argparse.ArgumentParser(description="Pretrain a GalSpec masked autoencoder on fiber spectra + images.")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True, help="save_to_disk folder, Parquet folder, or Hub data set id")
    data.add_argument("--streaming", action="store_true", help="read the data set lazily (IterableDataset)")
    data.add_argument("--validation_fraction", type=float, default=0.1, help="held-out fraction (default 0.1)")
    data.add_argument(
        "--shuffle_buffer_size", type=int, default=1000, help="rows in the streaming shuffle buffer (default 1000)"
    )
    data.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    model = parser.add_argument_group("model")
    model.add_argument("--preset", default="small", help="model preset: tiny, small, base (default small)")
    model.add_argument("--config", default=None, help="GalSpecConfig JSON file (overrides --preset)")
    model.add_argument("--spectrum_mask_ratio", type=float, default=None, help="masking: fraction of spectrum patches")
    model.add_argument("--image_mask_ratio", type=float, default=None, help="masking: fraction of image patches")
    model.add_argument(
        "--mask_mode_probabilities",
        type=float,
        nargs=3,
        default=None,
        metavar=("RANDOM", "CHUNK", "FULL"),
        help="masking: probabilities of random patches, one chunk, whole spectrum",
    )
    model.add_argument(
        "--spectrum_loss", default=None, choices=["gaussian", "beta_nll"], help="loss: per-pixel spectrum loss"
    )
    model.add_argument("--beta_nll_beta", type=float, default=None, help="loss: beta of beta_nll (0 to 1)")
    model.add_argument(
        "--sigma_penalty_weight", type=float, default=None, help="loss: weight of mean(sigma_model^2) (paper: 0.1)"
    )
    model.add_argument(
        "--line_window_weight", type=float, default=None, help="loss: weight of pixels near strong emission lines"
    )
    model.add_argument(
        "--readout_modulation", action="store_true", default=None, help="decoder: FiLM of the readout"
    )
    model.add_argument(
        "--readout_colours", action="store_true", default=None,
        help="decoder: a linear term of the image colours inside each fiber in its spectrum",
    )  # fmt: skip
    model.add_argument(
        "--decoder_image_summary", action="store_true", default=None,
        help="decoder: the mean of the visible image tokens added to every spectrum token",
    )  # fmt: skip
    model.add_argument(
        "--decoder_photometry", action="store_true", default=None,
        help="decoder: an embedding of the galaxy's central colours added to every spectrum token",
    )  # fmt: skip
    model.add_argument(
        "--readout_photometry", action="store_true", default=None,
        help="decoder: each fiber's colours mixed into its spectrum tokens by an MLP in the readout",
    )  # fmt: skip
    model.add_argument("--attn_implementation", default="sdpa", choices=["eager", "sdpa"])
    train = parser.add_argument_group("optimisation")
    train.add_argument("--max_steps", type=int, default=1000, help="optimiser steps (default 1000)")
    train.add_argument("--per_device_batch_size", type=int, default=16)
    train.add_argument("--gradient_accumulation_steps", type=int, default=1)
    train.add_argument("--learning_rate", type=float, default=3e-4)
    train.add_argument("--weight_decay", type=float, default=0.05)
    train.add_argument("--warmup_steps", type=int, default=100)
    train.add_argument("--max_grad_norm", type=float, default=1.0)
    train.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    train.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=True, help="flips, rotations, shifts"
    )
    train.add_argument("--max_shift_pixels", type=int, default=4, help="largest random shift of the cutout (pixels)")
    out = parser.add_argument_group("output")
    out.add_argument("--output_dir", required=True)
    out.add_argument("--checkpointing_steps", type=int, default=None, help="save a checkpoint every N steps")
    out.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint folder")
    out.add_argument("--eval_steps", type=int, default=None, help="validate every N steps (and at the end)")
    out.add_argument("--max_eval_samples", type=int, default=256)
    out.add_argument("--with_tracking", action="store_true", help="log to tensorboard in OUTPUT_DIR/logs")
    out.add_argument("--log_sample_ids", action="store_true", help="write the targetids each process trained on")
    out.add_argument("--push_to_hub", action="store_true", help="upload the final model to the Hub")
    out.add_argument("--hub_model_id", default=None, help="ORG/NAME for --push_to_hub")
    return parser


def validate_args(args: argparse.Namespace) -> None:
    """Raise ValueError (printed as one line, exit 2) for inconsistent arguments."""
    if args.max_steps < 1:
        raise ValueError(f"--max_steps must be >= 1, got {args.max_steps}")
    if args.per_device_batch_size < 1:
        raise ValueError(f"--per_device_batch_size must be >= 1, got {args.per_device_batch_size}")
    if args.shuffle_buffer_size < 1:
        raise ValueError(f"--shuffle_buffer_size must be >= 1, got {args.shuffle_buffer_size}")
    if not 0.0 <= args.validation_fraction < 1.0:
        raise ValueError(f"--validation_fraction must be in [0, 1), got {args.validation_fraction}")
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME")
    if args.config and not Path(args.config).is_file():
        raise ValueError(f"--config {args.config}: file not found")
