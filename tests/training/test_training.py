"""Pretraining with Accelerate (galspec_hf.training.loop): augmentation, exact resume after SIGKILL, NaN stop,
streaming, and two gloo processes through examples/pretrain.py as a user launches it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor

import galspec_hf  # noqa: F401  (registers the Auto classes)
from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra, GalSpecProcessor
from galspec_hf.training import augment_batch, crop_window, flip_east_west, loop, resolve_checkpoint, rotate_90
from galspec_hf.training.args import build_parser
from galspec_hf.training.data import GalSpecCollator

from .training_data import write_toy_dataset

ROOT = Path(__file__).resolve().parents[2]
PRETRAIN = ROOT / "examples" / "pretrain.py"
# the library's training entry point in a fresh process (for a run that is killed): what examples/pretrain.py runs
LOOP_MAIN = "import sys; from galspec_hf.training.loop import main; sys.exit(main(sys.argv[1:]))"


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


def _find_transform(output: torch.Tensor, source: torch.Tensor, size: int, max_shift: int):
    """Brute force: every (row shift, col shift, flip, quarter turns) whose window of `source` equals `output`.

    The window of `size` pixels is centred `shift` pixels north (rows) / west (cols) of the source centre, then
    mirrored left-right when `flip`, then turned by ``torch.rot90(k)``: the documented order of augment_batch.
    """
    top = (source.shape[-2] - size) // 2
    left = (source.shape[-1] - size) // 2
    found = []
    for dr in range(-max_shift, max_shift + 1):
        for dc in range(-max_shift, max_shift + 1):
            window = source[..., top + dr : top + dr + size, left + dc : left + dc + size]
            for flip in (False, True):
                flipped = window.flip(-1) if flip else window
                for k in range(4):
                    if torch.equal(torch.rot90(flipped, k, dims=(-2, -1)), output):
                        found.append((dr, dc, flip, k))
    return found


def test_augmentations_shift_flip_and_rotate():
    """Every shift up to max_shift, both mirror states and all four turns occur, and the fiber follows its pixel.

    A plain centre crop (or a crop that never flips, or never turns) fails this test.
    """
    pixel_scale, size, max_shift, batch = 0.262, 12, 3, 160
    big = size + 2 * max_shift
    generator = torch.Generator().manual_seed(1)
    source = torch.rand(3, big, big, generator=generator)  # no symmetry: each transform gives another image
    # each fiber on a pixel that every window contains
    rows = torch.randint(2 * max_shift, big - 2 * max_shift, (batch,), generator=generator)
    cols = torch.randint(2 * max_shift, big - 2 * max_shift, (batch,), generator=generator)
    centre = (big - 1) / 2
    offsets = torch.stack([-(cols - centre) * pixel_scale, (rows - centre) * pixel_scale], dim=-1)
    images, out_offsets = augment_batch(
        source.expand(batch, -1, -1, -1).clone(), offsets, size, pixel_scale, generator, max_shift=max_shift
    )
    index = torch.arange(big * big, dtype=torch.float64).reshape(1, big, big)  # which source pixel is where
    transforms = []
    for i in range(batch):
        found = _find_transform(images[i], source, size, max_shift)
        assert len(found) == 1, f"sample {i}: output is not one shifted, flipped, turned window of the input"
        dr, dc, flip, k = found[0]
        transforms.append(found[0])
        moved = index[..., (big - size) // 2 + dr :, (big - size) // 2 + dc :][..., :size, :size]
        moved = torch.rot90(moved.flip(-1) if flip else moved, k, dims=(-2, -1))[0]
        r, c = _fiber_pixel(images[i], out_offsets[i], pixel_scale)
        assert 0 <= r < size and 0 <= c < size
        assert moved[r, c] == rows[i] * big + cols[i], f"sample {i}: the fiber left its pixel"
        # the offset stays on a pixel centre
        assert torch.allclose(out_offsets[i] / pixel_scale % 1.0, torch.full((2,), 0.5), atol=1e-4)
    assert {t[0] for t in transforms} == set(range(-max_shift, max_shift + 1))  # row shifts
    assert {t[1] for t in transforms} == set(range(-max_shift, max_shift + 1))  # column shifts
    assert {(t[2], t[3]) for t in transforms} == {(f, k) for f in (False, True) for k in range(4)}
    identity = sum(t == (0, 0, False, 0) for t in transforms)
    assert identity < 0.05 * batch
    # switched off: no flips or turns, only shifts; and no shift at all with max_shift=0
    images, _ = augment_batch(source[None].expand(20, -1, -1, -1), offsets[:20], size, pixel_scale, generator,
                              max_shift=max_shift, flips=False, rotations=False)  # fmt: skip
    only_shifts = [_find_transform(image, source, size, max_shift)[0] for image in images]
    assert all(t[2:] == (False, 0) for t in only_shifts) and any(t[:2] != (0, 0) for t in only_shifts)
    images, _ = augment_batch(source[None].expand(20, -1, -1, -1), offsets[:20], size, pixel_scale, generator)
    assert all(_find_transform(image, source, size, 0)[0][:2] == (0, 0) for image in images)


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


@pytest.mark.parametrize("augment", [False, True])
def test_fiber_offsets_reach_the_model_in_pretraining(tmp_path, augment):
    """Non-zero fiber offsets go from the data set through the collator and a pretraining step into the model.

    Hooks record what the model's forward, its encoder's fiber encoding and its fiber readout receive. Without
    augmentation each galaxy's offset arrives unchanged; with it, it arrives moved with the image, still on the
    marked pixel under the fiber.
    """
    config = GalSpecConfig.from_preset("tiny")
    rows, margin, mark = 8, 4, 1000.0
    rng = np.random.default_rng(0)
    # fibers on pixel centres (the 40-pixel cutout's centre lies between pixels) up to 8.5 pixels from the centre,
    # inside every window a 4-pixel shift can cut
    offsets = (rng.integers(-8, 8, size=(rows, 2)) + 0.5) * config.pixel_scale
    assert np.all(np.abs(offsets) > 0)
    dataset = write_toy_dataset(
        tmp_path / "data", config, num_rows=rows, margin=margin, fiber_offset=offsets, mark_fiber=mark
    )
    expected = {round(float(z), 5): offset for z, offset in zip(dataset["redshift"], offsets, strict=True)}
    seen = {"forward": [], "encoder": [], "readout": []}

    def create_model(args):
        model = loop.create_model(args)
        model.register_forward_pre_hook(
            lambda module, a, kw: seen["forward"].append({k: kw[k].detach().clone() for k in kw}), with_kwargs=True
        )
        model.galspec.embeddings.fiber_encoder.register_forward_pre_hook(
            lambda module, a: seen["encoder"].append(a[0].detach().clone())
        )
        model.decoder.readout.register_forward_pre_hook(
            lambda module, a: seen["readout"].append(a[2].detach().clone())
        )
        return model

    argv = [
        "--dataset", str(tmp_path / "data"), "--preset", "tiny", "--max_steps", "2", "--per_device_batch_size", "4",
        "--output_dir", str(tmp_path / "out"), "--warmup_steps", "0", "--validation_fraction", "0", "--cpu",
        "--max_shift_pixels", str(margin), "--augment" if augment else "--no-augment",
    ]  # fmt: skip
    loop.training_function(build_parser().parse_args(argv), create_model=create_model)
    assert len(seen["forward"]) == 2 and len(seen["encoder"]) == 2 and len(seen["readout"]) == 2
    moved = 0
    for inputs, encoded, read in zip(seen["forward"], seen["encoder"], seen["readout"], strict=True):
        offset = inputs["fiber_offset"]
        assert offset.shape == (4, 2) and torch.all(offset.abs() > 0)
        assert torch.equal(encoded, offset) and torch.equal(read, offset)  # the model computes with it
        images = inputs["pixel_values"]
        assert images.shape[-1] == config.image_size
        for i in range(4):
            source = torch.as_tensor(expected[round(float(inputs["redshift"][i]), 5)], dtype=torch.float32)
            if not augment:
                assert torch.allclose(offset[i], source, atol=1e-6)
            moved += not torch.allclose(offset[i], source, atol=1e-6)
            r, c = _fiber_pixel(images[i], offset[i], config.pixel_scale)
            assert torch.all(images[i, :, r, c] == mark), f"the fiber of sample {i} is not on its marked pixel"
    assert (moved > 0) == augment


def _arguments(data, output, *extra, max_steps=12) -> list[str]:
    return [
        "--dataset", str(data), "--preset", "tiny", "--max_steps", str(max_steps), "--per_device_batch_size", "4",
        "--output_dir", str(output), "--warmup_steps", "2", "--seed", "3", *extra,
    ]  # fmt: skip


def _pretrain(tmp_path, data, output, *extra, check=True, max_steps=12):
    """The library's training entry point, `galspec_hf.training.loop.main`, in a fresh process."""
    command = [sys.executable, "-c", LOOP_MAIN, *_arguments(data, output, *extra, max_steps=max_steps)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _main(capsys, data, output, *extra, max_steps=12) -> tuple[int, str]:
    """`galspec_hf.training.loop.main` in this process (on the CPU, as every in-process run here): (code, stderr)."""
    code = loop.main(_arguments(data, output, "--cpu", *extra, max_steps=max_steps))
    return code, capsys.readouterr().err


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
        sys.executable, "-c", LOOP_MAIN, *_arguments(data, killed, "--checkpointing_steps", "5", max_steps=int(steps))
    ]
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


