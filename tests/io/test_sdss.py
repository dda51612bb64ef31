"""galspec_hf.io.sdss: SDSS spec files written by the tests."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from galspec_hf import constants as C
from galspec_hf.data.testing import write_sdss_spec
from galspec_hf.errors import GalSpecFormatError
from galspec_hf.io.sdss import read_sdss_spec

from .io_testing import line_peak_wavelength


def test_sdss_spec(tmp_path):
    spectrum = read_sdss_spec(write_sdss_spec(tmp_path / "spec-1000-52000-0001.fits", z=0.12, ra=181.0, dec=11.0))
    assert spectrum.redshift == pytest.approx(0.12)
    assert (spectrum.ra, spectrum.dec) == (181.0, 11.0)
    np.testing.assert_allclose(spectrum.wavelength[0], C.SDSS_WAVELENGTH_MIN_A, rtol=1e-6)
    expected = C.EMISSION_LINES_VACUUM_A["Halpha"] * 1.12
    assert abs(line_peak_wavelength(spectrum.wavelength, spectrum.flux, expected) - expected) < 2.0
    with fits.open(tmp_path / "spec-1000-52000-0001.fits") as hdul:
        fits.HDUList([hdul[0].copy()]).writeto(tmp_path / "nocoadd.fits")
    with pytest.raises(GalSpecFormatError, match=r"nocoadd\.fits: missing HDU COADD"):
        read_sdss_spec(tmp_path / "nocoadd.fits")


def test_sdss_writer_keeps_the_data_model_formats(tmp_path):
    path = write_sdss_spec(tmp_path / "spec-1000-52000-0001.fits")
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "COADD", "SPECOBJ"]
        coadd = hdul["COADD"].columns
        assert coadd.names == ["flux", "loglam", "ivar", "and_mask", "or_mask", "wdisp", "sky", "model"]
        assert (coadd["loglam"].format, coadd["and_mask"].format, hdul["SPECOBJ"].columns["CLASS"].format) == (
            "E",
            "J",
            "6A",
        )
