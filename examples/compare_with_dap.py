"""The package's line fit against the MaNGA DAP's on real spectra: the table of docs/LINES.md, per fitter option.

Runs the DAP (pPXF with MILES-HC, then Sasuke with ELPMPL11, as its own test_sasuke_mpl11; about 40 s on an idle
2-core machine) once on a MaNGA spectra file, then the package's fitter once per ``--dispersions`` mode, and
prints, per line, the package / DAP flux ratio and z = (package - DAP) / both errors in quadrature on the spectra
where the DAP's fit can be trusted (:func:`galspec_hf.analysis.dap_reference.compared_spectra`), with each
fitter's dispersions. Needs the test extra (``pip install -e ".[test]"``: sdss-mangadap).

    python examples/compare_with_dap.py --dispersions tied free auto --output runs/dap_comparison.json

``--synthetic lier quiescent star_forming`` instead runs both fitters on spectra with known line fluxes
(:func:`galspec_hf.analysis.synthetic.stellar_line_spectra` at MaNGA resolution, the spectra of the recovery tests in
tests/analysis/test_lines.py, written in the same file layout) and prints each fitter's flux / truth and pulls; the
package twice, with MILES-HC and with the simulator's SSPs less the ones that made the spectra.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from galspec_hf.analysis.dap_reference import DAP_LINES, compare_with_dap, compared_spectra, fit_spectra_file, run_dap
from galspec_hf.analysis.lines import CONTINUUM_REFIT_MODES, DISPERSION_MODES
from galspec_hf.analysis.synthetic import GALAXY_TYPES, bracketing_ssp_templates, stellar_line_spectra
from galspec_hf.constants import FWHM_PER_SIGMA, SPEED_OF_LIGHT_KMS
from galspec_hf.io import write_manga_spectra
from galspec_hf.strict_json import write_strict_json

# the shared data folder beside the repository (../shared/data, or $GALSPEC_SHARED_DATA), as the tests find it
SHARED_DATA = Path(os.environ.get("GALSPEC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_SPECTRA = SHARED_DATA / "manga" / "MaNGA_test_spectra.fits.gz"
SSP_TEMPLATES = SHARED_DATA / "templates" / "SSP_Padova_CKC14z_Kroupa_Z0.0190.fits"


#: The DAP's stellar continua the package's lines can be fitted on (keys of galspec_hf.analysis.dap_reference.run_dap's
#: result): pPXF's, fitted with the line windows masked, and Sasuke's, fitted together with the lines.
DAP_CONTINUA = {"DAP continuum": "stellar_continuum", "DAP joint continuum": "joint_stellar_continuum"}


def comparison_table(dap: dict, path, modes, continuum: str = "template", dap_continuum: bool = False,
                     continuum_refit: str = "same") -> dict:
    """{mode: compare_with_dap(...)} for each fitter `mode` (``dispersions``) on the spectra file `path`; with
    `dap_continuum`, also ``"<mode>, DAP continuum"`` and ``"<mode>, DAP joint continuum"``: the package's lines
    fitted on the spectra minus the DAP's own stellar continuum (pPXF's, lines masked; Sasuke's, fitted together with
    the lines) with ``continuum="none"`` (no baseline, no troughs), which leaves only the line fits to differ."""
    selected, _ = compared_spectra(dap)
    fitted = {mode: fit_spectra_file(path, dispersions=mode, continuum=continuum, continuum_refit=continuum_refit)[1]
              for mode in modes}  # fmt: skip
    table = {mode: compare_with_dap(dap, maps, selected) for mode, maps in fitted.items()}
    if dap_continuum:
        for mode in modes:
            for label, key in DAP_CONTINUA.items():
                maps = fit_spectra_file(path, subtract=dap[key], dispersions=mode, continuum="none")[1]
                table[f"{mode}, {label}"] = compare_with_dap(dap, maps, selected)
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


def synthetic_table(kind: str, work_dir: Path, n: int = 16, continuum_refit: str = "same") -> dict:
    """The DAP and the package on `n` MaNGA-resolution spectra of galaxy type `kind` with known lines (the random
    draw of the MaNGA recovery test in tests/analysis/test_lines.py): {line: {"dap"|"package": {"flux_over_truth"
    (median; None without lines), "pull_mean", "pull_std"}}}, pull = (fit - truth) / the fitter's error;
    ``"package_ssp"``: the package with the simulator's SSPs less those that made the spectra as its library."""
    rng = np.random.default_rng(12 * 10 + list(GALAXY_TYPES).index(kind))
    wavelength, flux, ivar, redshift, sigma_inst, truth = stellar_line_spectra("manga", kind, n, rng, SSP_TEMPLATES)
    resolution = SPEED_OF_LIGHT_KMS / (sigma_inst * FWHM_PER_SIGMA)
    path = write_manga_spectra(work_dir / f"synthetic_{kind}.fits", wavelength, flux, ivar, redshift, resolution)
    dap = run_dap(path)
    maps = fit_spectra_file(path, continuum_refit=continuum_refit)[1]
    # the package once more with a library of the simulator's own SSPs that leaves out those that made the spectra
    bracketing = bracketing_ssp_templates(SSP_TEMPLATES)
    maps_ssp = fit_spectra_file(path, continuum_refit=continuum_refit, templates=bracketing)[1]
    fluxes_by = {"dap": (dap["flux"], dap["flux_err"]), "package": (maps.flux, maps.flux_err),
                 "package_ssp": (maps_ssp.flux, maps_ssp.flux_err)}  # fmt: skip
    table = {}
    for name in DAP_LINES.values():
        table[name] = {}
        for who, (flux, flux_err) in fluxes_by.items():
            value, error = flux[name], flux_err[name]
            pull = (value - truth[name]) / error
            ratio = float(np.median(value / truth[name])) if np.all(truth[name] > 0) else None
            table[name][who] = {"flux_over_truth": ratio, "pull_mean": float(np.mean(pull)),
                                "pull_std": float(np.std(pull))}  # fmt: skip
    return table


