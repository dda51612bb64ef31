"""Convert a training checkpoint into a model folder that ``from_pretrained`` loads.

A run of ``examples/pretrain.py --checkpointing_steps N`` (or ``finetune.py``) leaves ``checkpoint-<step>/``
folders of accelerate state; this writes the model of one of them (weights, ``config.json``,
``preprocessor_config.json``) as a ``save_pretrained`` folder, e.g. to evaluate or export a run that was
stopped before its end. ``--checkpoint latest`` with ``--run_dir`` takes the run's newest complete checkpoint.

    python modeling/convert_checkpoint.py --run_dir runs/pretrain --checkpoint latest --out runs/pretrain_step200

User errors (a missing folder, a checkpoint without a model) print one line on stderr and exit with code 2.
The work is done by :func:`galspec_hf.training.checkpoint.checkpoint_to_pretrained`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from galspec_hf.errors import GalSpecUserError
from galspec_hf.training.checkpoint import checkpoint_to_pretrained, resolve_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint-<step> folder, or `latest` (with --run_dir)")
    parser.add_argument("--run_dir", default=".", help="the training --output_dir (for --checkpoint latest)")
    parser.add_argument("--out", required=True, help="output folder (must not exist, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if out.exists() and not args.overwrite:
            raise FileExistsError(f"--out {out} exists; use --overwrite")
        checkpoint = resolve_checkpoint(args.run_dir, args.checkpoint)
        checkpoint_to_pretrained(checkpoint, out)
    except (FileNotFoundError, FileExistsError, GalSpecUserError) as error:
        print(f"convert_checkpoint: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(f"{checkpoint} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
