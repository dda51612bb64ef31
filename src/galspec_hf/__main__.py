"""``python -m galspec_hf`` runs the ``galspec`` command line."""

import sys

from .cli import main

sys.exit(main())
