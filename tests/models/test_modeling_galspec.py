"""Model tests in the transformers style, on the tiny preset."""

from __future__ import annotations

import math

import pytest
import torch

from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra, GalSpecModel
from galspec_hf.models.galspec.modeling_galspec import (
    GalSpecDecoderOutput,
    generate_masks,
    wavelength_encoding,
)

from ..galspec_testing import GalSpecModelTester, toy_galaxies


@pytest.fixture
def tester():
    return GalSpecModelTester()


def _model(config, seed=0, attn_implementation="eager"):
    torch.manual_seed(seed)
    return GalSpecForMaskedSpectra._from_config(config, attn_implementation=attn_implementation).eval()


def test_encoder_output_shapes(tester):
    config = tester.config
    inputs = tester.prepare_inputs()
    model = GalSpecModel(config).eval()
    noise = tester.noise()
    output = model(**inputs, noise=noise)
    spectrum_mask, image_mask, mode = generate_masks(
        noise, config.num_spectrum_patches, config.num_image_tokens, config
    )
    visible = (~image_mask).sum(1) + (~spectrum_mask).sum(1)
    assert output.last_hidden_state.shape == (tester.batch_size, int(visible.max()), config.hidden_size)
    assert torch.equal(output.visible_padding_mask.sum(1), visible)
    assert torch.equal(output.spectrum_mask, spectrum_mask)
    assert output.flux_scale.shape == output.spectrum_scale.shape == (tester.batch_size,)


def test_heads_shapes(tester):
    config = tester.config
    model = _model(config)
    output = model(**tester.prepare_inputs(), noise=tester.noise())
    batch = tester.batch_size
    assert output.spectrum_mean.shape == output.spectrum_sigma.shape == (batch, config.num_wavelengths)
    assert output.image_mean.shape == output.image_log_sigma.shape == (batch, 3, config.image_size, config.image_size)
    assert output.loss.shape == output.spectrum_loss.shape == output.image_loss.shape == ()
    assert torch.all(output.spectrum_sigma > 0)
    assert torch.allclose(output.loss, output.spectrum_loss + config.image_loss_weight * output.image_loss)


def test_decoder_and_forward_loss_make_the_model_output(tester):
    """As in ViTMAE: encoder, then decoder (a GalSpecDecoderOutput), then forward_loss give forward's output."""
    config = tester.config
    model = _model(config)
    inputs, noise = tester.prepare_inputs(), tester.noise()
    output = model(**inputs, noise=noise)
    encoder_output = model.galspec(**inputs, noise=noise)
    decoder_output = model.decoder(
        encoder_output, inputs["redshift"], inputs["fiber_offset"], torch.full((tester.batch_size,), 1.5)
    )
    assert isinstance(decoder_output, GalSpecDecoderOutput)
    for name in ("spectrum_mean", "spectrum_sigma", "spectrum_log_sigma", "image_mean", "image_log_sigma"):
        assert torch.equal(getattr(decoder_output, name), getattr(output, name)), name
    # the normalised mean times the observing fiber's scale is the mean in physical units
    expected_mean = decoder_output.normalized_spectrum_mean * encoder_output.spectrum_scale[:, None]
    assert torch.allclose(decoder_output.spectrum_mean, expected_mean)
    losses = model.forward_loss(
        inputs["pixel_values"], inputs["spectrum"], inputs["spectrum_ivar"], encoder_output, decoder_output
    )
    for got, expected in zip(losses, (output.loss, output.spectrum_loss, output.image_loss), strict=True):
        assert torch.equal(got, expected)


def test_masks_drop_tokens_and_modes():
    config = GalSpecConfig.from_preset("tiny", mask_mode_probabilities=[0.0, 0.0, 1.0])
    noise = torch.rand(2, 2 + config.num_spectrum_patches + config.num_image_tokens)
    spectrum_mask, image_mask, mode = generate_masks(
        noise, config.num_spectrum_patches, config.num_image_tokens, config
    )
    assert spectrum_mask.all() and not image_mask.any() and (mode == 2).all()

    config = GalSpecConfig.from_preset("tiny", mask_mode_probabilities=[0.0, 1.0, 0.0])
    spectrum_mask, _, _ = generate_masks(noise, config.num_spectrum_patches, config.num_image_tokens, config)
    for row in spectrum_mask:
        masked = torch.nonzero(row).flatten()
        assert len(masked) == round(0.75 * config.num_spectrum_patches)
        assert torch.equal(masked, torch.arange(masked[0], masked[0] + len(masked)))  # contiguous chunk

    config = GalSpecConfig.from_preset("tiny", mask_mode_probabilities=[1.0, 0.0, 0.0])
    spectrum_mask, image_mask, _ = generate_masks(noise, config.num_spectrum_patches, config.num_image_tokens, config)
    assert (spectrum_mask.sum(1) == round(0.75 * config.num_spectrum_patches)).all()
    assert (image_mask.sum(1) == round(config.image_mask_ratio * config.num_image_tokens)).all()
    # the masked patches are the highest-noise ones
    spectrum_noise = noise[:, 2 : 2 + config.num_spectrum_patches]
    assert (spectrum_noise[spectrum_mask].min() > 0) and torch.all(
        spectrum_noise.masked_fill(~spectrum_mask, 2).min(1).values
        >= spectrum_noise.masked_fill(spectrum_mask, -1).max(1).values
    )


