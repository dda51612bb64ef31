"""`evaluate` metric modules, loadable from a local path.

    import evaluate
    from galspec_hf.evaluate_modules import module_path
    metric = evaluate.load(module_path("spectral_calibration"))
    metric.compute(predictions=mean, sigmas=sigma, references=flux, ivars=ivar)

Each module is a thin wrapper around the plain functions in :mod:`galspec_hf.metrics`.
"""

from pathlib import Path

MODULES = ("spectral_calibration", "line_map_agreement")


def module_path(name: str) -> str:
    """Folder of an `evaluate` module shipped with galspec-hf (pass it to ``evaluate.load``)."""
    if name not in MODULES:
        raise ValueError(f"module_path: `name` must be one of {list(MODULES)}, got {name!r}")
    return str(Path(__file__).resolve().parent / name)