def test_non_finite_loss_stops_with_the_step(tmp_path, capsys):
    config = GalSpecConfig.from_preset("tiny")
    write_toy_dataset(tmp_path / "data", config, num_rows=16)
    code, stderr = _main(capsys, tmp_path / "data", tmp_path / "out", "--learning_rate", "1e30", "--max_grad_norm",
                         "1e30")  # fmt: skip
    assert code == 1
    assert "non-finite loss" in stderr and "at step" in stderr
    assert "Traceback" not in stderr


def test_non_finite_loss_is_a_training_error_not_a_user_error(tmp_path):
    from galspec_hf.errors import GalSpecError, GalSpecTrainingError, GalSpecUserError

    assert issubclass(GalSpecTrainingError, GalSpecError) and not issubclass(GalSpecTrainingError, GalSpecUserError)
    config = GalSpecConfig.from_preset("tiny")
    write_toy_dataset(tmp_path / "data", config, num_rows=16)
    argv = _arguments(tmp_path / "data", tmp_path / "out", "--cpu", "--learning_rate", "1e30", "--max_grad_norm",
                      "1e30")  # fmt: skip
    with pytest.raises(GalSpecTrainingError, match="non-finite loss .* at step"):
        loop.training_function(build_parser().parse_args(argv))


def test_bad_arguments_exit_2(tmp_path, capsys):
    code, stderr = _main(capsys, tmp_path / "missing", tmp_path / "out")
    assert code == 2
    assert "Traceback" not in stderr and "error:" in stderr
    code, stderr = _main(capsys, tmp_path, tmp_path / "out", "--push_to_hub")
    assert code == 2 and "--hub_model_id" in stderr