def test_encoder_sees_only_visible_tokens(tester):
    """Changing the flux of a masked patch must not change the encoder output (tokens are dropped)."""
    config = tester.config
    model = GalSpecModel(config).eval()
    inputs = tester.prepare_inputs()
    spectrum_mask = torch.zeros(tester.batch_size, config.num_spectrum_patches, dtype=torch.bool)
    spectrum_mask[:, 100:150] = True
    image_mask = torch.zeros(tester.batch_size, config.num_image_tokens, dtype=torch.bool)
    reference = model(**inputs, spectrum_mask=spectrum_mask, image_mask=image_mask).last_hidden_state
    changed = dict(inputs)
    changed["spectrum"] = inputs["spectrum"].clone()
    changed["spectrum"][:, 100 * 31 : 150 * 31] += 100.0
    again = model(**changed, spectrum_mask=spectrum_mask, image_mask=image_mask).last_hidden_state
    assert reference.shape[1] == config.num_image_tokens + config.num_spectrum_patches - 50
    assert torch.allclose(reference, again, atol=1e-6)
    changed["spectrum"][:, 62:93] += 100.0  # a visible patch with ivar > 0: now the output must move
    moved = model(**changed, spectrum_mask=spectrum_mask, image_mask=image_mask).last_hidden_state
    assert not torch.allclose(reference, moved, atol=1e-4)


def test_determinism_under_fixed_noise(tester):
    model = _model(tester.config)
    model.train()  # masking and (zero) dropout paths as in training
    inputs = tester.prepare_inputs()
    first = model(**inputs, noise=tester.noise(seed=5))
    second = model(**inputs, noise=tester.noise(seed=5))
    third = model(**inputs, noise=tester.noise(seed=6))
    assert torch.equal(first.loss, second.loss)
    assert torch.equal(first.spectrum_mask, second.spectrum_mask)
    assert not torch.equal(first.spectrum_mask, third.spectrum_mask)


def test_every_parameter_gets_a_gradient(tester):
    config = GalSpecConfig.from_preset("tiny", image_tokens_per_band=True)
    model = _model(config)
    model.train()
    inputs = toy_galaxies(config, 4, seed=3)
    # one galaxy of each masking mode plus one with its whole spectrum masked
    noise = torch.rand(
        4, 2 + config.num_spectrum_patches + config.num_image_tokens, generator=torch.Generator().manual_seed(0)
    )
    noise[:, 0] = torch.tensor([0.1, 0.5, 0.9, 0.2])
    model(**inputs, noise=noise).loss.backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert missing == []


def test_eager_and_sdpa_agree(tester):
    inputs = tester.prepare_inputs()
    noise = tester.noise()
    noise[:, 0] = torch.tensor([0.1, 0.9, 0.5])  # mixed modes -> padded encoder batch with an attention mask
    eager = _model(tester.config, attn_implementation="eager")
    sdpa = _model(tester.config, attn_implementation="sdpa")
    assert sdpa.config._attn_implementation == "sdpa"
    out_eager = eager(**inputs, noise=noise)
    out_sdpa = sdpa(**inputs, noise=noise)
    assert torch.allclose(out_eager.spectrum_mean, out_sdpa.spectrum_mean, rtol=1e-4, atol=1e-4)
    assert torch.allclose(out_eager.loss, out_sdpa.loss, rtol=1e-5, atol=1e-5)


def test_output_attentions_and_hidden_states(tester):
    model = _model(tester.config)
    output = model(**tester.prepare_inputs(), noise=tester.noise(), output_attentions=True, output_hidden_states=True)
    assert len(output.hidden_states) == tester.config.num_hidden_layers + 1
    assert len(output.attentions) == tester.config.num_hidden_layers
    assert torch.allclose(output.attentions[0].sum(-1), torch.ones(()), atol=1e-5)


def test_wavelength_encoding_rest_frame_invariance():
    config = GalSpecConfig.from_preset("tiny")
    rest_wavelength = torch.tensor([4862.683, 6564.61], dtype=torch.float64)
    redshift = torch.tensor([0.05, 0.3], dtype=torch.float64)
    # the same rest-frame wavelengths observed at two redshifts
    observed = rest_wavelength[None, :] * (1 + redshift[:, None])
    encoding = wavelength_encoding(observed, redshift, config)
    half = encoding.shape[-1] // 2
    assert torch.allclose(encoding[0, :, half:], encoding[1, :, half:], atol=1e-5)  # rest-frame part identical
    assert not torch.allclose(encoding[0, :, :half], encoding[1, :, :half], atol=1e-2)  # observed part differs
    # continuous: any wavelength grid, nearby wavelengths give nearby encodings
    # (a sinusoid of period P moves by at most 2 pi d / P for a shift d in log wavelength)
    shift = 0.01  # Angstrom
    bound = 2 * math.pi * (shift / float(observed.min())) / config.wavelength_encoding_periods[0]
    near = wavelength_encoding(observed + shift, redshift, config)
    assert (near - encoding).abs().max() <= bound * 1.001


def test_predict_spectra_shapes_units_and_fiber_independence(tester):
    config = tester.config
    model = _model(config)
    inputs = tester.prepare_inputs()
    offsets = torch.randn(tester.batch_size, 7, 2, generator=torch.Generator().manual_seed(0))
    output = model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets, fiber_batch_size=4)
    assert output.wavelength.shape == (config.num_wavelengths,)
    assert output.mean.shape == output.sigma.shape == (tester.batch_size, 7, config.num_wavelengths)
    assert torch.all(output.sigma > 0)
    # a fiber's spectrum does not depend on the other fibers requested with it, nor on the batching
    alone = model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets[:, 3:4], fiber_batch_size=1)
    assert torch.allclose(alone.mean[:, 0], output.mean[:, 3], atol=1e-5)
    # different positions give different spectra
    assert not torch.allclose(output.mean[:, 0], output.mean[:, 1], atol=1e-6)
    # absolute units: a galaxy twice as bright (image) gets twice the predicted flux
    brighter = model.predict_spectra(2 * inputs["pixel_values"], inputs["redshift"], offsets)
    assert torch.allclose(brighter.mean, 2 * output.mean, rtol=1e-4, atol=1e-5)
    assert torch.allclose(brighter.sigma, 2 * output.sigma, rtol=1e-4, atol=1e-5)


