"""Turn a saved GalSpec model into a folder ready to upload to the Hugging Face Hub.

A GalSpec folder written by ``save_pretrained`` loads with ``AutoModel.from_pretrained`` only where
``galspec_hf`` is installed and imported (importing the package registers the Auto classes). The folder
written by :func:`export_hub_folder` also loads without the package, with ``trust_remote_code=True``:

- ``model.safetensors`` (or its shards and index), copied byte for byte;
- ``config.json`` with an ``auto_map`` pointing the Auto classes at the custom code;
- ``preprocessor_config.json`` (the :class:`GalSpecProcessor` settings) with its own ``auto_map``;
- ``configuration_galspec.py``, ``modeling_galspec.py``, ``processing_galspec.py``, from
  ``galspec_hf/models/galspec/`` (they import only torch, numpy, transformers and each other);
- ``README.md``, a model card with Hub metadata (license, library, tags, data sets, evaluation results),
  training data, metrics, intended use, limitations and the citation, rendered from the package's
  ``templates/model_card_template.md``.

The ``auto_map`` entries and the code files are written by transformers itself: the classes are registered
for their Auto classes (``register_for_auto_class``) only while the export saves them, and ``save_pretrained``
(through ``transformers.dynamic_module_utils.custom_object_save``) maps each Auto class to the class's file and
copies that file with every file it imports relatively.

The folder is then published with ``huggingface_hub.upload_folder`` (see ``docs/HUB.md``).
This module is library code: ``modeling/export_hub_repo.py`` is its command line.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HubExportError

__all__ = [
    "CONFIG_AUTO_MAP",
    "HUB_CODE_FILES",
    "HubExport",
    "HubExportError",
    "PAPER_ARXIV_ID",
    "PROCESSOR_AUTO_MAP",
    "build_model_card",
    "export_hub_folder",
    "load_metrics_file",
    "validate_repo_id",
]

#: The custom-code files shipped next to the weights: the model's file and the files it imports relatively,
#: which transformers copies (they import each other with relative imports).
HUB_CODE_FILES = ("configuration_galspec.py", "modeling_galspec.py", "processing_galspec.py")

#: ``auto_map`` of the exported ``config.json``: each class is registered for these Auto classes while it is
#: saved, and transformers writes the entries.
CONFIG_AUTO_MAP = {
    "AutoConfig": "configuration_galspec.GalSpecConfig",
    "AutoModel": "modeling_galspec.GalSpecForMaskedSpectra",
    "AutoModelForPreTraining": "modeling_galspec.GalSpecForMaskedSpectra",
}

#: ``auto_map`` of the exported ``preprocessor_config.json`` (written the same way).
PROCESSOR_AUTO_MAP = {
    "AutoFeatureExtractor": "processing_galspec.GalSpecProcessor",
    "AutoProcessor": "processing_galspec.GalSpecProcessor",
}

#: The paper the model follows: "Integral Field Unit Spectroscopy with One Fiber".
PAPER_ARXIV_ID = "2606.10197"
PAPER_TITLE = "Integral Field Unit Spectroscopy with One Fiber"

# Third-party packages the custom code may import at module level (plus the standard library).
_ALLOWED_CODE_IMPORTS = frozenset({"torch", "numpy", "transformers"})

_WEIGHT_FILE = "model.safetensors"
_WEIGHT_INDEX = "model.safetensors.index.json"
_NOT_SAFETENSORS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")

# Human-readable names of the metrics the training scripts report (other keys are shown as given).
_METRIC_NAMES = {
    "nll": "Gaussian negative log-likelihood per observed pixel",
    "coverage_1sigma": "Fraction of held-out pixels within 1 sigma (ideal 0.683)",
    "coverage_2sigma": "Fraction of held-out pixels within 2 sigma (ideal 0.954)",
}

# The model card, a Jinja template shipped as package data (like templates/mileshc_templates.npz).
_CARD_TEMPLATE = Path(__file__).resolve().parent / "templates" / "model_card_template.md"

_CARD_TAGS = [
    "galspec",
    "astronomy",
    "astrophysics",
    "galaxies",
    "spectroscopy",
    "integral-field-spectroscopy",
    "masked-autoencoder",
    "uncertainty-quantification",
    "custom_code",
]


@dataclass
class HubExport:
    """What :func:`export_hub_folder` wrote.

    Attributes
    ----------
    out_dir : Path
        The exported folder.
    repo_id : str
        The Hub repository id the folder was written for (``ORG/NAME``).
    files : list of str
        Names of the files in the folder, sorted.
    num_parameters : int
        Number of parameters of the model.
    processor_created : bool
        True when the model folder had no ``preprocessor_config.json`` and the processor was built from the
        model configuration (``GalSpecProcessor.from_config``).
    metrics : dict
        The metrics written into the model card (empty when none were given).
    """

    out_dir: Path
    repo_id: str
    files: list[str] = field(default_factory=list)
    num_parameters: int = 0
    processor_created: bool = False
    metrics: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Validation helpers
# ------------------------------------------------------------------------------------------------
def validate_repo_id(repo_id: str, *, what: str = "repo id") -> str:
    """Check a Hub repository id of the form ``ORG/NAME``, by ``huggingface_hub``'s rules.

    Parameters
    ----------
    repo_id : str
        The id, e.g. ``"org/galspec"``.
    what : str, optional
        What the id is, to start the error message (e.g. ``"--dataset"``).

    Returns
    -------
    str
        The id, unchanged.

    Raises
    ------
    HubExportError
        When the id has no ``ORG/`` part or fails ``huggingface_hub.utils.validate_repo_id`` (letters, digits,
        ``.``, ``_`` or ``-``, at most 96 characters, no ``--`` or ``..``, not ending in ``.git``).
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hub_validate_repo_id

    try:
        hub_validate_repo_id(repo_id)
        ok = isinstance(repo_id, str) and repo_id.count("/") == 1  # the Hub also takes a bare NAME
    except HFValidationError:
        ok = False
    if not ok:
        raise HubExportError(
            f"{what} must be ORG/NAME (letters, digits, '.', '_', '-'; no '--' or '..'), got {repo_id!r}"
        )
    return repo_id


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HubExportError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HubExportError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise HubExportError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_metrics_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a metrics JSON file for the model card.

    The file holds measured evaluation results; nothing in it is invented or filled in::

        {
          "dataset": {"name": "DESI DR1 held-out 1%", "type": "desi-dr1", "split": "test"},
          "metrics": {"nll": 0.93, "coverage_1sigma": 0.671, "coverage_2sigma": 0.948},
          "source": "examples/pretrain.py validation at step 20000"
        }

    ``dataset.name`` and at least one metric are required; ``dataset.type`` defaults to the name,
    ``dataset.split`` and ``source`` are optional. Metric values must be finite numbers.

    Parameters
    ----------
    path : path-like
        The JSON file.

    Returns
    -------
    dict
        ``{"dataset": {"name", "type", "split"}, "metrics": {name: float}, "source": str | None}``.

    Raises
    ------
    HubExportError
        Naming the file and the field when the file is missing, not JSON, or a field is missing or wrong.
    """
    path = Path(path)
    data = _read_json(path, "metrics file")
    dataset = data.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), str) or not dataset["name"].strip():
        raise HubExportError(f"{path}: field `dataset.name` must be a non-empty string naming the evaluation data")
    for key in ("type", "split"):
        if key in dataset and not (isinstance(dataset[key], str) and dataset[key].strip()):
            raise HubExportError(f"{path}: field `dataset.{key}` must be a non-empty string, got {dataset[key]!r}")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise HubExportError(f"{path}: field `metrics` must be a non-empty object of name -> number")
    checked: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise HubExportError(f"{path}: field `metrics.{name}` must be a finite number, got {value!r}")
        checked[str(name)] = float(value)
    source = data.get("source")
    if source is not None and not isinstance(source, str):
        raise HubExportError(f"{path}: field `source` must be a string, got {source!r}")
    unknown = sorted(set(data) - {"dataset", "metrics", "source"})
    if unknown:
        raise HubExportError(f"{path}: unknown field(s) {unknown}; expected only `dataset`, `metrics`, `source`")
    return {
        "dataset": {
            "name": dataset["name"].strip(),
            "type": dataset.get("type", dataset["name"]).strip(),
            "split": dataset.get("split"),
        },
        "metrics": checked,
        "source": source,
    }


def _code_dir() -> Path:
    from .models import galspec

    return Path(galspec.__file__).resolve().parent


def _check_code_imports(path: Path) -> None:
    """Fail when a custom-code file imports a package a bare transformers install may lack."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    stdlib = set(sys.stdlib_module_names)
    for node in tree.body:  # module level only: that is what runs on import
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in stdlib and top not in _ALLOWED_CODE_IMPORTS and top != "__future__":
                raise HubExportError(
                    f"{path}: imports `{name}` at module level; Hub custom code may import only "
                    f"{sorted(_ALLOWED_CODE_IMPORTS)}, the standard library and its sibling files"
                )


