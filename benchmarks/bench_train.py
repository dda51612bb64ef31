"""Training speed of a preset: steps/s, samples/s, FLOPs per sample and MFU, on the CPU or a GPU.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` over one full training step
(forward + backward), divided by the batch size. The peak is measured in the same process: the best
of several square matmuls (``torch.mm``) on the same device, in the same precision (fp32, or bf16 when
``--dtype bf16``), at the same thread count. ``mfu`` = achieved FLOP/s divided by that peak; with
``--datasheet_peak_tflops`` the JSON also gives ``mfu_datasheet`` against the vendor's number.

``--dtype bf16`` trains under ``torch.autocast`` in bfloat16 (weights and optimiser stay fp32, as in
``accelerate --mixed_precision bf16``).

    python benchmarks/bench_train.py --out benchmarks/results/train.json
    python benchmarks/bench_train.py --quick --out /tmp/train.json
    # on a GPU machine (H100: 989 TFLOP/s dense bf16 on NVIDIA's data sheet)
    python benchmarks/bench_train.py --preset base --batch_size 64 --device cuda --dtype bf16 \
        --datasheet_peak_tflops 989 --out benchmarks/results/train_base_gpu.json
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra
from galspec_hf.demo import synthetic_image
from galspec_hf.testing_utils import write_benchmark_report


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (GPU kernels run asynchronously), so a clock reading means something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int | None = None, repeats: int = 10
) -> float:
    """Best square-matmul throughput (FLOP/s) of this process on ``device`` in ``dtype``."""
    size = size or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def make_batch(config: GalSpecConfig, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.from_numpy(synthetic_image(config).image)
    pixel_values = image[None].repeat(batch_size, 1, 1, 1) * (
        0.5 + torch.rand(batch_size, 1, 1, 1, generator=generator)
    )
    spectrum = 1.0 + 0.1 * torch.randn(batch_size, config.num_wavelengths, generator=generator)
    return {
        "pixel_values": pixel_values,
        "redshift": 0.05 + 0.3 * torch.rand(batch_size, generator=generator),
        "spectrum": spectrum,
        "spectrum_ivar": torch.full((batch_size, config.num_wavelengths), 100.0),
        "fiber_offset": torch.randn(batch_size, 2, generator=generator),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--image_size", type=int, default=None,
                        help="override the preset's image side, pixels (64: the small preset before 2026-12-03)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--attn_implementation", default="sdpa", choices=["eager", "sdpa"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="fp32, or bf16 autocast")
    parser.add_argument("--datasheet_peak_tflops", type=float, default=None, help="vendor peak, for mfu_datasheet")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    overrides = {} if args.image_size is None else {"image_size": args.image_size}
    config = GalSpecConfig.from_preset(args.preset, **overrides)
    model = GalSpecForMaskedSpectra._from_config(config, attn_implementation=args.attn_implementation)
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = {name: tensor.to(device) for name, tensor in make_batch(config, args.batch_size).items()}
    noise_shape = (args.batch_size, 2 + config.num_spectrum_patches + config.num_image_tokens)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32

    def step(seed: int) -> None:
        noise = torch.rand(noise_shape, generator=torch.Generator().manual_seed(seed)).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = model(**batch, noise=noise).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step(0)
    flops_per_step = counter.get_total_flops()
    for seed in range(2):  # warm-up
        step(seed)
    steps = 3 if args.quick else 10
    synchronize(device)
    start = time.perf_counter()
    for seed in range(steps):
        step(100 + seed)
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    peak = matmul_peak_flops(device, dtype)
    achieved = flops_per_step / seconds
    result = {
        "benchmark": "train",
        "preset": args.preset,
        "image_size": config.image_size,
        "batch_size": args.batch_size,
        "attn_implementation": args.attn_implementation,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": args.dtype,
        "threads": args.threads,
        "steps_per_s": 1.0 / seconds,
        "samples_per_s": args.batch_size / seconds,
        "flops_per_sample": flops_per_step / args.batch_size,
        "achieved_flops_per_s": achieved,
        "peak_matmul_flops_per_s": peak,
        "mfu": achieved / peak,
        "mfu_datasheet": achieved / (args.datasheet_peak_tflops * 1e12) if args.datasheet_peak_tflops else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
    }
    return write_benchmark_report(args.out, result)


if __name__ == "__main__":
    main()
