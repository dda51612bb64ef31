"""Agreement of :func:`galspec_hf.analysis.fit_emission_lines` with the MaNGA DAP on real spectra.

The DAP (sdss-mangadap, from the test extra; Westfall et al. 2019, AJ 158, 231; Belfiore et al. 2019, AJ 158,
160) is run on the 8 spectra of ../shared/data/manga/MaNGA_test_spectra.fits.gz by
:func:`galspec_hf.analysis.dap_reference.run_dap`, exactly as its own test
``mangadap/tests/test_sasuke.py::test_sasuke_mpl11`` runs it: a pPXF stellar-continuum fit with the MILES-HC
library (additive Legendre degree 8, two moments), then Sasuke with the ELPMPL11 line list. Nothing is installed
at run time; the DAP's fit takes about 40 s, so the test is ``slow``.
"""

from __future__ import annotations

import numpy as np
import pytest

from galspec_hf.analysis.dap_reference import DAP_LINES, run_dap

from ..galspec_testing import fit_manga_test_spectra

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

#: A DAP dispersion at or above this is at (or next to) the DAP's 1000 km/s upper bound: the fit looks wrong.
DAP_DISPERSION_AT_BOUND_KMS = 990.0
#: ELPMPL11 ties [NII] 6585's velocity to H-alpha's but fits its dispersion freely. Where the DAP's [NII] dispersion
#: is more than this many times its H-alpha dispersion, the broad [NII] Gaussian takes H-alpha's wings (spectrum 3
#: of the file: [NII] 641 km/s against H-alpha 119 km/s and [OIII] 134 km/s): H-alpha and [NII] of that spectrum are
#: left out, [OIII] and H-beta kept.
DAP_NII_TO_HALPHA_DISPERSION_MAX = 3.0


@pytest.fixture(scope="module")
def compared(shared_file):
    path = shared_file("manga/MaNGA_test_spectra.fits.gz")
    dap = run_dap(path)
    spectra, maps = fit_manga_test_spectra(path)
    broad_nii = dap["dispersion_kms"]["NII_6585"] > DAP_NII_TO_HALPHA_DISPERSION_MAX * dap["dispersion_kms"]["Halpha"]
    selected = {}
    for name in DAP_LINES.values():
        flux, err = dap["flux"][name], dap["flux_err"][name]
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = (err > 0) & (flux / err > 3) & (dap["mask"][name] == 0)
        ok &= dap["dispersion_kms"][name] < DAP_DISPERSION_AT_BOUND_KMS
        if name in ("Halpha", "NII_6585"):
            ok &= ~broad_nii
        selected[name] = ok
    return dap, maps, selected, broad_nii


def _z(dap, maps, name, sel):
    combined = np.hypot(maps.flux_err[name][sel], dap["flux_err"][name][sel])
    return (maps.flux[name][sel] - dap["flux"][name][sel]) / combined


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
    sel = selected[name]
    ratio = maps.flux[name][sel] / dap["flux"][name][sel]
    assert abs(np.median(ratio) - 1.0) <= 0.10, (name, ratio)


_Z_XFAIL = pytest.mark.xfail(
    strict=True,
    reason="measured median |z| of [NII] 6585 = 1.93 over 2 spectra (z = +0.45 and -3.41: spectrum 4, package 0.90 x "
    "the DAP; the package ties [NII]'s dispersion to [OIII]'s, 160 km/s between the DAP's own 175 and 144, so its "
    "[NII] is fitted 7 % too narrow: docs/LINES.md); target 1.5",
)


@pytest.mark.parametrize(
    "name", [n if n != "NII_6585" else pytest.param(n, marks=_Z_XFAIL) for n in DAP_LINES.values()]
)
def test_median_abs_z_at_most_1_5(compared, name):
    dap, maps, selected, _ = compared
    z = _z(dap, maps, name, selected[name])
    assert np.median(np.abs(z)) <= 1.5, (name, z)


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
