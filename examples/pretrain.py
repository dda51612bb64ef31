"""Pretrain a GalSpec model with Accelerate: one CPU, several processes, one or many GPUs, FSDP.

A thin script around the library's loop (:mod:`galspec_hf.training.loop`, laid out after accelerate's
``examples/complete_nlp_example.py``: ``get_dataloaders``, ``training_function``, ``main`` with argparse).
Launch with ``accelerate launch examples/pretrain.py`` (see examples/README.md for every setting) or plain
``python examples/pretrain.py``:

    accelerate launch --mixed_precision bf16 examples/pretrain.py --dataset data/desi --preset small \\
        --max_steps 2000 --checkpointing_steps 500 --with_tracking --output_dir runs/pretrain
    accelerate launch examples/pretrain.py ... --resume_from_checkpoint latest

Data: a folder made by ``galspec build-dataset`` (``save_to_disk`` or Parquet shards), or a Hub
data set id; ``--streaming`` reads it lazily. Each optimiser step draws its masking noise and
augmentation from a generator seeded by (seed, step, process), and checkpoints record the position
in the data, so ``--resume_from_checkpoint`` continues exactly where the run stopped.

Exit codes: 0 done, 2 bad arguments or a missing file (one line on stderr), 1 a run that had to stop
(a non-finite loss: one line naming the step).
"""

from __future__ import annotations

import sys

from galspec_hf.training.args import build_parser
from galspec_hf.training.loop import create_model
from galspec_hf.training.loop import main as run_training


def main(argv: list[str] | None = None) -> int:
    """Parse the pretraining options and train a new model from ``--preset`` / ``--config``."""
    return run_training(argv, parser=build_parser(), create_model=create_model)


if __name__ == "__main__":
    sys.exit(main())
