#!/usr/bin/env python
"""Export a saved GalSpec model as a folder ready to upload to the Hugging Face Hub.

The folder holds the safetensors weights, ``config.json`` and ``preprocessor_config.json`` with an
``auto_map``, the custom code from ``galspec_hf/models/galspec/`` (so the model loads with
``trust_remote_code=True`` where galspec-hf is not installed) and a model card (``README.md``).

Examples (from the project root with .venv activated, or with .venv/bin/python)::

    python modeling/export_hub_repo.py --model runs/pretrain --repo-id org/galspec --out hub/galspec
    python modeling/export_hub_repo.py --model runs/pretrain --repo-id org/galspec --out hub/galspec \\
        --metrics runs/pretrain/eval_metrics.json \\
        --training-data "DESI DR1 BGS galaxies with Legacy Surveys DR9 g, r, z cutouts" --dataset org/desi-galaxies

Then upload it (see docs/HUB.md)::

    hf upload org/galspec hub/galspec . --repo-type model

The metrics file (optional) holds measured results only; without it the card says "not yet measured"::

    {"dataset": {"name": "DESI DR1 held-out 1%", "type": "desi-dr1", "split": "test"},
     "metrics": {"nll": 0.93, "coverage_1sigma": 0.671, "coverage_2sigma": 0.948}}

User errors (missing folder, bad field, bad repo id) print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys

PROG = "export_hub_repo.py"


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="See modeling/README.md and docs/HUB.md.",
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="folder written by save_pretrained")
    parser.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="Hub repository id, e.g. org/galspec")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty, or --overwrite)")
    parser.add_argument(
        "--metrics", metavar="FILE", default=None, help="JSON of measured evaluation results for the model card"
    )
    parser.add_argument(
        "--training-data", metavar="TEXT", default=None, help="description of the training data for the model card"
    )
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="ORG/NAME",
        help="Hub data set id of the training data (repeatable); goes into the card's `datasets` metadata",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the export; return the exit code (0 on success, 2 on a user error)."""
    args = build_parser().parse_args(argv)
    from galspec_hf.errors import HubExportError
    from galspec_hf.hub import export_hub_folder, validate_repo_id

    try:
        for dataset in args.dataset:
            validate_repo_id(dataset, what="--dataset")
        result = export_hub_folder(
            args.model,
            args.repo_id,
            args.out,
            metrics=args.metrics,
            training_data=args.training_data,
            datasets=args.dataset,
            overwrite=args.overwrite,
        )
    except (HubExportError, FileNotFoundError, NotADirectoryError, PermissionError) as error:
        message = str(error).replace("\n", " ")
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2

    print(f"Wrote {result.out_dir} for {result.repo_id} ({result.num_parameters:,} parameters):")
    for name in result.files:
        print(f"  {name}")
    if result.processor_created:
        print("preprocessor_config.json was missing from --model and was built from config.json.")
    if not result.metrics:
        print("No --metrics given: the model card says the metrics are not yet measured.")
    if not args.training_data and not args.dataset:
        print("No --training-data or --dataset given: the model card says the training data is not recorded.")
    print(f"Upload with:  hf upload {result.repo_id} {result.out_dir} . --repo-type model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
