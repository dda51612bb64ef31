"""Atomic checkpoints: a run killed while saving never leaves a broken latest checkpoint.

A checkpoint is written to ``checkpoint-<step>.tmp`` by ``accelerator.save_state``, completed with a
``training_state.json``, then renamed to ``checkpoint-<step>`` (``os.replace`` is atomic on one
file system); only then is the ``latest`` pointer file replaced, also atomically. The model's
``config.json`` is saved beside the weights, so that :func:`checkpoint_to_pretrained` (and
``modeling/convert_checkpoint.py``) can turn any checkpoint into a ``from_pretrained`` folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import GalSpecFormatError
from ..strict_json import dumps_strict

LATEST = "latest"
STATE_FILE = "training_state.json"
CONFIG_FILE = "config.json"
# accelerate's save_state writes the first prepared model as model.safetensors (accelerate.utils.SAFE_MODEL_NAME)
MODEL_WEIGHTS_FILE = "model.safetensors"


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def save_checkpoint(accelerator, output_dir: str | Path, step: int, state: dict, keep: int = 2, config=None) -> Path:
    """Save model, optimiser, scheduler and RNG states plus `state` (step, samples seen...) atomically; with
    `config` (the model's :class:`GalSpecConfig`), also its ``config.json``."""
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step}"
    temporary = output_dir / f"checkpoint-{step}.tmp"
    if accelerator.is_main_process and temporary.exists():
        shutil.rmtree(temporary)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if config is not None:
            config.save_pretrained(temporary)
        _write_atomic(temporary / STATE_FILE, dumps_strict(state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        _write_atomic(output_dir / LATEST, final.name)
        checkpoints = sorted(
            (p for p in output_dir.glob("checkpoint-*") if p.is_dir() and not p.name.endswith(".tmp")),
            key=lambda p: int(p.name.split("-")[1]),
        )
        for old in checkpoints[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def resolve_checkpoint(output_dir: str | Path, name: str) -> Path:
    """``latest`` (the pointer file in `output_dir`) or a checkpoint folder path -> a complete checkpoint folder."""
    path = Path(name)
    if name == LATEST:
        pointer = Path(output_dir) / LATEST
        if not pointer.is_file():
            raise FileNotFoundError(f"--resume_from_checkpoint latest: no {pointer} (no checkpoint written yet)")
        path = Path(output_dir) / pointer.read_text().strip()
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {name}: {path} is not a complete checkpoint (no {STATE_FILE})"
        )
    return path


def load_checkpoint(accelerator, path: Path) -> dict:
    """Restore states saved by :func:`save_checkpoint`; returns the saved `state` dict."""
    accelerator.load_state(str(path))
    return json.loads((path / STATE_FILE).read_text())


def checkpoint_to_pretrained(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write the model of a training checkpoint as a ``save_pretrained`` folder (weights, config, processor).

    ``checkpoint`` is a ``checkpoint-<step>`` folder written by :func:`save_checkpoint` (it holds the
    accelerate state, ``config.json`` and ``model.safetensors``). The weights are loaded strictly, so a
    checkpoint of another architecture fails with the missing or unexpected names. Returns ``out_dir``.
    """
    from safetensors.torch import load_file  # noqa: PLC0415 (torch: only here)

    from ..models.galspec import GalSpecConfig, GalSpecForMaskedSpectra, GalSpecProcessor  # noqa: PLC0415

    checkpoint = Path(checkpoint)
    for name, what in ((CONFIG_FILE, "the model configuration"), (MODEL_WEIGHTS_FILE, "the model weights")):
        if not (checkpoint / name).is_file():
            raise GalSpecFormatError(
                f"{checkpoint}: no {name} ({what}); expected a checkpoint-<step> folder written by a galspec training "
                "run with --checkpointing_steps"
            )
    config = GalSpecConfig.from_pretrained(checkpoint)
    model = GalSpecForMaskedSpectra(config)
    model.load_state_dict(load_file(str(checkpoint / MODEL_WEIGHTS_FILE)), strict=True)
    model.save_pretrained(out_dir)
    GalSpecProcessor.from_config(config).save_pretrained(out_dir)
    return Path(out_dir)
