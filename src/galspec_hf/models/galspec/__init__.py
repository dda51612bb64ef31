"""The GalSpec model: configuration, modeling and processing (flat files, shippable as Hub custom code).

Laid out as a transformers model folder: the public names are those of each file's ``__all__``, imported on
first use (so importing the configuration does not import the modeling file and torch's model code). The IFU
cube built from the model's spectra lives outside, in :mod:`galspec_hf.cube`.
"""

from typing import TYPE_CHECKING

from transformers.utils import _LazyModule
from transformers.utils.import_utils import define_import_structure

if TYPE_CHECKING:
    from .configuration_galspec import *  # noqa: F403
    from .modeling_galspec import *  # noqa: F403
    from .processing_galspec import *  # noqa: F403
else:
    import sys

    _file = globals()["__file__"]
    sys.modules[__name__] = _LazyModule(__name__, _file, define_import_structure(_file), module_spec=__spec__)
