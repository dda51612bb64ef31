"""Pretraining with Accelerate: augmentation, exact resume after SIGKILL, NaN stop, two gloo processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor

import galspec_hf  # noqa: F401  (registers the Auto classes)
from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra, GalSpecProcessor
from galspec_hf.training import augment_batch, crop_window, flip_east_west, resolve_checkpoint, rotate_90
from galspec_hf.training.data import GalSpecCollator

from .training_data import write_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / "examples" / "pretrain.py"


def _fiber_pixel(image: torch.Tensor, offset: torch.Tensor, pixel_scale: float) -> tuple[int, int]:
    """Array (row, col) under a fiber offset (east, north) in the standard orientation."""
    size = image.shape[-1]
    centre = (size - 1) / 2
    return round(centre + float(offset[1]) / pixel_scale), round(centre - float(offset[0]) / pixel_scale)


def test_augmentations_move_image_and_fiber_together():
    pixel_scale, size = 0.262, 16
    generator = torch.Generator().manual_seed(0)
    for trial in range(40):
        image = torch.zeros(1, 3, size + 8, size + 8)
        row, col = torch.randint(8, 16, (2,), generator=generator).tolist()  # inside every shifted window
        image[0, :, row, col] = 1.0  # a point source
        centre = (size + 8 - 1) / 2
        offset = torch.tensor([[-(col - centre) * pixel_scale, (row - centre) * pixel_scale]])
        out_image, out_offset = augment_batch(image, offset, size, pixel_scale, generator, max_shift=4)
        assert out_image.shape == (1, 3, size, size)
        r, c = _fiber_pixel(out_image[0], out_offset[0], pixel_scale)
        assert out_image[0, 0, r, c] == 1.0, f"trial {trial}: fiber moved off the source"
        assert out_image.sum() == 3.0  # no wrap-around, nothing lost or duplicated


def test_single_transforms():
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    offset = torch.tensor([[1.0, 2.0]])
    flipped, flipped_offset = flip_east_west(image, offset)
    assert torch.equal(flipped_offset, torch.tensor([[-1.0, 2.0]]))
    assert torch.equal(flipped[0, 0, 0], torch.tensor([3.0, 2.0, 1.0, 0.0]))
    rotated, rotated_offset = rotate_90(image, offset, 1)
    assert torch.equal(rotated_offset, torch.tensor([[-2.0, 1.0]]))
    back, back_offset = rotate_90(rotated, rotated_offset, 3)
    assert torch.equal(back, image) and torch.equal(back_offset, offset)
    with pytest.raises(ValueError, match="leaves the 4x4 image"):
        crop_window(image, offset, 4, torch.tensor([1]), torch.tensor([0]), 0.262)


def test_collator_applies_mask_and_cuts_images(tmp_path):
    config = GalSpecConfig.from_preset("tiny")
    dataset = write_toy_dataset(tmp_path / "data", config, num_rows=4).with_format("numpy")
    collator = GalSpecCollator(config.image_size, config.num_wavelengths, config.fiber_diameter, margin=2)
    batch = collator([dataset[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 36, 36)
    assert (batch["spectrum_ivar"][:, 100:110] == 0).all() and (batch["spectrum_ivar"][:, 200] > 0).all()
    assert batch["targetid"].tolist() == [1000, 1001, 1002, 1003]


def _pretrain(tmp_path, data, output, *extra, env=None, check=True, max_steps=12):
    command = [
        sys.executable, str(PRETRAIN), "--dataset", str(data), "--preset", "tiny", "--max_steps", str(max_steps),
        "--per_device_batch_size", "4", "--output_dir", str(output), "--warmup_steps", "2", "--seed", "3", *extra,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.mark.slow
def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path):
    config = GalSpecConfig.from_preset("tiny")
    data = tmp_path / "data"
    write_toy_dataset(data, config, num_rows=40)
    steps = "60"
    _pretrain(tmp_path, data, tmp_path / "straight", "--checkpointing_steps", "5", max_steps=int(steps))

    killed = tmp_path / "killed"
    command = [
        sys.executable, str(PRETRAIN), "--dataset", str(data), "--preset", "tiny", "--max_steps", steps,
        "--per_device_batch_size", "4", "--output_dir", str(killed), "--warmup_steps", "2", "--seed", "3",
        "--checkpointing_steps", "5",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "latest").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists(), "the run finished before it could be killed"
    latest = resolve_checkpoint(killed, "latest")
    assert int(latest.name.split("-")[1]) < int(steps)

    _pretrain(tmp_path, data, killed, "--checkpointing_steps", "5", "--resume_from_checkpoint", "latest", max_steps=60)
    straight, resumed = _weights(tmp_path / "straight"), _weights(killed)
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_incomplete_checkpoint_is_never_latest(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / "training_state.json").write_text(json.dumps({"step": 5}))
    (tmp_path / "latest").write_text("checkpoint-5")
    (tmp_path / "checkpoint-10.tmp").mkdir()  # a save killed half way
    assert resolve_checkpoint(tmp_path, "latest") == tmp_path / "checkpoint-5"
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        resolve_checkpoint(tmp_path, str(tmp_path / "checkpoint-10.tmp"))


def test_non_finite_loss_stops_with_the_step(tmp_path):
    config = GalSpecConfig.from_preset("tiny")
    write_toy_dataset(tmp_path / "data", config, num_rows=16)
    result = _pretrain(
        tmp_path,
        tmp_path / "data",
        tmp_path / "out",
        "--learning_rate",
        "1e30",
        "--max_grad_norm",
        "1e30",
        check=False,
    )
    assert result.returncode == 1
    assert "non-finite loss" in result.stderr and "at step" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_arguments_exit_2(tmp_path):
    result = _pretrain(tmp_path, tmp_path / "missing", tmp_path / "out", check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    result = _pretrain(tmp_path, tmp_path, tmp_path / "out", "--push_to_hub", check=False)
    assert result.returncode == 2 and "--hub_model_id" in result.stderr


@pytest.mark.slow
def test_two_gloo_processes_disjoint_data_identical_weights(tmp_path):
    config = GalSpecConfig.from_preset("tiny")
    write_toy_dataset(tmp_path / "data", config, num_rows=40)
    output = tmp_path / "out"
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", str(PRETRAIN),
        "--dataset", str(tmp_path / "data"), "--preset", "tiny", "--max_steps", "4", "--per_device_batch_size", "4",
        "--output_dir", str(output), "--log_sample_ids", "--validation_fraction", "0.2",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = [set((output / f"samples_rank{rank}.txt").read_text().split()) for rank in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 16  # 4 steps x 4 samples each, all distinct
    assert not seen[0] & seen[1]
    assert (output / "weights_rank0.sha256").read_text() == (output / "weights_rank1.sha256").read_text()
    assert json.loads((output / "train_results.json").read_text())["num_processes"] == 2
    model = AutoModel.from_pretrained(output)
    processor = AutoProcessor.from_pretrained(output)
    assert isinstance(model, GalSpecForMaskedSpectra) and isinstance(processor, GalSpecProcessor)


def test_streaming_resume_and_tracking(tmp_path):
    config = GalSpecConfig.from_preset("tiny")
    write_toy_dataset(tmp_path / "data", config, num_rows=24)
    common = ("--streaming", "--checkpointing_steps", "4", "--validation_fraction", "0.2")
    _pretrain(tmp_path, tmp_path / "data", tmp_path / "straight", *common, "--with_tracking", max_steps=10)
    assert list((tmp_path / "straight" / "logs").rglob("events.out.tfevents.*"))  # tensorboard wrote events
    # resume a fresh run from the straight run's step-4 checkpoint: same schedule, same data position
    checkpoint = tmp_path / "straight" / "checkpoint-4"
    assert json.loads((checkpoint / "training_state.json").read_text())["step"] == 4
    resume = ("--resume_from_checkpoint", str(checkpoint))
    _pretrain(tmp_path, tmp_path / "data", tmp_path / "resumed", *common, *resume, max_steps=10)
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    results = json.loads((tmp_path / "resumed" / "train_results.json").read_text())
    assert results["steps"] == 10 and results["eval_pixels"] > 0
