"""Turn a saved GalSpec model into a folder ready to upload to the Hugging Face Hub.

A GalSpec folder written by ``save_pretrained`` loads with ``AutoModel.from_pretrained`` only where
``galspec_hf`` is installed and imported (importing the package registers the Auto classes). The folder
written by :func:`export_hub_folder` also loads without the package, with ``trust_remote_code=True``:

- ``model.safetensors`` (or its shards and index), copied byte for byte;
- ``config.json`` with an ``auto_map`` pointing the Auto classes at the custom code;
- ``preprocessor_config.json`` (the :class:`GalSpecProcessor` settings) with its own ``auto_map``;
- ``configuration_galspec.py``, ``modeling_galspec.py``, ``processing_galspec.py``, copied from
  ``galspec_hf/models/galspec/`` (they import only torch, numpy, transformers and each other);
- ``README.md``, a model card with Hub metadata (license, library, tags, data sets, evaluation results),
  training data, metrics, intended use, limitations and the citation.

The folder is then published with ``huggingface_hub.upload_folder`` (see ``docs/HUB.md``).
This module is library code: ``modeling/export_hub_repo.py`` is its command line.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

#: The custom-code files shipped next to the weights (they import each other with relative imports).
HUB_CODE_FILES = ("configuration_galspec.py", "modeling_galspec.py", "processing_galspec.py")

#: ``auto_map`` written into the exported ``config.json``.
CONFIG_AUTO_MAP = {
    "AutoConfig": "configuration_galspec.GalSpecConfig",
    "AutoModel": "modeling_galspec.GalSpecForMaskedSpectra",
    "AutoModelForPreTraining": "modeling_galspec.GalSpecForMaskedSpectra",
}

#: ``auto_map`` written into the exported ``preprocessor_config.json``.
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

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

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


class HubExportError(ValueError):
    """A problem with the inputs of :func:`export_hub_folder` (a missing file, a bad field, a bad repo id)."""


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
def validate_repo_id(repo_id: str) -> str:
    """Check a Hub model repository id of the form ``ORG/NAME``.

    Parameters
    ----------
    repo_id : str
        The id, e.g. ``"org/galspec"``.

    Returns
    -------
    str
        The id, unchanged.

    Raises
    ------
    HubExportError
        When the id is not ``ORG/NAME`` with letters, digits, ``.``, ``_`` or ``-`` (at most 96 characters
        per part, no ``--`` or ``..``, not ending in ``.git``), as the Hub requires.
    """
    ok = (
        isinstance(repo_id, str)
        and _REPO_ID.match(repo_id) is not None
        and "--" not in repo_id
        and ".." not in repo_id
        and all(len(part) <= 96 and not part.endswith((".", "-")) for part in repo_id.split("/"))
        and not repo_id.endswith(".git")
    )
    if not ok:
        raise HubExportError(
            f"repo id must be ORG/NAME (letters, digits, '.', '_', '-'; no '--' or '..'), got {repo_id!r}"
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
def _fmt(value: float) -> str:
    return f"{value:.6g}"


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

    bands = ", ".join(config.bands)
    encoder = f"width {config.hidden_size}, depth {config.num_hidden_layers}, {config.num_attention_heads} heads"
    decoder = (
        f"width {config.decoder_hidden_size}, depth {config.decoder_num_hidden_layers}, "
        f"{config.decoder_num_attention_heads} heads"
    )
    grid = (
        f"{config.wavelength_min:g}-{config.wavelength_max:g} A in steps of {config.wavelength_step:g} A"
        if config.wavelength_scale == "linear"
        else f"{config.wavelength_min:g}-{config.wavelength_max:g} A in log10 steps of {config.wavelength_step:g} dex"
    )
    if training_data:
        training_text = training_data.strip()
    else:
        training_text = (
            "**Not recorded.** The export did not say which data trained these weights. Before publishing, "
            "rerun `modeling/export_hub_repo.py` with `--training-data` (and `--dataset` for Hub data sets)."
        )
    if datasets:
        training_text += "\n\nHub data sets: " + ", ".join(
            f"[`{d}`](https://huggingface.co/datasets/{d})" for d in datasets
        )

    if metrics:
        dataset = metrics["dataset"]
        split = f", split `{dataset['split']}`" if dataset.get("split") else ""
        rows = "\n".join(f"| `{k}` | {_METRIC_NAMES.get(k, k)} | {_fmt(v)} |" for k, v in metrics["metrics"].items())
        source = f"\n\nSource: {metrics['source']}." if metrics.get("source") else ""
        evaluation_text = (
            f"Measured on **{dataset['name']}** (type `{dataset['type']}`{split}).\n\n"
            f"| metric | meaning | value |\n|---|---|---|\n{rows}{source}\n\n"
            "Calibration means that about 68.3% of held-out pixels fall within 1 sigma and 95.4% within "
            "2 sigma, with sigma^2 = sigma_model^2 + 1/ivar."
        )
    else:
        evaluation_text = (
            "**Metrics: not yet measured.** No evaluation results were given to the export "
            "(`--metrics FILE`), so none are reported; in particular the calibration of the predicted "
            "uncertainties (coverage at 1 and 2 sigma) has not been checked for these weights."
        )

    body = f"""
# {name}

