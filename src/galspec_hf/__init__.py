"""galspec-hf: IFU spectroscopy with one fiber, as a Hugging Face model package.

Importing the package registers the GalSpec configuration, model and processor with the
transformers Auto classes: ``AutoConfig``, ``AutoModel`` and ``AutoModelForPreTraining`` (both give
:class:`GalSpecForMaskedSpectra`), ``AutoFeatureExtractor`` and ``AutoProcessor``.

It does so without importing torch: the registration runs when transformers' Auto modules are imported
(:mod:`galspec_hf._auto`), and the model classes below are imported when first used. So the ``galspec``
command line, the data builder, the simulator and the line fitter start in a fraction of a second.
"""

from __future__ import annotations

import importlib

from ._auto import install_auto_registration

__version__ = "0.1.0.dev0"

# name -> module that defines it (imported on first use: these pull in torch and transformers).
_LAZY = {
    name: "galspec_hf.models.galspec"
    for name in (
        "GalSpecConfig",
        "GalSpecForMaskedSpectra",
        "GalSpecForMaskedSpectraOutput",
        "GalSpecModel",
        "GalSpecModelOutput",
        "GalSpecPreTrainedModel",
        "GalSpecProcessor",
        "GalSpecSpectraOutput",
    )
}
_LAZY["GalSpecCubeOutput"] = "galspec_hf.cube"

__all__ = [*_LAZY, "list_models", "__version__"]

install_auto_registration()


def list_models() -> list[str]:
    """Names of the model presets shipped with the package (``tiny``, ``small``, ``base``)."""
    from .models.galspec.configuration_galspec import list_presets  # noqa: PLC0415

    return list_presets()


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