def _forward_image_only(model, inputs, fiber_offset, fiber_diameter):
    """The forward pass with the whole spectrum masked and the whole image visible, one fiber per galaxy."""
    batch = inputs["pixel_values"].shape[0]
    config = model.config
    return model(
        inputs["pixel_values"],
        inputs["redshift"],
        fiber_offset=fiber_offset,
        fiber_diameter=fiber_diameter,
        spectrum_mask=torch.ones(batch, config.num_spectrum_patches, dtype=torch.bool),
        image_mask=torch.zeros(batch, config.num_image_tokens, dtype=torch.bool),
    )


def test_predict_spectra_matches_forward_with_full_mask(tester):
    """predict_spectra (image encoded once, fibers batched) equals one forward pass per fiber, mean and sigma.

    Several fibers per galaxy, at different offsets on each galaxy, read through a non-default diameter given as
    a scalar, per galaxy and per fiber.
    """
    config = tester.config
    model = _model(config)
    # at initialisation the diameter moves the readout by ~1e-7 (relative); larger fiber-encoding weights make a
    # readout that ignored the diameter in one of the two paths visible
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for module in (model.decoder.readout.fiber_encoder, model.decoder.readout.fiber_query):
            for parameter in module.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    inputs = tester.prepare_inputs()
    batch, fibers = tester.batch_size, 3
    offsets = 4.0 * torch.rand(batch, fibers, 2, generator=torch.Generator().manual_seed(4)) - 2.0  # arcsec
    assert not torch.allclose(offsets[0], offsets[1], atol=0.1)
    per_galaxy = torch.tensor([2.5, 1.2, 3.0])[:batch]
    per_fiber = 1.0 + 2.0 * torch.rand(batch, fibers, generator=torch.Generator().manual_seed(5))
    for diameter in (2.5, per_galaxy, per_fiber):
        predicted = model.predict_spectra(
            inputs["pixel_values"], inputs["redshift"], offsets, fiber_diameter=diameter, fiber_batch_size=2
        )
        for k in range(fibers):
            if isinstance(diameter, float):
                fiber_diameter = torch.full((batch,), diameter)
            else:
                fiber_diameter = diameter if diameter.dim() == 1 else diameter[:, k]
            forward = _forward_image_only(model, inputs, offsets[:, k], fiber_diameter)
            assert torch.allclose(forward.spectrum_mean, predicted.mean[:, k], rtol=1e-4, atol=1e-5), (diameter, k)
            assert torch.allclose(forward.spectrum_sigma, predicted.sigma[:, k], rtol=1e-4, atol=1e-5), (diameter, k)
        if diameter is per_galaxy:  # the diameter matters (so the comparison above is not blind to it)
            default = model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets)
            assert not torch.allclose(default.mean[0], predicted.mean[0], rtol=1e-2)
            assert not torch.allclose(default.sigma[0], predicted.sigma[0], rtol=1e-2)


def test_encoder_output_independent_of_fiber_without_spectrum(tester):
    model = GalSpecModel(tester.config).eval()
    inputs = tester.prepare_inputs()
    image_mask = torch.zeros(tester.batch_size, tester.config.num_image_tokens, dtype=torch.bool)
    a = model(inputs["pixel_values"], inputs["redshift"], fiber_offset=torch.zeros(3, 2), image_mask=image_mask)
    b = model(inputs["pixel_values"], inputs["redshift"], fiber_offset=torch.full((3, 2), 2.0), image_mask=image_mask)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)


def test_predict_spectra_on_requested_wavelengths(tester):
    model = _model(tester.config)
    inputs = tester.prepare_inputs()
    full = model.predict_spectra(inputs["pixel_values"], inputs["redshift"], inputs["fiber_offset"])
    wavelength = torch.tensor([3600.0, 3600.4, 6564.0, 9824.0])
    part = model.predict_spectra(
        inputs["pixel_values"], inputs["redshift"], inputs["fiber_offset"], wavelength=wavelength
    )
    assert part.mean.shape == (3, 1, 4)
    assert torch.allclose(part.mean[..., 0], full.mean[..., 0])
    assert torch.allclose(part.mean[..., 1], 0.5 * (full.mean[..., 0] + full.mean[..., 1]), atol=1e-4)
    with pytest.raises(ValueError, match="`wavelength`"):
        model.predict_spectra(inputs["pixel_values"], inputs["redshift"], inputs["fiber_offset"], wavelength=[3000.0])


@pytest.mark.parametrize(
    "change, argument",
    [
        (lambda i: i.update(pixel_values=i["pixel_values"][:, :2]), "pixel_values"),
        (lambda i: i.update(pixel_values=i["pixel_values"][..., :16, :16]), "pixel_values"),
        (lambda i: i.update(redshift=i["redshift"][:2]), "redshift"),
        (lambda i: i.update(spectrum=i["spectrum"][:, :7000]), "spectrum"),
        (lambda i: i.update(spectrum_ivar=i["spectrum_ivar"][:, :100]), "spectrum_ivar"),
        (lambda i: i.update(fiber_offset=torch.zeros(3, 3)), "fiber_offset"),
    ],
)
def test_bad_input_shapes_raise_value_error(tester, change, argument):
    model = _model(tester.config)
    inputs = tester.prepare_inputs()
    change(inputs)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        model(**inputs)


