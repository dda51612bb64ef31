"""Preparation throughput of the DESI data set builder, in spectra per second.

Writes DESI-format coadd + redrock files of ``--spectra-per-file`` spectra (500 by default, as in
DR1 healpix files of dense regions) and one Legacy-format cutout per target with
:mod:`galspec_hf.data.testing`, then times

- ``read_desi_coadd`` alone (arm merge), and
- ``DesiGalaxies.download_and_prepare`` (read, merge, cut, pair with cutouts, write Arrow),

in one process (and with ``--num-proc`` > 1 if asked); then the loader's throughput, in samples per
second, of the prepared data set through the training collator (``GalSpecCollator`` in a DataLoader,
batches of 16), from the Arrow data set and streamed, against the samples per second that training
the ``small`` preset consumes, measured in the same run. Writes a JSON result to ``--out``.

    python benchmarks/bench_data.py --files 2 --spectra-per-file 500 --out bench_data.json
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import datasets

from galspec_hf.data import DesiGalaxies, read_build_report, read_desi_coadd
from galspec_hf.data.testing import make_targets, write_desi_coadd, write_legacy_cutout, write_redrock
from galspec_hf.testing_utils import write_benchmark_report


def write_inputs(root: Path, n_files: int, n_per_file: int, image_size: int) -> None:
    for f in range(n_files):
        targets = make_targets(n_per_file, seed=f, first_targetid=10**15 + 10**6 * f)
        write_desi_coadd(root / f"coadd-main-dark-{f}.fits", targets, healpix=f, seed=f, with_resolution=True)
        write_redrock(root / f"redrock-main-dark-{f}.fits", targets)
        for i, t in enumerate(targets):
            write_legacy_cutout(root / "cutouts" / f"cutout-{t.targetid}.fits", t.ra, t.dec, size=image_size, seed=i)


def _samples_per_second(loader, batches: int) -> float:
    iterator = iter(loader)
    next(iterator)  # warm-up (file handles, first decode)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        batch = next(iterator, None)
        if batch is None:
            break
        seen += batch["pixel_values"].shape[0]
    return seen / (time.perf_counter() - start)


def training_samples_per_second(batch_size: int = 16, steps: int = 3) -> float:
    """Samples per second a training step of the small preset consumes on this machine."""
    import torch

    from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra

    config = GalSpecConfig.from_preset("small")
    model = GalSpecForMaskedSpectra._from_config(config, attn_implementation="sdpa").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = {
        "pixel_values": torch.rand(batch_size, 3, config.image_size, config.image_size),
        "redshift": torch.full((batch_size,), 0.1),
        "spectrum": torch.ones(batch_size, config.num_wavelengths),
        "spectrum_ivar": torch.full((batch_size, config.num_wavelengths), 100.0),
    }
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return batch_size / min(times[1:])


def loader_throughput(builder, image_size: int, batch_size: int = 16, batches: int = 30) -> dict:
    """Samples/s of the prepared data set through the training collator: Arrow (map-style) and streamed."""
    from torch.utils.data import DataLoader

    from galspec_hf.training import GalSpecCollator, shuffle_stream

    collator = GalSpecCollator(64, 7781, 1.5, margin=(image_size - 64) // 2 if image_size > 64 else 0)
    columns = ["image", "flux", "ivar", "mask", "redshift", "fiber_offset", "fiber_diameter", "targetid"]
    arrow = builder.as_dataset(split="train").select_columns(columns).with_format("numpy")
    # streamed the way examples/pretrain.py streams: shard order and a row buffer shuffled (the warm-up
    # batch below fills the buffer, then every timed row is one more row read from the FITS files)
    streamed = shuffle_stream(
        builder.as_streaming_dataset(split="train").select_columns(columns), buffer_size=256, seed=0
    )
    shuffled = DataLoader(arrow, batch_size=batch_size, shuffle=True, collate_fn=collator)
    result = {
        "arrow_samples_per_s": round(_samples_per_second(shuffled, batches), 1),
        "streaming_samples_per_s": round(
            _samples_per_second(DataLoader(streamed, batch_size=batch_size, collate_fn=collator), batches), 1
        ),
        "training_samples_per_s_small_preset": round(training_samples_per_second(batch_size), 1),
        "batch_size": batch_size,
    }
    slowest = min(result["arrow_samples_per_s"], result["streaming_samples_per_s"])
    result["loader_over_training"] = round(slowest / result["training_samples_per_s_small_preset"], 1)
    result["target_loader_over_training"] = 5
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2, help="coadd files (default 2)")
    parser.add_argument("--spectra-per-file", type=int, default=500, help="spectra per coadd (default 500)")
    parser.add_argument("--image-size", type=int, default=64, help="cutout side in pixels (default 64)")
    parser.add_argument(
        "--num-proc", type=int, default=1, help="also time this many processes (default 1: only serial)"
    )
    parser.add_argument("--out", required=True, help="JSON result file")
    args = parser.parse_args(argv)
    datasets.disable_progress_bars()

    work = Path(tempfile.mkdtemp(prefix="galspec-bench-"))
    try:
        inputs = work / "in"
        (inputs / "cutouts").mkdir(parents=True)
        start = time.perf_counter()
        write_inputs(inputs, args.files, args.spectra_per_file, args.image_size)
        write_s = time.perf_counter() - start
        n_spectra = args.files * args.spectra_per_file

        start = time.perf_counter()
        for path in sorted(inputs.glob("coadd-*.fits")):
            read_desi_coadd(path)
        read_s = time.perf_counter() - start

        runs = []
        for num_proc in sorted({1, args.num_proc}):
            builder = DesiGalaxies(
                data_dir=inputs, cache_dir=str(work / f"cache{num_proc}"), image_size=args.image_size
            )
            start = time.perf_counter()
            builder.download_and_prepare(num_proc=num_proc if num_proc > 1 else None)
            prepare_s = time.perf_counter() - start
            written = read_build_report(builder.cache_dir)["n_written"]
            runs.append(
                {
                    "num_proc": num_proc,
                    "seconds": round(prepare_s, 3),
                    "rows_written": written,
                    "spectra_per_s": round(n_spectra / prepare_s, 1),
                    "spectra_per_s_per_process": round(n_spectra / prepare_s / num_proc, 1),
                }
            )
        loader = loader_throughput(builder, args.image_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "bench_data: DESI builder preparation throughput",
        "files": args.files,
        "spectra_per_file": args.spectra_per_file,
        "image_size": args.image_size,
        "write_inputs_s": round(write_s, 3),
        "read_desi_coadd_spectra_per_s": round(n_spectra / read_s, 1),
        "prepare": runs,
        "loader": loader,
        "target_spectra_per_s_per_process": 200,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "datasets_version": datasets.__version__,
    }
    write_benchmark_report(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
