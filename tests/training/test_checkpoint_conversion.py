"""A training checkpoint becomes a from_pretrained folder (modeling/convert_checkpoint.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModel

import galspec_hf  # noqa: F401  (registers the Auto classes)
from galspec_hf import GalSpecConfig
from galspec_hf.training import loop

from .training_data import write_toy_dataset

ROOT = Path(__file__).resolve().parents[2]
CONVERT = ROOT / "modeling" / "convert_checkpoint.py"


def _convert(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CONVERT), *argv], capture_output=True, text=True, timeout=600)


def test_checkpoint_converts_to_the_model_the_run_saved(tmp_path):
    config = GalSpecConfig.from_preset("tiny")
    data, run = tmp_path / "data", tmp_path / "run"
    write_toy_dataset(data, config, num_rows=16)
    argv = [
        "--dataset", str(data), "--preset", "tiny", "--max_steps", "4", "--per_device_batch_size", "4",
        "--output_dir", str(run), "--warmup_steps", "0", "--seed", "1", "--cpu", "--checkpointing_steps", "2",
    ]  # fmt: skip
    assert loop.main(argv) == 0
    assert (run / "checkpoint-4" / "config.json").is_file()

    result = _convert("--run_dir", str(run), "--checkpoint", "latest", "--out", str(tmp_path / "converted"))
    assert result.returncode == 0, result.stderr[-2000:]
    # the last checkpoint (step 4) is the model the run saved at its end, weight for weight
    converted, final = (
        load_file(str(tmp_path / "converted" / "model.safetensors")),
        load_file(str(run / "model.safetensors")),
    )
    assert converted.keys() == final.keys()
    for name in final:
        assert torch.equal(converted[name], final[name]), name
    model = AutoModel.from_pretrained(tmp_path / "converted")
    assert type(model).__name__ == "GalSpecForMaskedSpectra"
    assert (tmp_path / "converted" / "preprocessor_config.json").is_file()

    # an earlier checkpoint is a different model (the conversion does not just copy the final weights)
    assert _convert("--checkpoint", str(run / "checkpoint-2"), "--out", str(tmp_path / "step2")).returncode == 0
    step2 = load_file(str(tmp_path / "step2" / "model.safetensors"))
    assert any(not torch.equal(step2[name], final[name]) for name in final)


def test_convert_user_errors_are_one_line_exit_2(tmp_path):
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "training_state.json").write_text('{"step": 3}')
    result = _convert("--checkpoint", str(tmp_path / "checkpoint-3"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no config.json" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()

    result = _convert("--run_dir", str(tmp_path / "nothing"), "--checkpoint", "latest", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "no checkpoint written yet" in result.stderr

    (tmp_path / "taken").mkdir()
    result = _convert("--checkpoint", str(tmp_path / "checkpoint-3"), "--out", str(tmp_path / "taken"))
    assert result.returncode == 2 and "exists; use --overwrite" in result.stderr
