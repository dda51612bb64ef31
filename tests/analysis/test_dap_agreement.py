"""Agreement of :func:`galspec_hf.analysis.fit_emission_lines` with the MaNGA DAP on real spectra.

The DAP (sdss-mangadap, from the test extra; Westfall et al. 2019, AJ 158, 231; Belfiore et al. 2019, AJ 158,
160) is run on the 8 spectra of ../shared/data/manga/MaNGA_test_spectra.fits.gz by
:func:`galspec_hf.analysis.dap_reference.run_dap`, exactly as its own test
``mangadap/tests/test_sasuke.py::test_sasuke_mpl11`` runs it: a pPXF stellar-continuum fit with the MILES-HC
library (additive Legendre degree 8, two moments), then Sasuke with the ELPMPL11 line list. Nothing is installed
at run time; the DAP's fit takes about 40 s, so the test is ``slow``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from galspec_hf.analysis.dap_reference import DAP_LINES, compare_with_dap, compared_spectra, fit_spectra_file, run_dap

from ..galspec_testing import fit_manga_test_spectra

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture(scope="module")
def compared(shared_file):
    path = shared_file("manga/MaNGA_test_spectra.fits.gz")
    dap = run_dap(path)
    spectra, maps = fit_manga_test_spectra(path)
    selected, broad_nii = compared_spectra(dap)
    return dap, maps, selected, broad_nii


def test_selection_is_the_expected_one(compared):
    """The DAP's own flags drive the selection: the fully masked spectrum 5 (NO_FIT) and the broad [NII] of 3 go."""
    dap, _, selected, broad_nii = compared
    assert dap["fit_mask"][5] != 0 and not any(sel[5] for sel in selected.values())
    assert np.flatnonzero(broad_nii).tolist() == [3]
    for name, sel in selected.items():
        assert sel.sum() >= 2, (name, sel)


@pytest.mark.parametrize("name", list(DAP_LINES.values()))
def test_median_flux_ratio_within_10_percent(compared, name):
    dap, maps, selected, _ = compared
    line = compare_with_dap(dap, maps, selected)[name]
    assert abs(line["ratio_median"] - 1.0) <= 0.10, (name, line["ratio"])


_Z_XFAIL = pytest.mark.xfail(
    strict=True,
    reason="measured median |z| of [NII] 6585 = 2.02 over 2 spectra (z = +0.41 and -3.64: spectrum 4, package 0.90 x "
    "the DAP); the stellar continuum under H-alpha + [NII]: on the spectra minus the DAP's own joint (Sasuke) "
    "continuum the package's line fluxes equal the DAP's (medians within 1 %, test_line_fit_alone_equals_the_daps), "
    "while the package's template continuum, refitted with the lines subtracted (continuum_refit, converged after "
    "2-4 passes), leaves spectrum 4 at 0.90 (docs/LINES.md); target 1.5",
)


@pytest.mark.parametrize(
    "name", [n if n != "NII_6585" else pytest.param(n, marks=_Z_XFAIL) for n in DAP_LINES.values()]
)
def test_median_abs_z_at_most_1_5(compared, name):
    dap, maps, selected, _ = compared
    line = compare_with_dap(dap, maps, selected)[name]
    assert line["abs_z_median"] <= 1.5, (name, line["z"])


def test_halpha_velocity_within_20_kms(compared):
    dap, maps, selected, _ = compared
    sel = selected["Halpha"]
    dv = maps.velocity_kms["Halpha"][sel] - dap["velocity_kms"]["Halpha"][sel]
    assert np.median(np.abs(dv)) <= 20.0, dv


def test_balmer_decrements_consistent(compared):
    """H-alpha / H-beta of the package and of the DAP agree within 2 combined sigma where both lines are selected."""
    dap, maps, selected, _ = compared
    sel = selected["Halpha"] & selected["Hbeta"]
    assert sel.sum() >= 2

    def decrement(flux, err):
        ratio = flux["Halpha"][sel] / flux["Hbeta"][sel]
        rel = np.hypot(err["Halpha"][sel] / flux["Halpha"][sel], err["Hbeta"][sel] / flux["Hbeta"][sel])
        return ratio, np.abs(ratio) * rel

    ours, ours_err = decrement(maps.flux, maps.flux_err)
    theirs, theirs_err = decrement(dap["flux"], dap["flux_err"])
    assert np.all(np.abs(ours - theirs) <= 2 * np.hypot(ours_err, theirs_err)), (ours, theirs)
    # and both are at least case B (2.86, Osterbrock & Ferland 2006) within 2 sigma
    assert np.all(ours + 2 * ours_err >= 2.86) and np.all(theirs + 2 * theirs_err >= 2.86)


