"""Training speed of the small preset on this machine: steps/s, samples/s, FLOPs per sample and MFU.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` over one full training step
(forward + backward), divided by the batch size. The peak is measured in the same process: the best
of several fp32 square matmuls (``torch.mm``) at the same thread count. ``mfu`` = achieved FLOP/s
divided by that peak.

    python benchmarks/bench_train.py --out benchmarks/results/train.json
    python benchmarks/bench_train.py --quick --out /tmp/train.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra
from galspec_hf.demo import synthetic_image


def matmul_peak_flops(size: int = 1024, repeats: int = 10) -> float:
    """Best fp32 matmul throughput (FLOP/s) of this process."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
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
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--attn_implementation", default="sdpa", choices=["eager", "sdpa"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = GalSpecConfig.from_preset(args.preset)
    model = GalSpecForMaskedSpectra._from_config(config, attn_implementation=args.attn_implementation).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = make_batch(config, args.batch_size)
    noise_shape = (args.batch_size, 2 + config.num_spectrum_patches + config.num_image_tokens)

    def step(seed: int) -> None:
        noise = torch.rand(noise_shape, generator=torch.Generator().manual_seed(seed))
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
    start = time.perf_counter()
    for seed in range(steps):
        step(100 + seed)
    seconds = (time.perf_counter() - start) / steps
    peak = matmul_peak_flops()
    achieved = flops_per_step / seconds
    result = {
        "benchmark": "train",
        "preset": args.preset,
        "batch_size": args.batch_size,
        "attn_implementation": args.attn_implementation,
        "threads": args.threads,
        "steps_per_s": 1.0 / seconds,
        "samples_per_s": args.batch_size / seconds,
        "flops_per_sample": flops_per_step / args.batch_size,
        "achieved_flops_per_s": achieved,
        "peak_matmul_flops_per_s": peak,
        "mfu": achieved / peak,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
