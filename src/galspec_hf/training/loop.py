"""The GalSpec pretraining loop with Accelerate: one CPU, several processes, one or many GPUs, FSDP.

Layout after accelerate's ``examples/complete_nlp_example.py`` (``get_dataloaders``, ``training_function``,
``main`` with argparse), with the loop in the library and thin scripts around it as in open_clip:
``examples/pretrain.py`` and ``examples/finetune.py`` call :func:`main` with their parser (:mod:`.args`) and
model factory. Launch with ``accelerate launch examples/pretrain.py`` (see examples/README.md).

Data: a folder made by ``galspec build-dataset`` (``save_to_disk`` or Parquet shards), or a Hub data set id;
``--streaming`` reads it lazily. Each optimiser step draws its masking noise and augmentation from a generator
seeded by (seed, step, process) (:func:`step_generator`), and checkpoints record the position in the data, so
``--resume_from_checkpoint`` continues exactly where the run stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..errors import GalSpecTrainingError
from ..hub import build_model_card, load_metrics_file
from ..metrics import spectral_metrics
from ..models.galspec import GalSpecConfig, GalSpecForMaskedSpectra, GalSpecProcessor
from ..strict_json import write_strict_json
from .args import build_parser, validate_args
from .augment import augment_batch
from .checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from .data import GalSpecCollator, check_columns, load_training_dataset, shuffle_stream

__all__ = [
    "MODEL_INPUTS",
    "build_config",
    "create_model",
    "evaluate",
    "get_dataloaders",
    "main",
    "step_generator",
    "training_function",
    "write_model_card",
]

#: Configuration keys that the command line can override (training/args.py's "model" group).
MODEL_OPTIONS = (
    "spectrum_mask_ratio", "image_mask_ratio", "mask_mode_probabilities", "spectrum_loss", "beta_nll_beta",
    "sigma_penalty_weight", "line_window_weight", "readout_modulation", "readout_colours",
    "decoder_image_summary", "decoder_photometry", "readout_photometry",
)  # fmt: skip
MODEL_INPUTS = ("pixel_values", "redshift", "spectrum", "spectrum_ivar", "fiber_offset", "fiber_diameter")


def build_config(args: argparse.Namespace) -> GalSpecConfig:
    """The model configuration of a run: ``--config`` (a JSON file) or ``--preset``, with the masking, loss and
    decoder options given on the command line (:data:`MODEL_OPTIONS`)."""
    overrides = {}
    for name in MODEL_OPTIONS:
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.config:
        values = json.loads(Path(args.config).read_text())
        values.pop("model_type", None)
        values.update(overrides)
        return GalSpecConfig(**values)
    return GalSpecConfig.from_preset(args.preset, **overrides)


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------
def get_dataloaders(args: argparse.Namespace, accelerator: Accelerator, config: GalSpecConfig):
    """Train and validation DataLoaders.

    Map-style data are shuffled by a seedable sampler and sharded by ``accelerator.prepare``.
    Streamed data are sharded once, by ``split_dataset_by_node`` (in ``shuffle_stream`` for training), and
    their DataLoaders are *not* passed through ``prepare`` (sharding twice would drop data). A stream is
    shuffled through a fixed-size buffer of numpy rows, so its memory does not grow with the data.
    """
    from datasets.distributed import split_dataset_by_node

    dataset = load_training_dataset(args.dataset, streaming=args.streaming)
    check_columns(dataset.column_names or [], args.dataset)
    margin = args.max_shift_pixels if args.augment else 0
    collator = GalSpecCollator(config.image_size, config.num_wavelengths, config.fiber_diameter, margin=margin)
    keep = [c for c in dataset.column_names if c in (*MODEL_INPUTS, "image", "flux", "ivar", "mask", "targetid")]
    keep += [c for c in ("fiber_diameter",) if c in dataset.column_names and c not in keep]
    dataset = dataset.select_columns(keep).with_format("numpy")

    if args.streaming:
        # held-out rows chosen by a hash of TARGETID, so the split needs no pass over the stream
        def held_out(row) -> bool:
            return (int(row["targetid"]) * 2654435761 % 2**32) / 2**32 < args.validation_fraction

        if "targetid" in dataset.column_names and args.validation_fraction > 0:
            eval_set = dataset.filter(held_out).take(args.max_eval_samples)
            train_set = dataset.filter(lambda row: not held_out(row))
        else:
            eval_set, train_set = dataset.take(0), dataset
        train_set = shuffle_stream(
            train_set,
            buffer_size=args.shuffle_buffer_size,
            seed=args.seed,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
        )
        eval_set = split_dataset_by_node(
            eval_set, rank=accelerator.process_index, world_size=accelerator.num_processes
        )
        train_loader = DataLoader(train_set, batch_size=args.per_device_batch_size, collate_fn=collator, num_workers=0)
        eval_loader = DataLoader(eval_set, batch_size=args.per_device_batch_size, collate_fn=collator)
        return train_loader, eval_loader, False

    if args.validation_fraction > 0 and len(dataset) > 1:
        split = dataset.train_test_split(test_size=args.validation_fraction, seed=args.seed, shuffle=True)
        train_set, eval_set = split["train"], split["test"]
        eval_set = eval_set.select(range(min(len(eval_set), args.max_eval_samples)))
    else:
        train_set, eval_set = dataset, dataset.select([])
    generator = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(
        train_set,
        batch_size=args.per_device_batch_size,
        shuffle=True,
        generator=generator,
        collate_fn=collator,
        num_workers=args.num_workers,
        drop_last=True,
    )
    eval_loader = DataLoader(eval_set, batch_size=args.per_device_batch_size, collate_fn=collator)
    return train_loader, eval_loader, True


# ----------------------------------------------------------------------------------------
# Validation: image in, spectrum out, at the observed fiber
# ----------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, eval_loader, accelerator: Accelerator, config: GalSpecConfig) -> dict[str, float]:
    """Spectral NLL and coverage at 1 and 2 sigma of the image-only prediction at each observed fiber."""
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=accelerator.device)  # nll sum, in 1 sigma, in 2 sigma, pixels
    for batch in eval_loader:
        pixel_values = batch["pixel_values"].to(accelerator.device)
        size = config.image_size
        top = (pixel_values.shape[-2] - size) // 2
        pixel_values = pixel_values[..., top : top + size, top : top + size]
        prediction = unwrapped.predict_spectra(
            pixel_values,
            batch["redshift"].to(accelerator.device),
            batch["fiber_offset"].to(accelerator.device)[:, None, :],
            fiber_diameter=batch["fiber_diameter"].to(accelerator.device),
        )
        mean, sigma = prediction.mean[:, 0].float().cpu().numpy(), prediction.sigma[:, 0].float().cpu().numpy()
        metrics = spectral_metrics(batch["spectrum"].numpy(), batch["spectrum_ivar"].numpy(), mean, sigma)
        pixels = metrics["num_pixels"]
        if pixels == 0:
            continue
        totals += torch.tensor(
            [
                metrics["nll"] * pixels,
                metrics["coverage_1sigma"] * pixels,
                metrics["coverage_2sigma"] * pixels,
                pixels,
            ],
            dtype=torch.float64,
            device=accelerator.device,
        )
    totals = accelerator.reduce(totals, reduction="sum")
    unwrapped.train()
    pixels = max(float(totals[3]), 1.0)
    return {
        "eval_nll": float(totals[0]) / pixels,
        "eval_coverage_1sigma": float(totals[1]) / pixels,
        "eval_coverage_2sigma": float(totals[2]) / pixels,
        "eval_pixels": int(totals[3]),
    }


# ----------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------
def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The random numbers of one optimiser step on one process: masking noise and augmentation."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63))


def create_model(args: argparse.Namespace) -> GalSpecForMaskedSpectra:
    """A new model from --preset / --config and the masking options (finetune.py passes its own)."""
    return GalSpecForMaskedSpectra._from_config(build_config(args), attn_implementation=args.attn_implementation)


def training_function(
    args: argparse.Namespace,
    create_model: Callable[[argparse.Namespace], GalSpecForMaskedSpectra] = create_model,
) -> dict:
    """Train a model from parsed arguments (:func:`.args.build_parser`) and save it in ``args.output_dir``.

    ``create_model(args)`` builds the model (the default: a new one from ``--preset`` / ``--config``; fine-tuning
    passes an adapted pretrained one). Writes the model, its processor, the model card, ``eval_metrics.json``
    and ``train_results.json``; checkpoints every ``--checkpointing_steps``. Returns the results (steps, samples,
    processes, seconds, final loss and the final validation metrics). Raises ValueError for inconsistent
    arguments and :class:`~galspec_hf.errors.GalSpecTrainingError` for a run that must stop.
    """
    validate_args(args)
    project_dir = Path(args.output_dir)
    # `accelerate launch --multi_gpu --num_processes N` on a machine without GPUs starts N processes with
    # WORLD_SIZE set; Accelerate forms a gloo (MULTI_CPU) group only when told to use the CPU.
    use_cpu = args.cpu or (not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1)
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with="tensorboard" if args.with_tracking else None,
        project_dir=str(project_dir / "logs"),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed, even_batches=False),
    )
    set_seed(args.seed)
    model = create_model(args)
    config = model.config
    processor = GalSpecProcessor.from_config(config)

    train_loader, eval_loader, map_style = get_dataloaders(args, accelerator, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps, args.max_steps)
    if map_style:
        model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
            model, optimizer, train_loader, eval_loader, scheduler
        )
    else:
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if args.with_tracking:
        accelerator.init_trackers(
            "galspec_pretrain", {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        )

    step, epoch, batches_done_in_epoch, samples_seen = 0, 0, 0, 0
    if args.resume_from_checkpoint:
        checkpoint = resolve_checkpoint(args.output_dir, args.resume_from_checkpoint)
        state = load_checkpoint(accelerator, checkpoint)
        step, epoch = state["step"], state["epoch"]
        batches_done_in_epoch, samples_seen = state["batches_in_epoch"], state["samples_seen"]
        accelerator.print(f"resumed from {checkpoint} at step {step} (epoch {epoch}, batch {batches_done_in_epoch})")

    sample_log = None
    if args.log_sample_ids:
        project_dir.mkdir(parents=True, exist_ok=True)
        sample_log = open(project_dir / f"samples_rank{accelerator.process_index}.txt", "a")

    model.train()
    progress = tqdm(total=args.max_steps, initial=step, disable=not accelerator.is_local_main_process, desc="pretrain")
    history: list[dict] = []
    start_time = time.time()
    while step < args.max_steps:
        if map_style:
            train_loader.set_epoch(epoch)
            loader = (
                accelerator.skip_first_batches(train_loader, batches_done_in_epoch)
                if batches_done_in_epoch
                else train_loader
            )
        else:
            train_loader.dataset.set_epoch(epoch)  # a new order each pass, the same one again on resume
            loader = iter(train_loader)
            # position in a stream: skip what earlier epochs-in-progress consumed
            for _ in range(batches_done_in_epoch):
                next(loader, None)
        finished_epoch = True
        batches_this_pass = 0
        for batch in loader:
            batches_this_pass += 1
            generator = step_generator(args.seed, step, accelerator.process_index)
            if sample_log is not None and "targetid" in batch:
                sample_log.write("".join(f"{int(t)}\n" for t in batch["targetid"]))
            inputs = {k: batch[k].to(accelerator.device) for k in MODEL_INPUTS}
            if args.augment or inputs["pixel_values"].shape[-1] != config.image_size:
                images, offsets = augment_batch(
                    inputs["pixel_values"].cpu(),
                    inputs["fiber_offset"].cpu(),
                    config.image_size,
                    config.pixel_scale,
                    generator,
                    max_shift=args.max_shift_pixels if args.augment else 0,
                    flips=args.augment,
                    rotations=args.augment,
                )
                inputs["pixel_values"], inputs["fiber_offset"] = (
                    images.to(accelerator.device),
                    offsets.to(accelerator.device),
                )
            batch_size = inputs["pixel_values"].shape[0]
            noise = torch.rand(
                batch_size, 2 + config.num_spectrum_patches + config.num_image_tokens, generator=generator
            ).to(accelerator.device)
            with accelerator.accumulate(model):
                output = model(**inputs, noise=noise)
                loss = output.loss
                all_losses = accelerator.gather(loss.detach()[None])
                if not torch.isfinite(all_losses).all():
                    raise GalSpecTrainingError(f"non-finite loss {all_losses.tolist()} at step {step + 1}; stopping")
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            batches_done_in_epoch += 1
            samples_seen += batch_size * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            step += 1
            progress.update(1)
            record = {
                "step": step,
                "loss": float(all_losses.mean()),
                "spectrum_loss": float(accelerator.reduce(output.spectrum_loss.detach(), "mean")),
                "image_loss": float(accelerator.reduce(output.image_loss.detach(), "mean")),
                "learning_rate": scheduler.get_last_lr()[0],
            }
            progress.set_postfix(loss=f"{record['loss']:.3f}")
            if args.eval_steps and step % args.eval_steps == 0 and step < args.max_steps:
                record.update(evaluate(model, eval_loader, accelerator, config))
            history.append(record)
            if args.with_tracking:
                accelerator.log(record, step=step)
            if args.checkpointing_steps and step % args.checkpointing_steps == 0:
                state = {
                    "step": step,
                    "epoch": epoch,
                    "batches_in_epoch": batches_done_in_epoch,
                    "samples_seen": samples_seen,
                }
                save_checkpoint(accelerator, args.output_dir, step, state, config=config)
            if step >= args.max_steps:
                finished_epoch = False
                break
        if batches_this_pass == 0:
            raise GalSpecTrainingError(f"data set {args.dataset} gave no training batch (fewer rows than one batch?)")
        if finished_epoch:
            epoch += 1
            batches_done_in_epoch = 0
    progress.close()
    if sample_log is not None:
        sample_log.close()
        # each process's view of the final weights, to check that data-parallel replicas agree
        digest = hashlib.sha256()
        for name, tensor in sorted(accelerator.unwrap_model(model).state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().float().numpy().tobytes())
        (project_dir / f"weights_rank{accelerator.process_index}.sha256").write_text(digest.hexdigest())

    final_metrics = evaluate(model, eval_loader, accelerator, config)
    m = final_metrics
    accelerator.print(
        f"final validation: NLL {m['eval_nll']:.4f}, coverage 1 sigma {m['eval_coverage_1sigma']:.3f}, "
        f"2 sigma {m['eval_coverage_2sigma']:.3f} over {m['eval_pixels']} pixels"
    )
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    state_dict = accelerator.get_state_dict(model)
    results = {
        "steps": step,
        "samples_seen": samples_seen,
        "num_processes": accelerator.num_processes,
        "train_seconds": time.time() - start_time,
        "final_loss": history[-1]["loss"] if history else None,
        **final_metrics,
    }
    if accelerator.is_main_process:
        unwrapped.save_pretrained(args.output_dir, state_dict=state_dict, save_function=accelerator.save)
        processor.save_pretrained(args.output_dir)
        write_model_card(Path(args.output_dir), args, unwrapped, results)
        write_strict_json(project_dir / "train_results.json", {**results, "history": history})
        if args.push_to_hub:
            unwrapped.push_to_hub(args.hub_model_id)
            processor.push_to_hub(args.hub_model_id)
    if args.with_tracking:
        accelerator.end_training()
    accelerator.wait_for_everyone()
    return results


def write_model_card(output_dir: Path, args: argparse.Namespace, model, results: dict) -> None:
    """Write the model card (README.md) and ``eval_metrics.json`` (read by ``export_hub_repo.py --metrics``)."""
    evaluation = {
        "dataset": {"name": f"held-out {args.validation_fraction:.0%} of {args.dataset}", "split": "validation"},
        "metrics": {
            "nll": results["eval_nll"],
            "coverage_1sigma": results["eval_coverage_1sigma"],
            "coverage_2sigma": results["eval_coverage_2sigma"],
        },
        "source": f"examples/pretrain.py final validation after {results['steps']} steps",
    }
    write_strict_json(output_dir / "eval_metrics.json", evaluation)
    card = build_model_card(
        model.config,
        args.hub_model_id or f"local/{output_dir.name}",
        num_parameters=sum(p.numel() for p in model.parameters()),
        metrics=load_metrics_file(output_dir / "eval_metrics.json") if results["eval_pixels"] else None,
        training_data=(
            f"`{args.dataset}`: {results['steps']} optimiser steps, {results['samples_seen']} samples, "
            f"{results['num_processes']} process(es), preset/config `{args.config or args.preset}`."
        ),
    )
    card.save(output_dir / "README.md")


def main(
    argv: list[str] | None = None,
    parser: argparse.ArgumentParser | None = None,
    create_model: Callable[[argparse.Namespace], GalSpecForMaskedSpectra] = create_model,
) -> int:
    """Parse `argv` with `parser` (default :func:`.args.build_parser`) and train: the body of a training script.

    Returns the exit code: 0 when done; 2 after a bad argument or a missing file (ValueError, FileNotFoundError),
    printed as one line ``PROG: error: ...``; 1 after a run that had to stop (GalSpecTrainingError), printed as
    ``PROG: stopped: ...``. Other exceptions are bugs and keep their traceback.
    """
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    try:
        training_function(args, create_model=create_model)
    except (ValueError, FileNotFoundError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except GalSpecTrainingError as error:
        print(f"{parser.prog}: stopped: {error}", file=sys.stderr)
        return 1
    return 0