def test_bad_noise_and_mask_shapes(tester):
    model = _model(tester.config)
    inputs = tester.prepare_inputs()
    with pytest.raises(ValueError, match="`noise`"):
        model(**inputs, noise=torch.rand(3, 10))
    with pytest.raises(ValueError, match="`spectrum_mask`"):
        model(**inputs, spectrum_mask=torch.zeros(3, 5, dtype=torch.bool))


def test_loss_ignores_zero_ivar_pixels(tester):
    model = _model(tester.config)
    inputs = tester.prepare_inputs()
    spectrum_mask = torch.ones(tester.batch_size, tester.config.num_spectrum_patches, dtype=torch.bool)
    image_mask = torch.zeros(tester.batch_size, tester.config.num_image_tokens, dtype=torch.bool)
    reference = model(**inputs, spectrum_mask=spectrum_mask, image_mask=image_mask).spectrum_loss
    corrupted = dict(inputs)
    corrupted["spectrum"] = inputs["spectrum"].clone()
    corrupted["spectrum"][:, :50] = 1e6  # these pixels have ivar = 0
    corrupted["spectrum"][:, 60] = float("nan")
    corrupted["spectrum_ivar"] = inputs["spectrum_ivar"].clone()
    corrupted["spectrum_ivar"][:, 60] = 0.0
    # (pixel 60 is removed from the reference too, so compare against that)
    reference_inputs = dict(inputs)
    reference_inputs["spectrum_ivar"] = corrupted["spectrum_ivar"]
    reference = model(**reference_inputs, spectrum_mask=spectrum_mask, image_mask=image_mask).spectrum_loss
    loss = model(**corrupted, spectrum_mask=spectrum_mask, image_mask=image_mask).spectrum_loss
    assert torch.isfinite(loss)
    assert torch.allclose(loss, reference)


@pytest.mark.slow
def test_tiny_loss_falls_over_50_steps():
    config = GalSpecConfig.from_preset("tiny")
    torch.manual_seed(0)
    model = GalSpecForMaskedSpectra(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for step in range(50):
        batch = toy_galaxies(config, 16, seed=step)
        noise = torch.rand(16, 2 + config.num_spectrum_patches + config.num_image_tokens, generator=generator)
        loss = model(**batch, noise=noise).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 1.0, f"loss did not fall: first steps {losses[:5]}, last steps {losses[-5:]}"


def _readout_response(config, fiber_token: int, far_token: int) -> tuple[float, float]:
    """How much a fiber centred on `fiber_token` moves when the value of `fiber_token` / `far_token` changes."""
    from galspec_hf.models.galspec.modeling_galspec import GalSpecFiberReadout, image_token_offsets

    torch.manual_seed(0)
    readout = GalSpecFiberReadout(config).eval()
    if readout.local:
        readout.distance_strength.data.fill_(40.0)  # strongly local heads
    hidden, tokens, patches = config.decoder_hidden_size, config.num_image_tokens, config.num_spectrum_patches
    prepared = {
        "query": torch.randn(1, patches, hidden),
        "key": torch.randn(1, tokens, hidden),
        "value": torch.randn(1, tokens, hidden),
        "residual": torch.zeros(1, patches, hidden),
    }
    fiber = image_token_offsets(config)[fiber_token][None]  # (1, 2) arcsec: on the token's centre
    index, diameter = torch.zeros(1, dtype=torch.long), torch.tensor([1.5])
    changes = []
    with torch.no_grad():
        base = readout(prepared, index, fiber, diameter)
        for token in (fiber_token, far_token):
            moved = {k: v.clone() for k, v in prepared.items()}
            moved["value"][0, token] += 10.0
            changes.append(float((readout(moved, index, fiber, diameter) - base).abs().mean()))
    return changes[0], changes[1]


def test_local_readout_reads_the_sky_under_the_fiber():
    local = GalSpecConfig.from_preset("tiny")
    assert local.fiber_readout_local
    near, far = _readout_response(local, fiber_token=5, far_token=15)  # 2 patches apart in both directions
    assert far < 1e-3 * near
    # the first design (absolute positions, no penalty) mixes in the far token as much as any other
    near_abs, far_abs = _readout_response(GalSpecConfig.from_preset("tiny", fiber_readout_local=False), 5, 15)
    assert far_abs > 0.1 * near_abs


def test_local_readout_initial_strengths_and_bias():
    from galspec_hf.models.galspec.modeling_galspec import readout_distance_bias

    config = GalSpecConfig.from_preset("tiny")
    model = _model(config)
    strength = torch.nn.functional.softplus(model.decoder.readout.distance_strength)
    heads = config.decoder_num_attention_heads
    assert torch.allclose(strength, 4.0 * 2.0 ** -torch.arange(heads, dtype=torch.float32), rtol=1e-5)
    relative = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])  # (1 fiber, 2 tokens, 2): 0 and 5 arcsec from the fiber
    bias = readout_distance_bias(relative, torch.tensor([2.0]), patch_arcsec=5.0)
    assert bias.shape == (1, 1, 1, 2)
    assert torch.allclose(bias[0, 0, 0], torch.tensor([0.0, -1.0]))  # -2 * (5/5)^2 / 2