def format_synthetic(tables: dict) -> str:
    """The synthetic comparison as Markdown: one row per galaxy type and line."""
    rows = ["| type | line | DAP flux / truth, pull mean / std | package (MILES-HC) | package (bracketing SSPs) |",
            "|---|---|---|---|---|"]  # fmt: skip
    for kind, lines in tables.items():
        for name, r in lines.items():
            cells = [("n/a" if c["flux_over_truth"] is None else f"{c['flux_over_truth']:.3f}")
                     + f", {c['pull_mean']:+.2f} / {c['pull_std']:.2f}"
                     for c in (r["dap"], r["package"], r["package_ssp"])]  # fmt: skip
            rows.append(f"| {kind} | {name} | {' | '.join(cells)} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spectra", type=Path, default=DEFAULT_SPECTRA,
                        help="a MaNGA spectra file (HDUs WAVE, FLUX, IVAR, MASK, SRES, Z; default: the shared test "
                             "spectra)")  # fmt: skip
    parser.add_argument("--dispersions", nargs="+", choices=DISPERSION_MODES, default=list(DISPERSION_MODES))
    parser.add_argument("--continuum", choices=("template", "local"), default="template")
    parser.add_argument("--continuum_refit", choices=CONTINUUM_REFIT_MODES, default="same",
                        help="the package's template-continuum refit (fit_emission_lines' continuum_refit)")
    parser.add_argument("--dap_continuum", action="store_true",
                        help="also fit the lines on the spectra minus the DAP's stellar continuum (the line fits "
                             "alone compared)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=None, help="also write the table as JSON here")
    parser.add_argument("--synthetic", nargs="+", choices=list(GALAXY_TYPES), default=None,
                        help="instead: both fitters on synthetic spectra of these galaxy types with known lines")
    parser.add_argument("--work_dir", type=Path, default=Path("."),
                        help="where --synthetic writes its spectra files")  # fmt: skip
    args = parser.parse_args(argv)
    if args.synthetic is not None:
        if not SSP_TEMPLATES.is_file():
            parser.error(f"--synthetic needs {SSP_TEMPLATES}: no such file")
        args.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            tables = {kind: synthetic_table(kind, args.work_dir, continuum_refit=args.continuum_refit)
                      for kind in args.synthetic}  # fmt: skip
        except ImportError as error:
            parser.error(str(error))
        print(format_synthetic(tables))
        if args.output is not None:
            write_strict_json(args.output, {"continuum_refit": args.continuum_refit, "synthetic": tables})
            print(f"wrote {args.output}")
        return 0
    if not args.spectra.is_file():
        parser.error(f"--spectra {args.spectra}: no such file")
    try:
        dap = run_dap(args.spectra)
    except ImportError as error:
        parser.error(str(error))
    table = comparison_table(dap, args.spectra, args.dispersions, args.continuum, args.dap_continuum,
                             args.continuum_refit)
    print(format_table(table))
    if args.output is not None:
        write_strict_json(args.output, {"spectra": str(args.spectra), "continuum": args.continuum,
                                        "continuum_refit": args.continuum_refit, "table": table})
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
