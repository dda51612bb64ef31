"""Registering the GalSpec classes with transformers' Auto classes, without importing torch up front.

``import galspec_hf`` must make ``AutoConfig``, ``AutoModel``, ``AutoModelForPreTraining``,
``AutoFeatureExtractor`` and ``AutoProcessor`` know the ``galspec`` model type, and it must also stay light:
the ``galspec`` command line, the data builder, the simulator and the line fitter never need torch, and
importing transformers' configuration classes already imports torch (about 4 s of a 6 s start-up).

So the package registers a post-import hook (wrapt's, the well-kept implementation of PEP 369's idea) on
each of transformers' Auto modules: the moment one of them is imported (or at once, if it already is), the
matching GalSpec class is imported and registered. A user who never touches an Auto class or a model never
pays for torch; one who does finds the ``galspec`` model type registered, whatever the import order.
"""

from __future__ import annotations

import importlib
import sys

from wrapt.importer import register_post_import_hook

_AUTO = "transformers.models.auto"
_OURS = "galspec_hf.models.galspec"

# (transformers' Auto module, its Auto classes, our module, our class registered with them)
REGISTRATIONS = (
    (f"{_AUTO}.configuration_auto", ("AutoConfig",), f"{_OURS}.configuration_galspec", "GalSpecConfig"),
    # AutoModel gives the full model (encoder, decoder and heads): predicting spectra is the point.
    (
        f"{_AUTO}.modeling_auto",
        ("AutoModel", "AutoModelForPreTraining"),
        f"{_OURS}.modeling_galspec",
        "GalSpecForMaskedSpectra",
    ),
    (f"{_AUTO}.feature_extraction_auto", ("AutoFeatureExtractor",), f"{_OURS}.processing_galspec", "GalSpecProcessor"),
    (f"{_AUTO}.processing_auto", ("AutoProcessor",), f"{_OURS}.processing_galspec", "GalSpecProcessor"),
)


def _loaded(module_name: str, attribute: str):
    """The module if it is imported and has finished defining ``attribute`` (not midway through its import)."""
    module = sys.modules.get(module_name)
    return module if module is not None and hasattr(module, attribute) else None


def _registration_hook(auto_module: str, auto_classes: tuple[str, ...], our_module: str, our_class: str):
    """A hook that registers ``our_class`` once both sides are fully imported, whichever finished last.

    Importing our model can itself import transformers' Auto modules midway (and the other way round), so
    each side's hook checks that the other side is complete; the side that completes last registers.
    """

    def hook(module) -> None:
        auto = _loaded(auto_module, auto_classes[-1])
        if auto is None:
            return  # transformers' Auto module is not (fully) imported: its own hook registers later
        ours = _loaded(our_module, our_class)
        if ours is None:
            if our_module in sys.modules:
                return  # our module is midway through its import: its own hook registers when it is done
            ours = importlib.import_module(our_module)
        config_class = _loaded(f"{_OURS}.configuration_galspec", "GalSpecConfig").GalSpecConfig
        registered = getattr(ours, our_class)
        for name in auto_classes:
            auto_class = getattr(auto, name)
            if name == "AutoConfig":
                auto_class.register(config_class.model_type, registered, exist_ok=True)
            else:
                auto_class.register(config_class, registered, exist_ok=True)

    return hook


def install_auto_registration() -> None:
    """Register the hooks on both sides of each registration (idempotent: ``exist_ok=True``)."""
    for auto_module, auto_classes, our_module, our_class in REGISTRATIONS:
        hook = _registration_hook(auto_module, auto_classes, our_module, our_class)
        register_post_import_hook(hook, auto_module)
        register_post_import_hook(hook, our_module)