def test_spectra_are_scaled_by_the_light_in_their_own_fiber(tester):
    """forward divides each fiber's spectrum by the r-band flux in that fiber (independent supersampled aperture)."""
    from ..galspec_testing import nanomaggies_to_flambda_astropy, supersampled_aperture_flux

    config = tester.config
    assert config.spectrum_normalization == "fiber"
    model = _model(config)
    inputs = tester.prepare_inputs()
    size, scale = config.image_size, config.pixel_scale
    images = torch.full((3, len(config.bands), size, size), 0.2)
    images[:, :, :, : size // 2] = 1.0  # the east half (low column index) is 5x brighter
    r = config.bands.index("r")
    images[:, r] *= torch.tensor([1.0, 2.0, 3.0])[:, None, None]  # the normalisation band differs from the others
    images[:, 0] *= 7.0
    offsets = torch.tensor([[1.0, 0.0], [-1.3, 0.6], [0.7, -0.4]])  # east, west, east of centre
    diameters = torch.tensor([2.5, 3.0, 1.5])
    output = model.galspec(images, inputs["redshift"], fiber_offset=offsets, fiber_diameter=diameters)
    expected = torch.tensor(
        [
            nanomaggies_to_flambda_astropy(
                supersampled_aperture_flux(images[i, r].numpy(), *offsets[i].tolist(), float(diameters[i]), scale),
                config.band_wavelengths[r],
            )
            for i in range(3)
        ],
        dtype=torch.float32,
    )
    # the package's anti-aliased aperture matches the supersampled one to ~1.5 % for 1.5" fibers
    assert torch.allclose(output.spectrum_scale, expected, rtol=0.02)
    # and its spectra come out in these units: the mean is the normalised head output times this scale
    heads = []
    hook = model.decoder.readout.register_forward_hook(lambda module, args, out: heads.append(out))
    forward = _forward_image_only(model, {"pixel_values": images, "redshift": inputs["redshift"]}, offsets, diameters)
    hook.remove()
    patch = config.spectrum_patch_length
    mean_norm = heads[0].reshape(3, -1, 2, patch)[:, :, 0].reshape(3, -1)[:, : config.num_wavelengths]
    assert torch.allclose(forward.spectrum_mean, mean_norm * expected[:, None], rtol=0.02, atol=1e-6)
    # the central design gives every fiber the galaxy's central-aperture scale (3" diameter at the centre)
    central = GalSpecConfig(**{**config.to_dict(), "spectrum_normalization": "central"})
    shared = GalSpecModel(central).eval()(images, inputs["redshift"], fiber_offset=offsets, fiber_diameter=diameters)
    centre = torch.tensor(
        [
            nanomaggies_to_flambda_astropy(
                supersampled_aperture_flux(
                    images[i, r].numpy(), 0.0, 0.0, central.normalization_aperture_diameter, scale
                ),
                config.band_wavelengths[r],
            )
            for i in range(3)
        ],
        dtype=torch.float32,
    )
    assert torch.allclose(shared.spectrum_scale, centre, rtol=0.01)


# ----------------------------------------------------------------------------------------
# Loss options (issue: train the inference path on the lines) and conditioning on an observed fiber
# ----------------------------------------------------------------------------------------
def _full_mask_losses(config_overrides: dict):
    """spectrum_loss, and the pieces to recompute it, of the tiny model with the whole spectrum masked."""
    tester = GalSpecModelTester(**config_overrides)
    model = _model(tester.config)
    inputs = tester.prepare_inputs()
    batch, config = tester.batch_size, tester.config
    spectrum_mask = torch.ones(batch, config.num_spectrum_patches, dtype=torch.bool)
    image_mask = torch.zeros(batch, config.num_image_tokens, dtype=torch.bool)
    output = model(**inputs, spectrum_mask=spectrum_mask, image_mask=image_mask)
    return model, inputs, output


def _normalised_terms(model, inputs, output):
    """Per-pixel normalised target, mean, sigma, noise variance and validity, recomputed outside forward_loss."""
    scale = output.spectrum_scale[:, None]
    target, ivar = inputs["spectrum"] / scale, inputs["spectrum_ivar"] * scale**2
    good = ivar > 0
    mean = output.spectrum_mean / scale
    sigma = output.spectrum_sigma / scale
    noise_variance = torch.where(good, 1.0 / torch.where(good, ivar, torch.ones_like(ivar)), 0.0)
    return target, mean, sigma, noise_variance, good


def test_sigma_penalty_adds_the_mean_predicted_variance():
    model, inputs, output = _full_mask_losses({})
    _, _, penalised = _full_mask_losses({"sigma_penalty_weight": 0.1})
    _, _, sigma, _, good = _normalised_terms(model, inputs, output)
    expected_penalty = 0.1 * (sigma**2)[good].mean()
    assert expected_penalty > 0
    assert torch.allclose(penalised.spectrum_loss, output.spectrum_loss + expected_penalty, rtol=1e-4)


def test_beta_nll_weights_the_nll_by_the_variance():
    model, inputs, output = _full_mask_losses({})
    _, _, beta_zero = _full_mask_losses({"spectrum_loss": "beta_nll", "beta_nll_beta": 0.0})
    _, _, beta_half = _full_mask_losses({"spectrum_loss": "beta_nll", "beta_nll_beta": 0.5})
    assert torch.allclose(beta_zero.spectrum_loss, output.spectrum_loss)
    target, mean, sigma, noise_variance, good = _normalised_terms(model, inputs, output)
    variance = sigma**2 + noise_variance
    nll = 0.5 * (torch.log(2 * math.pi * variance) + (target - mean) ** 2 / variance)
    expected = (nll * variance**0.5)[good].mean()
    assert torch.allclose(beta_half.spectrum_loss, expected, rtol=1e-4)
    assert not torch.allclose(beta_half.spectrum_loss, output.spectrum_loss, rtol=1e-3)


def test_line_windows_are_up_weighted_at_the_galaxy_redshift():
    from galspec_hf import constants
    from galspec_hf.models.galspec.modeling_galspec import line_window_mask

    config = GalSpecConfig.from_preset("tiny")
    wavelength = torch.tensor(config.wavelength_grid())
    redshift = torch.tensor([0.0, 0.1])
    mask = line_window_mask(wavelength, redshift, config)
    halpha = constants.EMISSION_LINES_VACUUM_A["Halpha"]
    for row, z in enumerate((0.0, 0.1)):
        observed = halpha * (1 + z)
        near = torch.argmin((wavelength - observed).abs())
        assert mask[row, near]
        # 500 km/s at H-alpha is 10.9 A (rest): 8 A from it lies inside; 6620 A rest, 35 A red of [NII] 6585,
        # lies outside
        assert mask[row, torch.argmin((wavelength - observed * (1 + 8 / halpha)).abs())]
        assert not mask[row, torch.argmin((wavelength - 6620.0 * (1 + z)).abs())]
    assert 0.0 < mask.float().mean() < 0.1

    model, inputs, output = _full_mask_losses({})
    _, _, weighted = _full_mask_losses({"line_window_weight": 5.0})
    target, mean, sigma, noise_variance, good = _normalised_terms(model, inputs, output)
    variance = sigma**2 + noise_variance
    nll = 0.5 * (torch.log(2 * math.pi * variance) + (target - mean) ** 2 / variance)
    weights = good.float() * torch.where(line_window_mask(wavelength, inputs["redshift"], config), 5.0, 1.0)
    assert torch.allclose(weighted.spectrum_loss, (nll * weights).sum() / weights.sum(), rtol=1e-4)


def test_configs_saved_before_the_loss_options_load_with_the_old_loss(tmp_path):
    config = GalSpecConfig.from_preset("tiny")
    saved = config.to_dict()
    for key in ("spectrum_loss", "beta_nll_beta", "sigma_penalty_weight", "line_window_weight",
                "line_window_half_width_kms"):  # fmt: skip
        saved.pop(key)
    old = GalSpecConfig.from_dict(saved)
    assert (old.spectrum_loss, old.sigma_penalty_weight, old.line_window_weight) == ("gaussian", 0.0, 1.0)


def test_predict_spectra_conditioned_on_an_observed_fiber(tester):
    """The observed spectrum enters the encoder fully visible; the result equals a forward pass that shows it."""
    config = tester.config
    model = _model(config)
    inputs = tester.prepare_inputs()
    batch = tester.batch_size
    offsets = torch.tensor([[[0.0, 0.0], [1.5, -1.0]]]).expand(batch, -1, -1)
    image_only = model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets)
    conditioned = model.predict_spectra(
        inputs["pixel_values"], inputs["redshift"], offsets, fiber_batch_size=1,
        observed_spectrum=inputs["spectrum"], observed_ivar=inputs["spectrum_ivar"],
        observed_fiber_offset=inputs["fiber_offset"],
    )  # fmt: skip
    assert conditioned.mean.shape == image_only.mean.shape
    assert not torch.allclose(conditioned.mean, image_only.mean, rtol=1e-3)
    # the same as one forward pass per fiber whose encoder sees the whole observed spectrum
    encoder = model.galspec(
        inputs["pixel_values"], inputs["redshift"], inputs["spectrum"], inputs["spectrum_ivar"],
        inputs["fiber_offset"], spectrum_mask=torch.zeros(batch, config.num_spectrum_patches, dtype=torch.bool),
        image_mask=torch.zeros(batch, config.num_image_tokens, dtype=torch.bool),
    )  # fmt: skip
    _, prepared = model.decoder.trunk(model.decoder.embed(encoder, inputs["redshift"]))
    from galspec_hf.models.galspec.processing_galspec import spectrum_scales

    for k in range(2):
        diameter = torch.full((batch,), config.fiber_diameter)
        galaxies = torch.arange(batch)
        scale = spectrum_scales(inputs["pixel_values"], encoder.flux_scale, galaxies, offsets[:, k], diameter, config)
        read = model.decoder.read_spectra(prepared, galaxies, offsets[:, k], diameter, scale)
        assert torch.allclose(read.spectrum_mean, conditioned.mean[:, k], rtol=1e-4, atol=1e-5)
    # the observed fiber's position matters (it enters with the spectrum)
    moved = model.predict_spectra(
        inputs["pixel_values"], inputs["redshift"], offsets, observed_spectrum=inputs["spectrum"],
        observed_ivar=inputs["spectrum_ivar"], observed_fiber_offset=inputs["fiber_offset"] + 2.0,
    )  # fmt: skip
    assert not torch.allclose(moved.mean, conditioned.mean, rtol=1e-4)


