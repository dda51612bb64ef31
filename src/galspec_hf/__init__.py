"""galspec-hf: IFU spectroscopy with one fiber, as a Hugging Face model package.

Importing the package registers the GalSpec configuration, model and processor with the
transformers Auto classes: ``AutoConfig``, ``AutoModel`` and ``AutoModelForPreTraining`` (both give
:class:`GalSpecForMaskedSpectra`), ``AutoFeatureExtractor`` and ``AutoProcessor``.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForPreTraining, AutoProcessor

from .models.galspec import (
    GalSpecConfig,
    GalSpecCubeOutput,
    GalSpecForMaskedSpectra,
    GalSpecForMaskedSpectraOutput,
    GalSpecModel,
    GalSpecModelOutput,
    GalSpecPreTrainedModel,
    GalSpecProcessor,
    GalSpecSpectraOutput,
    list_presets,
)

__version__ = "0.1.0.dev0"


def list_models() -> list[str]:
    """Names of the model presets shipped with the package (``tiny``, ``small``, ``base``)."""
    return list_presets()


AutoConfig.register(GalSpecConfig.model_type, GalSpecConfig, exist_ok=True)
# AutoModel gives the full model (encoder, decoder and heads): predicting spectra is the point.
AutoModel.register(GalSpecConfig, GalSpecForMaskedSpectra, exist_ok=True)
AutoModelForPreTraining.register(GalSpecConfig, GalSpecForMaskedSpectra, exist_ok=True)
AutoFeatureExtractor.register(GalSpecConfig, GalSpecProcessor, exist_ok=True)
AutoProcessor.register(GalSpecConfig, GalSpecProcessor, exist_ok=True)

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
    "list_models",
    "__version__",
]
