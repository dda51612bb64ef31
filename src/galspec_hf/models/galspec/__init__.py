"""The GalSpec model: configuration, modeling and processing (flat files, shippable as Hub custom code)."""

from .configuration_galspec import GalSpecConfig, list_presets
from .modeling_galspec import (
    GalSpecCubeOutput,
    GalSpecForMaskedSpectra,
    GalSpecForMaskedSpectraOutput,
    GalSpecModel,
    GalSpecModelOutput,
    GalSpecPreTrainedModel,
    GalSpecSpectraOutput,
)
from .processing_galspec import GalSpecProcessor

__all__ = [
    "GalSpecConfig",
    "GalSpecCubeOutput",
    "GalSpecForMaskedSpectra",
    "GalSpecForMaskedSpectraOutput",
    "GalSpecModel",
    "GalSpecModelOutput",
    "GalSpecPreTrainedModel",
    "GalSpecProcessor",
    "GalSpecSpectraOutput",
    "list_presets",
]