def test_predict_spectra_conditioning_errors_name_the_argument(tester):
    model = _model(tester.config)
    inputs = tester.prepare_inputs()
    args = (inputs["pixel_values"], inputs["redshift"], inputs["fiber_offset"])
    with pytest.raises(ValueError, match="`observed_ivar`"):
        model.predict_spectra(*args, observed_spectrum=inputs["spectrum"])
    with pytest.raises(ValueError, match="`observed_spectrum`"):
        model.predict_spectra(
            *args, observed_spectrum=inputs["spectrum"][:, :100], observed_ivar=inputs["spectrum_ivar"]
        )
    with pytest.raises(ValueError, match="`observed_ivar` was given without"):
        model.predict_spectra(*args, observed_ivar=inputs["spectrum_ivar"])
    with pytest.raises(ValueError, match="`observed_fiber_offset`"):
        model.predict_spectra(
            *args, observed_spectrum=inputs["spectrum"], observed_ivar=inputs["spectrum_ivar"],
            observed_fiber_offset=torch.zeros(3, 3),
        )  # fmt: skip


def _added_layer_changes_nothing_at_first(option: str, added_keys: list[str]):
    """A model built with the optional layer `option` (a config flag) and the weights of one built without it: the
    only weights it lacks are `added_keys` (the new layer), and it predicts exactly what the plain model predicts
    at two fibers per galaxy. Returns (tester, model with the option, plain prediction, inputs, offsets)."""
    base, tester = GalSpecModelTester(), GalSpecModelTester(**{option: True})
    plain_model, model = _model(base.config), _model(tester.config)
    assert model.load_state_dict(plain_model.state_dict(), strict=False).missing_keys == added_keys
    inputs = base.prepare_inputs()
    offsets = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]).expand(base.batch_size, -1, -1)
    plain = plain_model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets)
    same = model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets)
    assert torch.allclose(plain.mean, same.mean, atol=1e-6)
    return tester, model, plain, inputs, offsets


