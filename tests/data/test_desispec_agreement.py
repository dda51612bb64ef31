"""DESI's own software reads our coadds the way :func:`read_desi_coadd` does.

desispec (``desispec.io.read_spectra`` + ``desispec.coaddition.coadd_cameras``, which merges the b, r, z
arms by inverse-variance weighting where they overlap) is the reference; it is in the ``test`` extra
and CI installs it, so these tests run there.
"""

from __future__ import annotations

import numpy as np
import pytest

from galspec_hf.io.desi import read_desi_coadd
from galspec_hf.simulate.survey import simulate_survey

_REASON = "desispec (the test extra; CI installs it) is needed to compare with DESI's own reader"
desispec_io = pytest.importorskip("desispec.io", reason=_REASON)
desispec_coaddition = pytest.importorskip("desispec.coaddition", reason=_REASON)

#: float32 has a 24-bit significand: relative rounding step 2**-23 ~ 1.2e-7; the two merges differ in summation
#: order and precision, so agreement is asserted to 1e-6 relative (a few float32 steps).
FLOAT32_RTOL = 1e-6


def _compare_with_desispec(path) -> dict:
    """Merged-grid flux and ivar from desispec and from read_desi_coadd; returns the max relative differences."""
    spectra = desispec_io.read_spectra(str(path))
    merged = desispec_coaddition.coadd_cameras(spectra)
    ours = read_desi_coadd(path)
    (band,) = merged.bands  # coadd_cameras returns one merged "brz" band
    np.testing.assert_allclose(merged.wave[band], ours.wavelength, rtol=0, atol=1e-6)
    flux, ivar = np.asarray(merged.flux[band]), np.asarray(merged.ivar[band])
    assert flux.shape == ours.flux.shape
    np.testing.assert_array_equal(ivar > 0, ours.ivar > 0)
    np.testing.assert_allclose(ours.ivar, ivar, rtol=FLOAT32_RTOL, atol=0)
    # relative to the spectrum's typical |flux|, so pixels near zero flux do not divide by ~0
    scale = np.median(np.abs(flux), axis=1, keepdims=True)
    np.testing.assert_allclose(ours.flux, flux, rtol=FLOAT32_RTOL, atol=FLOAT32_RTOL * float(scale.min()))
    np.testing.assert_array_equal(np.asarray(spectra.fibermap["TARGETID"]), ours.targetid)
    good = ivar > 0
    return {
        "flux": float(np.max(np.abs(ours.flux - flux) / np.maximum(np.abs(flux), scale))),
        "ivar": float(np.max(np.abs(ours.ivar - ivar)[good] / ivar[good])),
    }


@pytest.fixture(scope="module")
def simulated_coadd(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    written = simulate_survey(out, n_galaxies=3, seed=5, targets_per_file=3, progress=False)
    return written["coadd"][0]


def test_simulated_coadd_read_by_desispec_agrees(simulated_coadd):
    differences = _compare_with_desispec(simulated_coadd)
    assert differences["flux"] < FLOAT32_RTOL and differences["ivar"] < FLOAT32_RTOL


def test_simulated_coadd_has_desispec_fibermap_factor(simulated_coadd):
    """desispec keeps MEAN_PSF_TO_FIBER_SPECFLUX in the fibermap, the column the builder multiplies by."""
    spectra = desispec_io.read_spectra(str(simulated_coadd))
    factor = np.asarray(spectra.fibermap["MEAN_PSF_TO_FIBER_SPECFLUX"], np.float64)
    np.testing.assert_allclose(read_desi_coadd(simulated_coadd).psf_to_fiber, factor, rtol=0)
    assert np.all((factor > 0) & (factor < 1))


@pytest.mark.realdata
def test_real_coadd_read_by_desispec_agrees(shared_file):
    differences = _compare_with_desispec(shared_file("desi/coadd-4-80613-thru20210324.fits"))
    assert differences["flux"] < FLOAT32_RTOL and differences["ivar"] < FLOAT32_RTOL