def test_bad_arguments_exit_2_from_the_example_script(tmp_path):
    """examples/pretrain.py end to end, as a user runs it: one line on stderr, exit code 2."""
    command = [sys.executable, str(PRETRAIN), *_arguments(tmp_path / "missing", tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith("pretrain.py: error: ")


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


def test_streaming_resume_and_tracking(tmp_path, capsys):
    config = GalSpecConfig.from_preset("tiny")
    write_toy_dataset(tmp_path / "data", config, num_rows=24)
    common = ("--streaming", "--checkpointing_steps", "4", "--validation_fraction", "0.2")
    code, stderr = _main(capsys, tmp_path / "data", tmp_path / "straight", *common, "--with_tracking", max_steps=10)
    assert code == 0, stderr[-3000:]
    assert list((tmp_path / "straight" / "logs").rglob("events.out.tfevents.*"))  # tensorboard wrote events
    # resume a fresh run from the straight run's step-4 checkpoint: same schedule, same data position
    checkpoint = tmp_path / "straight" / "checkpoint-4"
    assert json.loads((checkpoint / "training_state.json").read_text())["step"] == 4
    resume = ("--resume_from_checkpoint", str(checkpoint))
    code, stderr = _main(capsys, tmp_path / "data", tmp_path / "resumed", *common, *resume, max_steps=10)
    assert code == 0, stderr[-3000:]
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    results = json.loads((tmp_path / "resumed" / "train_results.json").read_text())
    assert results["steps"] == 10 and results["eval_pixels"] > 0