def test_readout_modulation_starts_as_the_identity_and_learns():
    """readout_modulation: a model built with it predicts exactly what the same weights without it predict (the
    FiLM layer starts at scale 1, shift 0); once its weights move, a fiber's read reshapes all its tokens."""
    modulated, film_model, plain, inputs, offsets = _added_layer_changes_nothing_at_first(
        "readout_modulation", ["decoder.readout.modulation.weight", "decoder.readout.modulation.bias"]
    )
    assert torch.count_nonzero(film_model.decoder.readout.modulation.weight) == 0
    with torch.no_grad():
        film_model.decoder.readout.modulation.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    moved = film_model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets)
    assert not torch.allclose(moved.mean, plain.mean, rtol=1e-3)
    # still one result per fiber, whatever the batching
    alone = film_model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets[:, 1:], fiber_batch_size=1)
    assert torch.allclose(alone.mean[:, 0], moved.mean[:, 1], rtol=1e-4, atol=1e-5)
    output = film_model(**inputs, noise=modulated.noise())  # the modulation gets a gradient in training
    output.loss.backward()
    assert film_model.decoder.readout.modulation.weight.grad.abs().sum() > 0


def test_readout_colours_start_at_zero_and_follow_the_fibers_photometry():
    """readout_colours: the fiber's aperture colours (log10 band flux / r-band flux, from the image at the fiber)
    add a linear term to its normalised mean spectrum, zero at first (same predictions as without it); once its
    weights move, a redder image gives another spectrum shape at the same fiber, and the training forward gives the
    layer a gradient. The colours are what the image holds inside the fiber: an image whose g band is half its r band
    everywhere has log10(0.5) wherever the fiber lies."""
    from galspec_hf.models.galspec.processing_galspec import fiber_colours_dex

    coloured, colour_model, _, inputs, offsets = _added_layer_changes_nothing_at_first(
        "readout_colours", ["decoder.readout.colour_slope.weight"]
    )
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        colour_model.decoder.readout.colour_slope.weight.normal_(0.0, 0.5, generator=generator)
    redder = inputs["pixel_values"].clone()
    redder[:, coloured.config.bands.index("g")] *= 0.5
    blue_shape = colour_model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets).mean
    red_shape = colour_model.predict_spectra(redder, inputs["redshift"], offsets).mean
    ratio = red_shape / blue_shape
    assert not torch.allclose(ratio, ratio[..., :1].expand_as(ratio), rtol=1e-3)  # the shape changed, not a scale
    output = colour_model(**inputs, noise=coloured.noise())
    output.loss.backward()
    assert colour_model.decoder.readout.colour_slope.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="readout_colours"):
        colour_model.decoder.readout({key: value[:1] for key, value in colour_model.decoder.trunk(
            colour_model.decoder.embed(colour_model.galspec(inputs["pixel_values"][:1], inputs["redshift"][:1]),
                                       inputs["redshift"][:1]))[1].items()},
            torch.zeros(1, dtype=torch.long), torch.zeros(1, 2), torch.ones(1))  # fmt: skip
    # the photometry itself: a uniform colour is found wherever the fiber lies
    config = coloured.config
    image = torch.ones(1, len(config.bands), config.image_size, config.image_size)
    image[:, config.bands.index("g")] = 0.5
    offsets = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-2.0, 0.5]])
    colours = fiber_colours_dex(image, torch.zeros(3, dtype=torch.long), offsets, torch.full((3,), 1.5), config)
    expected = torch.tensor([math.log10(0.5) if band == "g" else 0.0 for band in config.bands])
    assert torch.allclose(colours, expected.expand(3, -1), atol=1e-6)


def test_decoder_image_summary_starts_at_zero_and_carries_the_image():
    """decoder_image_summary: the mean of the visible image tokens projected onto every spectrum token, zero at
    first (same predictions as without it); once its weights move, the spectrum tokens leaving the decoder trunk
    differ with the image, and training gives the projection a gradient."""
    summarised, summary_model, _, inputs, _ = _added_layer_changes_nothing_at_first(
        "decoder_image_summary", ["decoder.image_summary.weight", "decoder.image_summary.bias"]
    )
    with torch.no_grad():
        summary_model.decoder.image_summary.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(2))
        encoded = summary_model.galspec(inputs["pixel_values"], inputs["redshift"], return_dict=True)
        with_summary = summary_model.decoder.embed(encoded, inputs["redshift"])
        summary_model.decoder.image_summary = None
        without = summary_model.decoder.embed(encoded, inputs["redshift"])
    num_image = summarised.config.num_image_tokens
    assert torch.equal(with_summary[:, :num_image], without[:, :num_image])  # image tokens untouched
    added = (with_summary - without)[:, num_image:]  # the same vector on every spectrum token of a galaxy
    assert torch.allclose(added, added[:, :1].expand_as(added), atol=1e-6)
    assert not torch.allclose(added[0, 0], added[1, 0], atol=1e-4)  # and it differs between galaxies
    trained = _model(summarised.config)
    output = trained(**inputs, noise=summarised.noise())
    output.loss.backward()
    assert trained.decoder.image_summary.weight.grad.abs().sum() > 0


