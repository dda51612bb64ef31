#!/usr/bin/env python
"""Build the DESI x Legacy Surveys data set from a folder of survey files.

The same code as ``galspec build-dataset`` (same options)::

    python data_scripts/build_desi_dataset.py --input desi_dr1 --output desi_arrow
    python data_scripts/build_desi_dataset.py --input desi_dr1 --output desi_parquet --format parquet --num-proc 4
"""

from __future__ import annotations

import sys

from galspec_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-dataset", *sys.argv[1:]]))