@contextlib.contextmanager
def _registered_for_auto_class(cls: type, auto_class: str):
    """Register ``cls`` for ``auto_class`` (``register_for_auto_class``) inside the block only.

    The registration is a class attribute that makes every later ``save_pretrained`` write ``auto_map`` and copy
    code; restoring it afterwards leaves the classes as the export found them.
    """
    own = "_auto_class" in vars(cls)
    previous = vars(cls).get("_auto_class")
    cls.register_for_auto_class(auto_class)
    try:
        yield
    finally:
        if own:
            cls._auto_class = previous
        else:
            del cls._auto_class  # back to the inherited value


def _save_custom_code(obj, folder: Path, target, auto_map: dict[str, str]) -> set[str]:
    """Let transformers write ``auto_map`` entries for ``obj``'s class and copy its code files into ``folder``.

    For each Auto class that ``auto_map`` maps to ``type(obj)``, the class is registered for it and
    ``transformers.dynamic_module_utils.custom_object_save`` (the step of ``save_pretrained`` for registered
    classes) adds the entry to ``target.auto_map`` and copies the class's file with the files it imports
    relatively. Returns the names of the copied files.
    """
    from transformers.dynamic_module_utils import custom_object_save

    cls = type(obj)
    written: set[str] = set()
    for auto_class, class_path in auto_map.items():
        if class_path.rsplit(".", 1)[-1] == cls.__name__:
            with _registered_for_auto_class(cls, auto_class):
                written.update(Path(path).name for path in custom_object_save(obj, folder, config=target))
    return written