def test_decoder_photometry_gives_the_spectrum_tokens_the_central_colours():
    """decoder_photometry: an MLP of the galaxy's central colours (image light in a fiber of config.fiber_diameter at
    the image centre) is added to every spectrum token before the decoder trunk. A model with it holds exactly the
    plain model's weights plus the MLP's; the same vector goes onto every spectrum token of a galaxy (image tokens
    untouched); a redder image changes the predicted spectrum's shape at every fiber; the colours are the central
    ones whatever fiber observed the galaxy, so the trunk is shared by all fibers (a fiber read alone gives what it
    gives among others); the MLP gets a gradient in training."""
    base, tester = GalSpecModelTester(), GalSpecModelTester(decoder_photometry=True)
    plain_model, model = _model(base.config), _model(tester.config)
    added = [f"decoder.photometry_embedding.{i}.{p}" for i in ("fc1", "fc2") for p in ("weight", "bias")]
    assert sorted(model.load_state_dict(plain_model.state_dict(), strict=False).missing_keys) == sorted(added)
    inputs = base.prepare_inputs()
    with torch.no_grad():
        encoded = model.galspec(inputs["pixel_values"], inputs["redshift"], return_dict=True)
        with_photometry = model.decoder.embed(encoded, inputs["redshift"])
        photometry_embedding, model.decoder.photometry_embedding = model.decoder.photometry_embedding, None
        without = model.decoder.embed(encoded, inputs["redshift"])
        model.decoder.photometry_embedding = photometry_embedding
    num_image = tester.config.num_image_tokens
    assert torch.equal(with_photometry[:, :num_image], without[:, :num_image])
    difference = (with_photometry - without)[:, num_image:]
    assert torch.allclose(difference, difference[:, :1].expand_as(difference), atol=1e-6)
    # the central colours, whatever the observing fiber
    moved = model.galspec(inputs["pixel_values"], inputs["redshift"], fiber_offset=torch.ones(base.batch_size, 2))
    assert torch.equal(moved.galaxy_colours, encoded.galaxy_colours)
    assert encoded.fiber_colours is None  # the readout's own colour term is another option
    offsets = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]).expand(base.batch_size, -1, -1)
    with torch.no_grad():
        blue = model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets).mean
        redder = inputs["pixel_values"].clone()
        redder[:, tester.config.bands.index("g")] *= 0.5
        red = model.predict_spectra(redder, inputs["redshift"], offsets).mean
        alone = model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets[:, 1:], fiber_batch_size=1)
    ratio = red / blue
    assert not torch.allclose(ratio, ratio[..., :1].expand_as(ratio), rtol=1e-3)  # the shape changed
    assert torch.allclose(alone.mean[:, 0], blue[:, 1], rtol=1e-4, atol=1e-5)
    output = model(**inputs, noise=tester.noise())
    output.loss.backward()
    assert model.decoder.photometry_embedding.fc1.weight.grad.abs().sum() > 0


def test_readout_photometry_mixes_each_fibers_own_colours_into_its_spectrum():
    """readout_photometry: the readout adds an embedding of the fiber's own colours to its spectrum tokens and runs
    one MLP over them. The model holds the plain model's weights plus those layers; on the same decoded galaxy, the
    same fiber with a bluer g - r gets a spectrum of another shape (the colours act per fiber, after the shared
    trunk); a fiber read alone gives what it gives among others; the layers get a gradient in training, and the
    readout refuses to run without the colours."""
    base, tester = GalSpecModelTester(), GalSpecModelTester(readout_photometry=True)
    plain_model, model = _model(base.config), _model(tester.config)
    parts = ("embedding.fc1", "embedding.fc2", "norm", "mlp.fc1", "mlp.fc2")
    added = [f"decoder.readout.photometry_{part}.{p}" for part in parts for p in ("weight", "bias")]
    assert sorted(model.load_state_dict(plain_model.state_dict(), strict=False).missing_keys) == sorted(added)
    inputs = base.prepare_inputs()
    config = tester.config
    with torch.no_grad():
        encoded = model.galspec(inputs["pixel_values"], inputs["redshift"], return_dict=True)
        prepared = model.decoder.trunk(model.decoder.embed(encoded, inputs["redshift"]))[1]
        fibers = torch.arange(base.batch_size)
        offsets, diameters = torch.zeros(base.batch_size, 2), torch.full((base.batch_size,), 1.5)
        colours = encoded.fiber_colours
        bluer = colours.clone()
        bluer[:, config.bands.index("g")] += 0.05  # 0.05 dex more g light
        head, head_bluer = (model.decoder.readout(prepared, fibers, offsets, diameters, c) for c in (colours, bluer))
    change = (head_bluer - head).reshape(base.batch_size, -1)
    assert not torch.allclose(change, change[:, :1].expand_as(change), atol=1e-5)  # not one constant shift
    offsets = torch.tensor([[[-2.0, 0.0], [2.0, 0.5]]]).expand(base.batch_size, -1, -1)
    with torch.no_grad():
        both = model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets).mean
        alone = model.predict_spectra(inputs["pixel_values"], inputs["redshift"], offsets[:, 1:], fiber_batch_size=1)
    assert torch.allclose(alone.mean[:, 0], both[:, 1], rtol=1e-4, atol=1e-5)
    output = model(**inputs, noise=tester.noise())
    output.loss.backward()
    assert model.decoder.readout.photometry_mlp.fc1.weight.grad.abs().sum() > 0
    assert model.decoder.readout.photometry_embedding.fc1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="readout_photometry"):
        model.decoder.readout(prepared, fibers, offsets[:, 0], diameters)
