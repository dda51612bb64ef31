"""Line-fit speed: ``fit_emission_lines`` against the MaNGA DAP on the same spectra, and a 74 x 74-spaxel cube.

1. The 8 spectra of ../shared/data/manga/MaNGA_test_spectra.fits.gz: the DAP's pPXF (MILES-HC) + Sasuke
   (ELPMPL11) fit, run by ``galspec_hf.analysis.dap_reference.run_dap`` (sdss-mangadap from the test extra, as
   tests/analysis/test_dap_agreement.py runs it), against this package in template and local mode (each timed after one
   warm-up call, best of ``--repeat``).
2. A 74 x 74 cube (5476 spaxels; the largest MaNGA LOGCUBE, the 127-fibre bundle) built from those real spectra:
   spaxel i holds real spectrum i mod 7 (the 7 usable ones) scaled by a Gaussian surface-brightness profile,
   with new Gaussian noise from its ivar. ``footprint`` keeps only the spaxels inside the 127-fibre hexagon
   (32.5" corner to corner, 0.5" spaxels: ~2750 of 5476; the rest has ivar = 0 and is skipped, as the empty
   spaxels of a real cube are); ``full`` fills all 5476.

    python benchmarks/bench_lines.py --out benchmarks/results/lines.json
    python benchmarks/bench_lines.py --quick --out /tmp/lines.json     # no DAP, 24 x 24 cube
    python benchmarks/bench_lines.py --cubes footprint --out ...        # only the IFU-footprint cube

Threads: set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (the JSON records them and the CPU count).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from galspec_hf.analysis import fit_emission_lines
from galspec_hf.data import read_manga_spectra
from galspec_hf.testing_utils import write_benchmark_report

ROOT = Path(__file__).resolve().parents[1]
SPECTRA = ROOT.parent / "shared" / "data" / "manga" / "MaNGA_test_spectra.fits.gz"


#: The cube benchmark's modes: fit_emission_lines keyword arguments.
MODES = {
    "template": {"continuum": "template"},
    "template_norefit": {"continuum": "template", "continuum_refit": "off"},
    "template_sasuke": {"continuum": "template", "continuum_refit": "sasuke"},
    "local": {"continuum": "local"},
}


def _timed(fn, repeat: int) -> float:
    fn()  # warm-up (template broadening cache, imports)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return float(best)


def synthetic_cube(spectra, n_side: int, footprint: bool, seed: int = 0):
    """(flux, ivar, mask) of shape (n_side, n_side, L) and the redshift, from the real test spectra (see above)."""
    rng = np.random.default_rng(seed)
    usable = np.flatnonzero(np.any((spectra.ivar > 0) & (spectra.mask == 0), axis=1))
    yy, xx = np.mgrid[0:n_side, 0:n_side] - (n_side - 1) / 2.0
    profile = np.exp(-np.hypot(xx, yy) / 8.0).ravel()  # exponential, scale length 4"
    pick = usable[np.arange(n_side * n_side) % usable.size]
    z = float(np.median(spectra.redshift[usable]))
    flux = spectra.flux[pick] * profile[:, None]
    ivar = spectra.ivar[pick] / np.maximum(profile[:, None], 1e-6) ** 2
    with np.errstate(divide="ignore"):
        sigma = np.where(ivar > 0, 1.0 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), 0.0)
    flux = flux + sigma * rng.standard_normal(flux.shape)
    mask = spectra.mask[pick].copy()
    if footprint:
        # hexagon of the 127-fibre bundle: 32.5" flat-to-flat = 65 spaxels of 0.5"
        r = 32.5
        ax, ay = np.abs(xx.ravel()), np.abs(yy.ravel())
        inside = (ay <= r * np.sqrt(3) / 2) & (np.sqrt(3) * ax + ay <= r * np.sqrt(3))
        ivar = np.where(inside[:, None], ivar, 0.0)
    shape = (n_side, n_side, -1)
    return flux.reshape(shape), ivar.reshape(shape), mask.reshape(shape), z


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/lines.json")
    parser.add_argument("--quick", action="store_true", help="skip the DAP; 24 x 24 cube")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cube-side", type=int, default=74)
    parser.add_argument("--cubes", nargs="+", default=["footprint", "full"], choices=["footprint", "full"])
    parser.add_argument("--modes", nargs="+", default=["template", "local"], choices=list(MODES),
                        help="line-fit modes timed on the cubes (template_norefit / template_sasuke: template with "
                             "continuum_refit off / sasuke)")
    args = parser.parse_args(argv)
    spectra = read_manga_spectra(SPECTRA)
    good = spectra.spectral_resolution.max(axis=1) > 0
    resolution = np.median(spectra.spectral_resolution[good], axis=0)

    def ours(mode):
        return fit_emission_lines(spectra.wavelength, spectra.flux, spectra.ivar, spectra.redshift,
                                  mask=spectra.mask, spectral_resolution=resolution, continuum=mode)  # fmt: skip

    result = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "load_average_1min": os.getloadavg()[0],
        },  # fmt: skip
        "n_spectra": int(spectra.flux.shape[0]),
        "package_template_s": _timed(lambda: ours("template"), args.repeat),
        "package_local_s": _timed(lambda: ours("local"), args.repeat),
    }
    if not args.quick:
        from galspec_hf.analysis.dap_reference import run_dap

        t0 = time.perf_counter()
        run_dap(SPECTRA)
        result["dap_s"] = time.perf_counter() - t0
        result["dap_over_template"] = result["dap_s"] / result["package_template_s"]
        result["dap_over_local"] = result["dap_s"] / result["package_local_s"]
    side = 24 if args.quick else args.cube_side
    result["cube_side"] = side
    for key in args.cubes:
        flux, ivar, mask, z = synthetic_cube(spectra, side, key == "footprint")
        n_fit = int(np.any((ivar > 0) & (mask == 0), axis=-1).sum())
        for mode in args.modes:
            t0 = time.perf_counter()
            fit_emission_lines(spectra.wavelength, flux, ivar, z, mask=mask, spectral_resolution=resolution,
                               **MODES[mode])  # fmt: skip
            seconds = time.perf_counter() - t0
            result[f"cube_{key}_{mode}_s"] = seconds
            result[f"cube_{key}_{mode}_ms_per_spectrum"] = 1e3 * seconds / n_fit
        result[f"cube_{key}_spaxels_fitted"] = n_fit
    return write_benchmark_report(args.out, result)


if __name__ == "__main__":
    main()
