"""``galspec predict-cube --spectrum COADD --targetid N``: the coadd is read once (by the input check) and handed
on; the coadd object and its file give the same observed fiber."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy.io import fits

from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra
from galspec_hf.cli import main
from galspec_hf.cube import observed_fiber_from_coadd
from galspec_hf.data.testing import make_targets, write_desi_coadd, write_legacy_cutout
from galspec_hf.errors import GalSpecFormatError, GalSpecFormatWarning
from galspec_hf.io import desi
from galspec_hf.io.legacy import read_legacy_cutout


@pytest.fixture
def fiber_inputs(tmp_path):
    """Two targets in a coadd, a 40-pixel cutout centred on the second, and the tiny config."""
    targets = make_targets(2, ra=150.0, dec=2.0)
    coadd_path = write_desi_coadd(tmp_path / "coadd-main-dark-10032.fits", targets)
    cutout_path = write_legacy_cutout(tmp_path / "cutout.fits", targets[1].ra, targets[1].dec, size=40)
    return targets, coadd_path, cutout_path, GalSpecConfig.from_preset("tiny")


def _count_coadd_reads(monkeypatch) -> list:
    """Replace read_desi_coadd where the check (imported at call time) and galspec_hf.cube look it up."""
    calls = []
    original = desi.read_desi_coadd

    def counting(path, **kwargs):
        calls.append(str(path))
        return original(path, **kwargs)

    monkeypatch.setattr("galspec_hf.io.desi.read_desi_coadd", counting)
    monkeypatch.setattr("galspec_hf.cube.read_desi_coadd", counting)
    return calls


def test_predict_cube_with_spectrum_reads_the_coadd_once(tmp_path, fiber_inputs, capsys, monkeypatch):
    targets, coadd_path, cutout_path, config = fiber_inputs
    torch.manual_seed(0)
    GalSpecForMaskedSpectra(config).save_pretrained(tmp_path / "model")
    calls = _count_coadd_reads(monkeypatch)
    out = tmp_path / "cube.fits"
    arguments = ["predict-cube", "--model", str(tmp_path / "model"), "--image", str(cutout_path),
                 "--redshift", f"{targets[1].z}", "--bundle-diameter", "5", "--out", str(out),
                 "--spectrum", str(coadd_path), "--targetid", str(targets[1].targetid)]  # fmt: skip
    assert main(arguments) == 0
    assert calls == [str(coadd_path)]
    assert "conditioned on the observed fiber" in capsys.readouterr().out
    header = fits.getheader(out, 0)
    assert header["GSCOND"] is True
    comment = "".join(header["COMMENT"])  # a long COMMENT spans several cards
    assert f"TARGETID {targets[1].targetid} in {coadd_path.name}" in comment
    assert header["GSCONDM"] == "residual"  # the default: the design chosen on the validation set


def test_predict_cube_conditioning_option(tmp_path, fiber_inputs, capsys):
    """--conditioning encoder writes another cube than the default residual; the CLI's choices are the library's."""
    from galspec_hf.commands import predict_cube as command
    from galspec_hf.cube import CUBE_CONDITIONING_MODES
    from galspec_hf.io.manga import read_manga_cube

    assert command.CUBE_CONDITIONING_MODES == CUBE_CONDITIONING_MODES
    targets, coadd_path, cutout_path, config = fiber_inputs
    torch.manual_seed(0)
    GalSpecForMaskedSpectra(config).save_pretrained(tmp_path / "model")
    arguments = ["predict-cube", "--model", str(tmp_path / "model"), "--image", str(cutout_path),
                 "--redshift", f"{targets[1].z}", "--bundle-diameter", "5",
                 "--spectrum", str(coadd_path), "--targetid", str(targets[1].targetid)]  # fmt: skip
    cubes = {}
    for mode in CUBE_CONDITIONING_MODES:
        out = tmp_path / f"{mode}.fits"
        assert main([*arguments, "--out", str(out), "--conditioning", mode]) == 0
        assert f"({mode})" in capsys.readouterr().out
        assert fits.getheader(out, 0)["GSCONDM"] == mode
        cubes[mode] = read_manga_cube(out).flux
    assert not np.allclose(cubes["residual"], cubes["encoder"])
    with pytest.raises(SystemExit) as refused:  # argparse's own one-line usage error
        main([*arguments, "--out", str(tmp_path / "x.fits"), "--conditioning", "anchor"])
    assert refused.value.code == 2
    assert "invalid choice: 'anchor'" in capsys.readouterr().err


def test_predict_cube_targetid_not_in_the_coadd_is_one_line(tmp_path, fiber_inputs, capsys, monkeypatch):
    _, coadd_path, cutout_path, config = fiber_inputs
    config.save_pretrained(tmp_path / "model")  # no weights: loading them would fail
    arguments = ["predict-cube", "--model", str(tmp_path / "model"), "--image", str(cutout_path),
                 "--redshift", "0.1", "--out", str(tmp_path / "cube.fits"),
                 "--spectrum", str(coadd_path), "--targetid", "7"]  # fmt: skip
    assert main(arguments) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err == f"galspec predict-cube: error: --targetid 7: not in {coadd_path} (HDU FIBERMAP has 2 targets)"
    assert not (tmp_path / "cube.fits").exists()


def test_observed_fiber_from_a_read_coadd_equals_from_its_file(fiber_inputs, monkeypatch):
    targets, coadd_path, cutout_path, config = fiber_inputs
    cutout = read_legacy_cutout(cutout_path, bands=tuple(config.bands))
    coadd = desi.read_desi_coadd(coadd_path, require_fibermap=True)
    from_file = observed_fiber_from_coadd(coadd_path, targets[1].targetid, cutout, config)
    calls = _count_coadd_reads(monkeypatch)
    from_coadd = observed_fiber_from_coadd(coadd, targets[1].targetid, cutout, config)
    assert calls == []
    assert from_file.keys() == from_coadd.keys()
    for key, value in from_file.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(from_coadd[key]))
    # the second target's fiber, not the first's: its flux is the coadd's row 1 x its fiber factor
    np.testing.assert_allclose(
        from_coadd["observed_spectrum"][0].numpy(), coadd.flux[1] * targets[1].psf_to_fiber, rtol=1e-6
    )
    with pytest.raises(GalSpecFormatError, match=r"coadd-main-dark-10032\.fits: HDU FIBERMAP: TARGETID 7 .*2 targets"):
        observed_fiber_from_coadd(coadd, 7, cutout, config)


def test_observed_fiber_refuses_a_coadd_read_without_fibermap(tmp_path, fiber_inputs):
    targets, _, cutout_path, config = fiber_inputs
    path = write_desi_coadd(tmp_path / "coadd-nofibermap.fits", targets, with_fibermap=False)
    with pytest.warns(GalSpecFormatWarning, match="FIBERMAP"):
        coadd = desi.read_desi_coadd(path)
    cutout = read_legacy_cutout(cutout_path, bands=tuple(config.bands))
    with pytest.raises(GalSpecFormatError, match=r"coadd-nofibermap\.fits: missing HDU FIBERMAP .*read without it\)"):
        observed_fiber_from_coadd(coadd, targets[1].targetid, cutout, config)
    # the file itself: the reader's own error, the same words
    with pytest.raises(GalSpecFormatError, match=r"coadd-nofibermap\.fits: missing HDU FIBERMAP \(expected target "
                                                 r"IDs and fiber positions\)$"):  # fmt: skip
        observed_fiber_from_coadd(path, targets[1].targetid, cutout, config)
