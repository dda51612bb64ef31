"""Generate the synthetic survey with ground truth (thin wrapper over ``galspec simulate``).

    python data_scripts/make_synthetic_survey.py --n-galaxies 10000 --n-ifu 100 --seed 0 --out data/synthetic

All options are those of ``galspec simulate`` (see ``galspec simulate --help`` and docs/SIMULATION.md).
"""

from __future__ import annotations

import sys

from galspec_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["simulate", *sys.argv[1:]]))