GalSpec predicts the spectrum that a fiber would record at any position on a galaxy, with an
uncertainty per pixel (trained to be calibrated; see Evaluation), from a multi-band image of the
galaxy; asking for a grid of positions gives an IFU-like data cube. It is a masked autoencoder over
image patches and spectrum patches with fiber-position and redshift-aware wavelength encodings,
following arXiv:{PAPER_ARXIV_ID} ("{PAPER_TITLE}"), written as a Transformers model by the galspec-hf
package (version {package_version}).

| | |
|---|---|
| parameters | {num_parameters:,} |
| image | {config.image_size} x {config.image_size} px of {config.pixel_scale:g}"/px, bands {bands} (nanomaggies) |
| wavelength grid | {grid}, {config.num_wavelengths} pixels, vacuum, observed frame |
| default fiber diameter | {config.fiber_diameter:g}" |
| encoder | {encoder} |
| decoder | {decoder} |
| output units | 1e-17 erg/s/cm2/A (mean and sigma per pixel) |

## How to use

With only `torch`, `numpy` and `transformers` installed (the model code in this repository runs,
hence `trust_remote_code=True`; read it first):

```python
import torch
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)

batch = processor(images, redshift)                  # images: (B, {len(config.bands)}, H, W) nanomaggies
fibers = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])    # (B, K, 2) arcsec east, north of the image centre
out = model.predict_spectra(batch["pixel_values"], batch["redshift"], fibers)
out.wavelength, out.mean, out.sigma                  # (L,) Angstrom; (B, K, L) 1e-17 erg/s/cm2/A
```

With `pip install galspec-hf`, `import galspec_hf` registers the same classes, and `trust_remote_code` is not
needed.

Conventions: sky offsets are tangent-plane arcsec from the image centre, east and north positive; images
are in the standard orientation of Legacy Surveys cutouts (east left, north up); wavelengths are vacuum
Angstrom in the observed frame.

## Training data

{training_text}

## Evaluation

{evaluation_text}

## Intended use

- Research on spatially resolved galaxy properties: predicted fiber spectra at chosen positions, IFU-like
  cubes and emission-line maps for galaxies that have an image but no integral-field spectroscopy.
- Choosing targets for IFU follow-up, and comparing predictions with real IFU data (e.g. MaNGA).
- A starting point for fine-tuning on other surveys (other bands, wavelength grids, fiber sizes).

Out of scope: replacing observed spectra for precision measurements of individual galaxies; images from
another survey, band set, pixel scale or orientation than the configuration above without fine-tuning;
objects unlike the training sample (stars, quasars, redshifts or magnitudes outside its range).

## Limitations

- The model learns spatial variation from one fiber per galaxy across many galaxies; it relies on fiber
  placements varying and on galaxies resembling each other. Predictions far from where training fibers
  landed (outer regions, unusual morphologies, mergers) are extrapolations.
- sigma is a per-pixel marginal scatter: it carries no correlation between pixels or between positions.
- The uncertainty is only as calibrated as measured: see Evaluation.
- The image resolution (seeing, PSF) and the fiber size limit the spatial detail; a cube is not a
  higher-resolution observation than the image.
- Outputs depend on the flux normalisation in a {config.normalization_aperture_diameter:g}" aperture of the
  {config.normalization_band} band: blank or badly centred cutouts give meaningless scales.

## Citation

The method is described in arXiv:{PAPER_ARXIV_ID} (author list: see the arXiv record):

```bibtex
@misc{{arxiv{PAPER_ARXIV_ID.replace(".", "_")},
  title         = {{{PAPER_TITLE}}},
  year          = {{2026}},
  eprint        = {{{PAPER_ARXIV_ID}}},
  archivePrefix = {{arXiv}},
  primaryClass  = {{astro-ph.GA}},
  url           = {{https://arxiv.org/abs/{PAPER_ARXIV_ID}}},
}}
```
"""
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")


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
    del model

    processor_file = model_dir / "preprocessor_config.json"
    processor_created = not processor_file.is_file()
    if processor_created:
        processor_dict = GalSpecProcessor.from_config(config).to_dict()
    else:
        processor_dict = _read_json(processor_file, "preprocessor_config.json")
        try:
            GalSpecProcessor.from_dict(dict(processor_dict))
        except (TypeError, ValueError) as error:
            raise HubExportError(f"{processor_file}: not a valid GalSpecProcessor configuration ({error})") from None
    processor_dict.pop("auto_map", None)
    processor_dict["auto_map"] = dict(PROCESSOR_AUTO_MAP)
    processor_dict.setdefault("feature_extractor_type", "GalSpecProcessor")

    code_dir = _code_dir()
    for name in HUB_CODE_FILES:
        if not (code_dir / name).is_file():
            raise HubExportError(f"{code_dir / name}: custom-code file not found in the installed package")
        _check_code_imports(code_dir / name)

    config_dict = dict(config_dict)
    config_dict["auto_map"] = dict(CONFIG_AUTO_MAP)
    config_dict["architectures"] = ["GalSpecForMaskedSpectra"]

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
        (staging / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")
        (staging / "preprocessor_config.json").write_text(json.dumps(processor_dict, indent=2, sort_keys=True) + "\n")
        for name in HUB_CODE_FILES:
            shutil.copyfile(code_dir / name, staging / name)
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