def test_free_dispersions_move_the_balmer_widths_towards_the_daps(compared, shared_file):
    """The DAP fits each line's dispersion (within 1.4x of H-alpha's); the package's tied fit gives H-beta the
    Balmer group's. Freed (``dispersions="free"``), H-beta's observed sigma (intrinsic and instrumental in
    quadrature, as the DAP reports it) comes closer to the DAP's on the compared spectra."""
    dap, tied, selected, _ = compared
    _, free = fit_spectra_file(shared_file("manga/MaNGA_test_spectra.fits.gz"), dispersions="free")
    sel = selected["Hbeta"]

    def miss(maps):
        observed = np.hypot(maps.dispersion_kms["Hbeta"][sel], maps.instrumental_sigma_kms["Hbeta"][sel])
        return np.median(np.abs(observed - dap["dispersion_kms"]["Hbeta"][sel]))

    assert miss(free) < 0.7 * miss(tied), (miss(free), miss(tied))
    # and velocities stay tied per group: the same H-alpha velocity target holds
    dv = free.velocity_kms["Halpha"][selected["Halpha"]] - dap["velocity_kms"]["Halpha"][selected["Halpha"]]
    assert np.median(np.abs(dv)) <= 20.0


def test_compare_with_dap_example_prints_the_table_per_mode(compared, shared_file, tmp_path, capsys):
    """examples/compare_with_dap.py (the table of docs/LINES.md): one row per mode and line, the tied rows those of
    this module's comparison; a missing spectra file is one clear line and exit code 2."""
    spec = importlib.util.spec_from_file_location(
        "compare_with_dap", Path(__file__).resolve().parents[2] / "examples" / "compare_with_dap.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    dap, tied, selected, _ = compared
    path = shared_file("manga/MaNGA_test_spectra.fits.gz")
    table = example.comparison_table(dap, path, ["tied", "free"])
    assert table["tied"] == compare_with_dap(dap, tied, selected)
    text = example.format_table(table)
    assert len(text.splitlines()) == 2 + 2 * len(DAP_LINES)
    assert "| free | NII_6585 | [2, 4] |" in text
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--spectra", str(tmp_path / "missing.fits")])
    assert exit_info.value.code == 2 and "missing.fits: no such file" in capsys.readouterr().err


def test_line_fit_alone_equals_the_daps(compared, shared_file):
    """With the DAP's own stellar continuum of its joint fit (Sasuke's templates fitted together with the lines)
    subtracted, the package's Gaussians alone (``continuum="none"``, each line its own dispersion as in ELPMPL11)
    give the DAP's fluxes: every compared spectrum within 10 % (measured: 0.94-1.04), each line's median within 3 %
    (0.998-1.005), median |z| below 0.5 (0.07-0.19). What differs in the default fit is the continuum, not the
    lines."""
    dap, _, selected, _ = compared
    path = shared_file("manga/MaNGA_test_spectra.fits.gz")
    _, maps = fit_spectra_file(path, subtract=dap["joint_stellar_continuum"], continuum="none", dispersions="free")
    for name, line in compare_with_dap(dap, maps, selected).items():
        assert np.all(np.abs(np.asarray(line["ratio"]) - 1.0) < 0.10), (name, line["ratio"])
        assert abs(line["ratio_median"] - 1.0) < 0.03, (name, line["ratio"])
        assert line["abs_z_median"] < 0.5, (name, line["z"])


def test_sasuke_refit_meets_every_target(compared, shared_file):
    """``continuum_refit="sasuke"`` refits the continuum under the fitted lines as the DAP's Sasuke does (the whole
    MILES-HC library at the first fit's kinematics, no additive polynomial): then all four lines meet both targets,
    [NII] 6585 included (measured: flux ratios 1.005, 0.957, 1.028, 1.043; median |z| 0.75, 0.74, 0.97, 0.35). Not
    the default: on synthetic star-forming spectra it biases H-beta low, as the DAP does (docs/LINES.md)."""
    dap, _, selected, _ = compared
    _, maps = fit_spectra_file(shared_file("manga/MaNGA_test_spectra.fits.gz"), continuum_refit="sasuke")
    for name, line in compare_with_dap(dap, maps, selected).items():
        assert abs(line["ratio_median"] - 1.0) <= 0.10, (name, line["ratio"])
        assert line["abs_z_median"] <= 1.5, (name, line["z"])
