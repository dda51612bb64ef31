"""The package's line fit against the MaNGA DAP's on real spectra: the table of docs/LINES.md, per fitter option.

Runs the DAP (pPXF with MILES-HC, then Sasuke with ELPMPL11, as its own test_sasuke_mpl11; about 40 s on an idle
2-core machine) once on a MaNGA spectra file, then the package's fitter once per ``--dispersions`` mode, and
prints, per line, the package / DAP flux ratio and z = (package - DAP) / both errors in quadrature on the spectra
where the DAP's fit can be trusted (:func:`galspec_hf.analysis.dap_reference.compared_spectra`), with each
fitter's dispersions. Needs the test extra (``pip install -e ".[test]"``: sdss-mangadap).

    python examples/compare_with_dap.py --dispersions tied free auto --output runs/dap_comparison.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from galspec_hf.analysis.dap_reference import compare_with_dap, compared_spectra, fit_spectra_file, run_dap
from galspec_hf.analysis.lines import DISPERSION_MODES
from galspec_hf.strict_json import write_strict_json

# the shared data folder beside the repository (../shared/data, or $GALSPEC_SHARED_DATA), as the tests find it
SHARED_DATA = Path(os.environ.get("GALSPEC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_SPECTRA = SHARED_DATA / "manga" / "MaNGA_test_spectra.fits.gz"


def comparison_table(dap: dict, path, modes, continuum: str = "template", dap_continuum: bool = False) -> dict:
    """{mode: compare_with_dap(...)} for each fitter `mode` (``dispersions``) on the spectra file `path`; with
    `dap_continuum`, also ``"<mode>, DAP continuum"``: the package's lines fitted on the spectra minus the DAP's own
    stellar continuum (a straight local baseline, no Balmer troughs), which leaves only the line fits to differ."""
    selected, _ = compared_spectra(dap)
    table = {mode: compare_with_dap(dap, fit_spectra_file(path, dispersions=mode, continuum=continuum)[1], selected)
             for mode in modes}  # fmt: skip
    if dap_continuum:
        for mode in modes:
            maps = fit_spectra_file(path, subtract=dap["stellar_continuum"], dispersions=mode, continuum="local",
                                    balmer_absorption=False)[1]  # fmt: skip
            table[f"{mode}, DAP continuum"] = compare_with_dap(dap, maps, selected)
    return table


def format_table(table: dict) -> str:
    """The comparison as Markdown, one row per mode and line."""
    rows = [
        "| dispersions | line | spectra | package / DAP flux, median (each) | median abs(z) (each z) | "
        "package sigma (intrinsic) / DAP sigma (with the instrument), km/s |",
        "|---|---|---|---|---|---|",
    ]
    for mode, lines in table.items():
        for name, r in lines.items():
            each = ", ".join(f"{x:.2f}" for x in r["ratio"])
            zs = ", ".join(f"{x:+.2f}" for x in r["z"])
            widths = ", ".join(f"{a:.0f} / {b:.0f}" for a, b in zip(r["dispersion_kms"], r["dap_dispersion_kms"],
                                                                     strict=True))  # fmt: skip
            ratio = "n/a" if r["ratio_median"] is None else f"{r['ratio_median']:.3f}"
            abs_z = "n/a" if r["abs_z_median"] is None else f"{r['abs_z_median']:.2f}"
            rows.append(f"| {mode} | {name} | {r['spectra']} | {ratio} ({each}) | {abs_z} ({zs}) | {widths} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spectra", type=Path, default=DEFAULT_SPECTRA,
                        help="a MaNGA spectra file (HDUs WAVE, FLUX, IVAR, MASK, SRES, Z; default: the shared test "
                             "spectra)")  # fmt: skip
    parser.add_argument("--dispersions", nargs="+", choices=DISPERSION_MODES, default=list(DISPERSION_MODES))
    parser.add_argument("--continuum", choices=("template", "local"), default="template")
    parser.add_argument("--dap_continuum", action="store_true",
                        help="also fit the lines on the spectra minus the DAP's stellar continuum (the line fits "
                             "alone compared)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=None, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    if not args.spectra.is_file():
        parser.error(f"--spectra {args.spectra}: no such file")
    try:
        dap = run_dap(args.spectra)
    except ImportError as error:
        parser.error(str(error))
    table = comparison_table(dap, args.spectra, args.dispersions, args.continuum, args.dap_continuum)
    print(format_table(table))
    if args.output is not None:
        write_strict_json(args.output, {"spectra": str(args.spectra), "continuum": args.continuum, "table": table})
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
