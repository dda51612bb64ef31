"""Cubes: predict_cube on a MaNGA-like grid and footprint, and `galspec predict-cube` to a LOGCUBE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra
from galspec_hf.cli import main
from galspec_hf.cube import hexagon_footprint, predict_cube, spaxel_grid
from galspec_hf.data import read_manga_cube

from .galspec_testing import toy_galaxies


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GalSpecForMaskedSpectra(GalSpecConfig.from_preset("tiny")).eval()


def test_spaxel_grid_orientation():
    grid = spaxel_grid(4, 0.5)
    assert grid.shape == (4, 4, 2)
    assert grid[0, 0, 0] > grid[0, 3, 0]  # columns run west: east offset falls
    assert grid[3, 0, 1] > grid[0, 0, 1]  # rows run north
    assert torch.allclose(grid.mean(dim=(0, 1)), torch.zeros(2))


def test_hexagon_footprint_area():
    grid = spaxel_grid(200, 0.1)
    inside = hexagon_footprint(grid, 12.5)
    area = inside.sum().item() * 0.1**2
    assert area == pytest.approx(3 * math.sqrt(3) / 2 * (12.5 / 2) ** 2, rel=0.02)  # regular hexagon
    assert inside[100, 100] and not inside[0, 0]


def test_predict_cube_matches_predict_spectra(model):
    inputs = toy_galaxies(model.config, 2)
    cube = predict_cube(model, inputs["pixel_values"], inputs["redshift"], spaxel_size=0.5, bundle_diameter=6.0)
    side = int(model.config.image_size * model.config.pixel_scale // 0.5)
    assert cube.mean.shape == cube.sigma.shape == (2, side, side, model.config.num_wavelengths)
    assert cube.footprint.shape == (side, side) and 0 < cube.footprint.sum() < side * side
    assert torch.all(cube.mean[:, ~cube.footprint] == 0)
    # a spaxel is the fiber spectrum at its centre, scaled to flux per spaxel
    y, x = side // 2, side // 2 - 2
    assert cube.footprint[y, x]
    fiber = model.predict_spectra(
        inputs["pixel_values"], inputs["redshift"], cube.spaxel_offset[y, x][None, None].expand(2, 1, 2)
    )
    area_ratio = 0.25 / (math.pi * model.config.fiber_diameter**2 / 4)
    assert torch.allclose(cube.mean[:, y, x], fiber.mean[:, 0] * area_ratio, rtol=1e-4, atol=1e-6)
    assert torch.allclose(cube.sigma[:, y, x], fiber.sigma[:, 0] * area_ratio, rtol=1e-4, atol=1e-6)


def test_residual_conditioning_reproduces_the_fiber_and_keeps_dark_spaxels(model):
    """residual: the spectrum read at the fiber's own position and aperture is the observed one (where it has
    ivar), a spaxel without image light keeps its image-only spectrum, sigma^2 gains weight^2 / ivar, and an
    observed spectrum equal to the model's own prediction changes nothing."""
    from galspec_hf.cube import fiber_residual_weights

    inputs = toy_galaxies(model.config, 2)
    pixels, redshift = inputs["pixel_values"].clone(), inputs["redshift"]
    pixels[1, :, :, :8] = 0.0  # no light more than 2" east in the second image (column 0 is east)
    spacing = 0.5
    grid = spaxel_grid(int(model.config.image_size * model.config.pixel_scale // spacing), spacing)
    fiber_at = grid[grid.shape[0] // 2, grid.shape[1] // 2 - 1]  # the fiber sits on a spaxel centre
    offsets = fiber_at[None].expand(2, 2)
    observed = inputs["spectrum"].clone()
    ivar = inputs["spectrum_ivar"].clone()
    ivar[:, :5] = 0.0  # unusable pixels carry no residual
    arguments = dict(spaxel_size=spacing, per_spaxel=False, fiber_diameter=1.5, observed_fiber_diameter=1.5)
    image_only = predict_cube(model, pixels, redshift, **arguments)
    cube = predict_cube(model, pixels, redshift, observed_spectrum=observed, observed_ivar=ivar,
                        observed_fiber_offset=offsets, **arguments)  # fmt: skip
    assert cube.conditioning == "residual" and image_only.conditioning is None
    y, x = grid.shape[0] // 2, grid.shape[1] // 2 - 1
    usable = ivar > 0
    assert torch.allclose(cube.mean[:, y, x][usable], observed[usable], rtol=1e-4, atol=1e-4)
    assert torch.allclose(cube.mean[:, y, x][~usable], image_only.mean[:, y, x][~usable])
    weights = fiber_residual_weights(pixels, model.config, grid[cube.footprint], 1.5, offsets, torch.full((2,), 1.5))
    assert torch.allclose(weights[:, (cube.footprint.nonzero() == torch.tensor([y, x])).all(1).nonzero()[0, 0]],
                          torch.ones(2), rtol=1e-5)  # fmt: skip
    dark = weights[1] == 0  # spaxels whose aperture sees no light in image 1
    assert dark.any()
    inside = cube.footprint
    assert torch.equal(cube.mean[1][inside][dark], image_only.mean[1][inside][dark])
    expected_sigma = torch.sqrt(image_only.sigma[:, inside] ** 2 + weights[..., None] ** 2
                                * torch.where(usable, 1 / ivar.clamp(min=1e-30), 0.0)[:, None])  # fmt: skip
    assert torch.allclose(cube.sigma[:, inside], expected_sigma, rtol=1e-4)
    # the model's own prediction at the fiber as the "observed" spectrum: no residual, the image-only cube
    own = model.predict_spectra(pixels, redshift, offsets[:, None], fiber_diameter=torch.full((2,), 1.5)).mean[:, 0]
    same = predict_cube(model, pixels, redshift, observed_spectrum=own, observed_ivar=torch.full_like(own, 1e12),
                        observed_fiber_offset=offsets, **arguments)  # fmt: skip
    assert torch.allclose(same.mean, image_only.mean, rtol=1e-4, atol=1e-5)
    # the encoder conditioning is another cube; bad modes and a dark fiber are refused
    encoder = predict_cube(model, pixels, redshift, observed_spectrum=observed, observed_ivar=ivar,
                           observed_fiber_offset=offsets, conditioning="encoder", **arguments)  # fmt: skip
    assert encoder.conditioning == "encoder" and not torch.allclose(encoder.mean, cube.mean)
    with pytest.raises(ValueError, match="conditioning"):
        predict_cube(model, pixels, redshift, conditioning="anchor")
    dark_offsets = torch.tensor([[0.0, 0.0], [(model.config.image_size / 2 - 1) * model.config.pixel_scale, 0.0]])
    with pytest.raises(ValueError, match="no light in the fiber"):
        predict_cube(model, pixels, redshift, observed_spectrum=observed, observed_ivar=ivar,
                     observed_fiber_offset=dark_offsets, **arguments)  # fmt: skip


def test_residual_conditioning_defaults_and_checks_like_predict_spectra(model):
    """residual mode takes the fiber at the image centre and of the config's diameter by default (as
    predict_spectra does), and its inputs are checked by the same function, with errors that name the argument."""
    inputs = toy_galaxies(model.config, 1)
    pixels, redshift = inputs["pixel_values"], inputs["redshift"]
    observed, ivar = inputs["spectrum"] * 1.3, inputs["spectrum_ivar"]
    arguments = dict(spaxel_size=1.0, num_spaxels=5, per_spaxel=False)
    default = predict_cube(model, pixels, redshift, observed_spectrum=observed, observed_ivar=ivar, **arguments)
    explicit = predict_cube(model, pixels, redshift, observed_spectrum=observed, observed_ivar=ivar,
                            observed_fiber_offset=torch.zeros(1, 2),
                            observed_fiber_diameter=model.config.fiber_diameter, **arguments)  # fmt: skip
    assert torch.equal(default.mean, explicit.mean) and torch.equal(default.sigma, explicit.sigma)
    with pytest.raises(ValueError, match="`observed_ivar` is required"):
        predict_cube(model, pixels, redshift, observed_spectrum=observed, **arguments)
    with pytest.raises(ValueError, match="`observed_ivar` must have shape"):
        predict_cube(model, pixels, redshift, observed_spectrum=observed, observed_ivar=ivar[:, :10], **arguments)
    with pytest.raises(ValueError, match="`observed_fiber_offset` must have shape"):
        predict_cube(model, pixels, redshift, observed_spectrum=observed, observed_ivar=ivar,
                     observed_fiber_offset=torch.zeros(3), **arguments)  # fmt: skip


def test_residual_cube_line_fits_match_the_line_map_residual(model):
    """Fitting lines on a residual-conditioned cube gives, to first order, the experiment's residual conditioning
    at the line-map level (scoreboard.fiber_conditioned_maps): the image-only map plus the fiber's (observed -
    predicted) line flux times the spaxel's light over the fiber's. Checked on H-alpha, the toy spectra's line."""
    from galspec_hf.cube import fiber_residual_weights
    from galspec_hf.scoreboard import fit_maps

    config = model.config
    inputs = toy_galaxies(config, 1, seed=3)
    pixels, redshift = inputs["pixel_values"], inputs["redshift"]
    observed, ivar = inputs["spectrum"] * 3.0, inputs["spectrum_ivar"]  # a galaxy with 3x the model's guess
    arguments = dict(spaxel_size=1.0, num_spaxels=7, per_spaxel=False, fiber_diameter=config.fiber_diameter)
    cube = predict_cube(model, pixels, redshift, observed_spectrum=observed, observed_ivar=ivar, **arguments)
    image_only = predict_cube(model, pixels, redshift, **arguments)
    wave, z = np.asarray(config.wavelength_grid()), float(redshift[0])
    where = cube.footprint.numpy()

    def halpha(output):  # (ny, nx) line fluxes of an output's spaxels
        flux, _ = fit_maps(wave, output.mean[0].numpy(), output.sigma[0].numpy(), z, weighted=False, where=where)
        return flux["Halpha"]

    at_fiber = model.predict_spectra(pixels, redshift, torch.zeros(1, 1, 2)).mean[:, 0]
    fiber_flux, _ = fit_maps(wave, torch.cat([observed, at_fiber]).numpy()[None], np.ones((1, 2, wave.size)), z,
                             weighted=False, where=np.ones((1, 2), bool))  # fmt: skip
    observed_line, predicted_line = fiber_flux["Halpha"][0]
    weights = np.zeros(where.shape)
    weights[where] = fiber_residual_weights(pixels, config, cube.spaxel_offset[cube.footprint], config.fiber_diameter,
                                            torch.zeros(1, 2), torch.full((1,), config.fiber_diameter))[0].numpy()
    expected = halpha(image_only) + (observed_line - predicted_line) * weights  # fiber_conditioned_maps' residual
    got = halpha(cube)
    bright = where & (weights > 0.1)  # spaxels that carry a tenth of the fiber's light or more
    assert bright.sum() >= 5 and abs(observed_line - predicted_line) > 0.5 * observed_line
    np.testing.assert_allclose(got[bright], expected[bright], rtol=0.05)


def test_cube_output_is_exported_from_the_package():
    import galspec_hf
    import galspec_hf.cube

    assert galspec_hf.GalSpecCubeOutput is galspec_hf.cube.GalSpecCubeOutput
    assert not hasattr(GalSpecForMaskedSpectra, "predict_cube")  # one home: galspec_hf.cube.predict_cube


def test_predict_cube_bad_arguments(model):
    inputs = toy_galaxies(model.config, 1)
    with pytest.raises(ValueError, match="`spaxel_size`"):
        predict_cube(model, inputs["pixel_values"], inputs["redshift"], spaxel_size=0)
    with pytest.raises(ValueError, match="`bundle_diameter`"):
        predict_cube(model, inputs["pixel_values"], inputs["redshift"], bundle_diameter=-1)


@pytest.mark.realdata
def test_predict_cube_cli_writes_a_logcube_the_reader_reads(model, tmp_path, shared_file):
    cutout = shared_file("legacysurvey/legacysurvey-dr9-grz-357.9087-54.8817.fits")
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "cube.fits.gz"
    code = main(["predict-cube", "--model", str(tmp_path / "model"), "--image", str(cutout), "--redshift", "0.1",
                 "--out", str(out), "--bundle-diameter", "7.5"])  # fmt: skip
    assert code == 0
    cube = read_manga_cube(out)
    side = int(model.config.image_size * model.config.pixel_scale // 0.5)
    assert cube.flux.shape == (model.config.num_wavelengths, side, side)
    assert cube.spaxel_arcsec == pytest.approx(0.5)
    assert cube.center.ra.deg == pytest.approx(357.9087, abs=1e-4)
    # the sky frame survives the round trip: the reader's WCS offsets are the model's spaxel offsets
    assert np.allclose(cube.spaxel_offset_arcsec, spaxel_grid(side, 0.5).numpy(), atol=1e-3)
    outside = cube.mask[0] != 0
    assert outside.any() and not outside[side // 2, side // 2]
    assert np.all(cube.ivar[:, outside] == 0) and np.all(cube.ivar[:, ~outside] > 0)
    # the written cube is the model's prediction for that image: predict_cube on the cutout's central crop
    from galspec_hf.data import read_legacy_cutout

    image = read_legacy_cutout(cutout).crop_center(model.config.image_size).image
    with torch.no_grad():
        expected = predict_cube(model, torch.from_numpy(image.astype(np.float32))[None], torch.tensor([0.1]),
                                spaxel_size=0.5, bundle_diameter=7.5)  # fmt: skip
    expected_flux = np.moveaxis(expected.mean[0].numpy(), -1, 0)  # (L, ny, nx)
    assert np.abs(cube.flux[:, ~outside]).max() > 0
    np.testing.assert_allclose(cube.flux, expected_flux, rtol=1e-5, atol=1e-6 * np.abs(expected_flux).max())
    np.testing.assert_array_equal(outside, ~expected.footprint.numpy())


def test_predict_cube_cli_errors(tmp_path):
    assert (
        main(["predict-cube", "--model", str(tmp_path), "--image", "x.fits", "--redshift", "0.1", "--out", "c.fits"])
        == 2
    )


def test_predict_cube_cli_leaves_autograd_on(tmp_path, model, capsys):
    """The CLI also runs in-process (galspec_hf.cli.main): it must not switch gradients off globally.

    It also says what it did: the crop of the cutout the model saw and the cube's grid.
    """
    from galspec_hf.data.testing import write_legacy_cutout

    model.save_pretrained(tmp_path / "model")
    cutout = write_legacy_cutout(tmp_path / "cutout.fits", 150.0, 2.0, size=40)
    arguments = ["--model", str(tmp_path / "model"), "--image", str(cutout), "--redshift", "0.1"]
    assert main(["predict-cube", *arguments, "--out", str(tmp_path / "cube.fits")]) == 0
    assert torch.is_grad_enabled()
    printed = capsys.readouterr().out
    # tiny preset: 32 pixels of 0.262" = 8.384"; 0.5" spaxels: floor(8.384 / 0.5) = 16 per side
    assert 'cutout 40x40 pixels (10.5" x 10.5" at 0.262"/pixel)' in printed
    assert 'the model sees the central 32x32 pixels (8.4" x 8.4")' in printed
    assert 'cube: 16x16 spaxels of 0.5" (8.0" x 8.0")' in printed
    assert f"wrote {tmp_path / 'cube.fits'}" in printed
    # a second run refuses to overwrite, and --overwrite replaces
    assert main(["predict-cube", *arguments, "--out", str(tmp_path / "cube.fits")]) == 2
    assert main(["predict-cube", *arguments, "--out", str(tmp_path / "cube.fits"), "--overwrite"]) == 0


def test_predict_cube_file_refuses_to_overwrite_before_loading(tmp_path):
    from galspec_hf.cube import predict_cube_file

    out = tmp_path / "cube.fits"
    out.write_bytes(b"precious")
    # the model folder does not exist: loading it would raise OSError, so FileExistsError proves the order
    with pytest.raises(FileExistsError, match="overwrite=True"):
        predict_cube_file(str(tmp_path / "no_model"), "no_cutout.fits", 0.1, str(out))
    assert out.read_bytes() == b"precious"


def test_predict_cube_cli_refuses_a_cutout_at_another_pixel_scale(tmp_path, model, capsys):
    from galspec_hf.data.testing import write_legacy_cutout

    model.save_pretrained(tmp_path / "model")
    cutout = write_legacy_cutout(tmp_path / "hsc.fits", 150.0, 2.0, size=60, pixel_scale_arcsec=0.168)
    arguments = ["--model", str(tmp_path / "model"), "--image", str(cutout), "--redshift", "0.1"]
    assert main(["predict-cube", *arguments, "--out", str(tmp_path / "cube.fits")]) == 2
    error = capsys.readouterr().err  # (transformers' weight-loading progress bar comes first)
    assert "Traceback" not in error
    last = error.strip().splitlines()[-1]
    assert last.startswith("galspec predict-cube: error: ")
    assert "hsc.fits: pixel scale 0.1680 arcsec differs from the model's 0.262 arcsec" in last
    assert not (tmp_path / "cube.fits").exists()


def test_predict_cube_cli_conditioned_on_a_desi_fiber(model, tmp_path, capsys):
    """--spectrum/--targetid: the cube equals predict_cube given the fiber flux (coadd flux x factor) at the
    fiber's sky position; a TARGETID not in the file is refused in one line before the model loads."""
    from astropy.io import fits

    from galspec_hf.data import read_legacy_cutout
    from galspec_hf.data.testing import make_targets, write_desi_coadd, write_legacy_cutout
    from galspec_hf.io.desi import read_desi_coadd

    targets = make_targets(2, ra=150.0, dec=2.0)
    target = targets[1]
    coadd_path = write_desi_coadd(tmp_path / "coadd-main-dark-10032.fits", targets)
    cutout_path = write_legacy_cutout(tmp_path / "cutout.fits", target.ra, target.dec, size=40)
    model.save_pretrained(tmp_path / "model")
    arguments = ["predict-cube", "--model", str(tmp_path / "model"), "--image", str(cutout_path), "--redshift",
                 f"{target.z}", "--bundle-diameter", "7.5"]  # fmt: skip
    out = tmp_path / "cube.fits"
    fiber_arguments = ["--spectrum", str(coadd_path), "--targetid", str(target.targetid)]
    assert main([*arguments, "--out", str(out), *fiber_arguments]) == 0
    assert "conditioned on the observed fiber" in capsys.readouterr().out
    assert fits.getheader(out, 0)["GSCOND"] is True
    conditioned = read_manga_cube(out)

    coadd = read_desi_coadd(coadd_path)
    cutout = read_legacy_cutout(cutout_path)
    offset = cutout.sky_to_offset_arcsec(coadd.fiber_ra[1], coadd.fiber_dec[1])
    assert np.allclose(offset, target.fiber_offset_arcsec, atol=0.02)  # the fiber's own sky position
    image = torch.from_numpy(cutout.crop_center(model.config.image_size).image.astype(np.float32))[None]
    factor = target.psf_to_fiber
    with torch.no_grad():
        expected = predict_cube(
            model, image, torch.tensor([target.z]), spaxel_size=0.5, bundle_diameter=7.5,
            observed_spectrum=torch.from_numpy(coadd.flux[1:2] * factor),
            observed_ivar=torch.from_numpy(np.where(coadd.mask[1:2] == 0, coadd.ivar[1:2], 0) / factor**2),
            observed_fiber_offset=torch.tensor(np.asarray(offset, np.float32)[None]), observed_fiber_diameter=1.5,
        )  # fmt: skip
        image_only = predict_cube(model, image, torch.tensor([target.z]), spaxel_size=0.5, bundle_diameter=7.5)
    expected_flux = np.moveaxis(expected.mean[0].numpy(), -1, 0)
    np.testing.assert_allclose(conditioned.flux, expected_flux, rtol=1e-4, atol=1e-6 * np.abs(expected_flux).max())
    assert not np.allclose(expected.mean.numpy(), image_only.mean.numpy(), rtol=1e-3)

    missing = main([*arguments, "--out", str(tmp_path / "c2.fits"), "--spectrum", str(coadd_path), "--targetid", "7"])
    err = capsys.readouterr().err.strip()
    assert missing == 2 and err.count("\n") == 0 and "--targetid 7: not in" in err
    alone = main([*arguments, "--out", str(tmp_path / "c3.fits"), "--targetid", str(target.targetid)])
    assert alone == 2 and "give both or neither" in capsys.readouterr().err
    assert not (tmp_path / "c2.fits").exists() and not (tmp_path / "c3.fits").exists()