def _weight_files(model_dir: Path) -> list[str]:
    if (model_dir / _WEIGHT_INDEX).is_file():
        index = _read_json(model_dir / _WEIGHT_INDEX, "safetensors index")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise HubExportError(f"{model_dir / _WEIGHT_INDEX}: field `weight_map` must be a non-empty object")
        shards = sorted(set(weight_map.values()))
        for shard in shards:
            if Path(shard).name != shard or not (model_dir / shard).is_file():
                raise HubExportError(f"{model_dir / _WEIGHT_INDEX}: shard {shard!r} not found in {model_dir}")
        return [_WEIGHT_INDEX, *shards]
    if (model_dir / _WEIGHT_FILE).is_file():
        return [_WEIGHT_FILE]
    others = [name for name in _NOT_SAFETENSORS if (model_dir / name).is_file()]
    hint = f" (found {others}: re-save the model with save_pretrained, which writes safetensors)" if others else ""
    raise HubExportError(f"{model_dir}: no {_WEIGHT_FILE} or {_WEIGHT_INDEX}{hint}")


def _prepare_out_dir(out_dir: Path, model_dir: Path, overwrite: bool) -> None:
    resolved_out, resolved_model = out_dir.resolve(), model_dir.resolve()
    if resolved_out == resolved_model or resolved_out in resolved_model.parents:
        raise HubExportError(f"--out {out_dir} must not be the model folder or contain it ({model_dir})")
    if out_dir.exists() and not out_dir.is_dir():
        raise HubExportError(f"--out {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise HubExportError(f"--out {out_dir} is not empty (pass overwrite=True / --overwrite to replace it)")


# ------------------------------------------------------------------------------------------------
# Model card
# ------------------------------------------------------------------------------------------------
def build_model_card(
    config,
    repo_id: str,
    *,
    num_parameters: int,
    metrics: dict[str, Any] | None = None,
    training_data: str | None = None,
    datasets: list[str] | None = None,
    package_version: str | None = None,
):
    """Write the model card (``README.md``) of an exported GalSpec repository.

    The text comes from the Jinja template ``galspec_hf/templates/model_card_template.md`` (rendered by
    ``huggingface_hub.ModelCard.from_template``); the Hub metadata from ``huggingface_hub.ModelCardData``.

    Parameters
    ----------
    config : GalSpecConfig
        The model configuration (bands, grids and sizes are reported from it).
    repo_id : str
        ``ORG/NAME`` on the Hub.
    num_parameters : int
        Number of model parameters.
    metrics : dict, optional
        Evaluation results as returned by :func:`load_metrics_file`. Without them the card says the
        model's metrics are not yet measured (nothing is made up).
    training_data : str, optional
        A sentence or paragraph describing the data that trained the weights.
    datasets : list of str, optional
        Hub data set ids of the training data (the card's ``datasets`` metadata).
    package_version : str, optional
        galspec-hf version that wrote the files (defaults to the installed one).

    Returns
    -------
    huggingface_hub.ModelCard
        The card; ``card.save(path)`` writes it.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    if package_version is None:
        from . import __version__ as package_version
    name = repo_id.split("/")[-1]
    datasets = [d for d in (datasets or []) if d]
    eval_results = None
    if metrics:
        dataset = metrics["dataset"]
        eval_results = [
            EvalResult(
                task_type="spectrum-prediction",
                task_name="Fiber spectrum prediction from galaxy images",
                dataset_type=dataset["type"],
                dataset_name=dataset["name"],
                dataset_split=dataset.get("split"),
                metric_type=key,
                metric_name=_METRIC_NAMES.get(key, key),
                metric_value=value,
            )
            for key, value in metrics["metrics"].items()
        ]
    card_data = ModelCardData(
        license="bsd-3-clause",
        library_name="transformers",
        tags=list(_CARD_TAGS),
        datasets=datasets or None,
        metrics=list(metrics["metrics"]) if metrics else None,
        model_name=name if eval_results else None,  # model-index needs a name; otherwise leave it out
        eval_results=eval_results,
    )

    return ModelCard.from_template(
        card_data,
        template_path=str(_CARD_TEMPLATE),
        model_name=name,
        repo_id=repo_id,
        config=config,
        num_parameters=num_parameters,
        package_version=package_version,
        training_data=training_data,
        datasets=datasets,
        evaluation=metrics or None,
        metric_names=_METRIC_NAMES,
        paper_arxiv_id=PAPER_ARXIV_ID,
        paper_title=PAPER_TITLE,
    )


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------
def export_hub_folder(
    model_dir: str | os.PathLike,
    repo_id: str,
    out_dir: str | os.PathLike,
    *,
    metrics: dict[str, Any] | str | os.PathLike | None = None,
    training_data: str | None = None,
    datasets: list[str] | None = None,
    overwrite: bool = False,
) -> HubExport:
    """Write a Hub-ready folder for the GalSpec model saved in ``model_dir``.

    The model is loaded first (so a folder whose weights do not match its configuration is refused), then the
    folder is assembled in a temporary sibling of ``out_dir`` and moved into place, so a failed export never
    leaves a half-written ``out_dir``.

    Parameters
    ----------
    model_dir : path-like
        Folder written by ``GalSpecForMaskedSpectra.save_pretrained`` (``config.json`` and safetensors weights;
        ``preprocessor_config.json`` optional: built from the configuration when absent).
    repo_id : str
        ``ORG/NAME`` of the Hub repository the folder is for (used in the model card).
    out_dir : path-like
        Output folder; must be new or empty unless ``overwrite``.
    metrics : dict or path-like, optional
        Evaluation results (a metrics JSON path, or the dict :func:`load_metrics_file` returns).
    training_data : str, optional
        Description of the training data, for the model card.
    datasets : list of str, optional
        Hub data set ids of the training data, for the card's metadata.
    overwrite : bool, optional
        Replace a non-empty ``out_dir``.

    Returns
    -------
    HubExport
        What was written.

    Raises
    ------
    HubExportError
        With the file and field at fault, for any problem with the inputs.
    """
    from safetensors import safe_open

    from .models.galspec import GalSpecConfig, GalSpecForMaskedSpectra, GalSpecProcessor

    validate_repo_id(repo_id)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not model_dir.is_dir():
        raise HubExportError(f"--model {model_dir}: folder not found")
    config_dict = _read_json(model_dir / "config.json", "model config.json")
    if config_dict.get("model_type") != GalSpecConfig.model_type:
        raise HubExportError(
            f"{model_dir / 'config.json'}: field `model_type` must be 'galspec', got {config_dict.get('model_type')!r}"
        )
    weight_files = _weight_files(model_dir)
    for name in weight_files:
        if name.endswith(".safetensors"):
            try:
                with safe_open(str(model_dir / name), framework="pt") as handle:
                    handle.keys()
            except Exception as error:  # safetensors raises its own error types
                raise HubExportError(f"{model_dir / name}: not a readable safetensors file ({error})") from None
    if isinstance(metrics, str | os.PathLike):
        metrics = load_metrics_file(metrics)
    _prepare_out_dir(out_dir, model_dir, overwrite)

    try:
        config = GalSpecConfig.from_pretrained(model_dir)
    except ValueError as error:
        raise HubExportError(f"{model_dir / 'config.json'}: {error}") from None
    try:
        model, info = GalSpecForMaskedSpectra.from_pretrained(model_dir, output_loading_info=True)
    except (RuntimeError, ValueError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HubExportError(f"{model_dir}: the weights do not load into config.json ({first_line})") from None
    problems = {k: v for k, v in info.items() if k != "error_msgs" and v}
    if problems or info.get("error_msgs"):
        raise HubExportError(
            f"{model_dir}: weights do not match config.json: {problems or info.get('error_msgs')} "
            "(expected no missing, unexpected or mismatched keys)"
        )
    num_parameters = sum(p.numel() for p in model.parameters())

    processor_file = model_dir / "preprocessor_config.json"
    processor_created = not processor_file.is_file()
    if processor_created:
        processor = GalSpecProcessor.from_config(config)
    else:
        processor_dict = _read_json(processor_file, "preprocessor_config.json")
        try:
            processor = GalSpecProcessor.from_dict(processor_dict)
        except (TypeError, ValueError) as error:
            raise HubExportError(f"{processor_file}: not a valid GalSpecProcessor configuration ({error})") from None
    # The auto_map entries are written afresh (an earlier export's are dropped); save_pretrained sets architectures.
    config.auto_map, processor.auto_map = {}, {}
    config.architectures = [type(model).__name__]

    card = build_model_card(
        config,
        repo_id,
        num_parameters=num_parameters,
        metrics=metrics,
        training_data=training_data,
        datasets=datasets,
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the export is an ordinary folder
        for name in weight_files:
            shutil.copyfile(model_dir / name, staging / name)
        # model.save_pretrained would write the weights again: its custom-code step alone, then the config's.
        code_files = _save_custom_code(model, staging, config, CONFIG_AUTO_MAP)
        code_files |= _save_custom_code(config, staging, config, CONFIG_AUTO_MAP)
        code_files |= _save_custom_code(processor, staging, processor, PROCESSOR_AUTO_MAP)
        for name in sorted(code_files):
            _check_code_imports(_code_dir() / name)
        config.save_pretrained(staging)
        processor.save_pretrained(staging)
        card.save(staging / "README.md")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return HubExport(
        out_dir=out_dir,
        repo_id=repo_id,
        files=sorted(os.listdir(out_dir)),
        num_parameters=num_parameters,
        processor_created=processor_created,
        metrics=dict(metrics["metrics"]) if metrics else {},
    )
