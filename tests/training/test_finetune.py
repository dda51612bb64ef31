"""Fine-tuning a pretrained model on another survey: HSC bands, the SDSS log grid, 3" fibers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import galspec_hf  # noqa: F401
from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra
from galspec_hf.data.custom import build_custom_dataset
from galspec_hf.data.testing import write_legacy_cutout, write_sdss_spec
from galspec_hf.training import adapt_pretrained, freeze_encoder

from ..galspec_testing import toy_galaxies
from .training_data import write_toy_dataset

ROOT = Path(__file__).resolve().parents[2]
HSC = {"bands": ["g", "r", "i", "z", "y"], "band_wavelengths": [4798.0, 6218.0, 7727.0, 8908.0, 9775.0]}
SDSS_GRID = {"wavelength_min": 3800.0, "wavelength_max": 9200.0, "wavelength_step": 1e-4, "wavelength_scale": "log10"}


@pytest.fixture
def pretrained(tmp_path):
    torch.manual_seed(0)
    model = GalSpecForMaskedSpectra(GalSpecConfig.from_preset("tiny"))
    model.save_pretrained(tmp_path / "pretrained")
    return model, tmp_path / "pretrained"


def test_new_grid_and_fiber_keep_every_weight(pretrained):
    model, path = pretrained
    adapted = adapt_pretrained(path, fiber_diameter=3.0, **SDSS_GRID)
    assert adapted.initialized == []
    assert adapted.model.config.num_wavelengths == 3841 and adapted.model.config.fiber_diameter == 3.0
    for name, tensor in model.state_dict().items():
        assert torch.equal(adapted.model.state_dict()[name], tensor)
    inputs = toy_galaxies(adapted.model.config, 2)
    output = adapted.model.eval().predict_spectra(inputs["pixel_values"], inputs["redshift"], inputs["fiber_offset"])
    assert output.mean.shape == (2, 1, 3841)
    assert torch.isclose(output.wavelength[0], torch.tensor(3800.0)) and output.wavelength[-1] <= 9200.0


def test_new_bands_reinitialise_only_band_dependent_weights(pretrained):
    model, path = pretrained
    adapted = adapt_pretrained(path, **HSC, pixel_scale=0.168)
    assert sorted(adapted.initialized) == sorted(
        ["galspec.embeddings.image_projection.weight", "decoder.image_head.weight", "decoder.image_head.bias"]
    )
    assert "galspec.embeddings.image_projection.bias" in adapted.kept
    assert len(adapted.kept) + len(adapted.initialized) == len(adapted.model.state_dict())
    # with one token per band, the band is an encoding of its wavelength: nothing to reinitialise
    torch.manual_seed(0)
    per_band = GalSpecForMaskedSpectra(GalSpecConfig.from_preset("tiny", image_tokens_per_band=True))
    assert adapt_pretrained(per_band, **HSC).initialized == []


def test_adapt_errors(pretrained):
    _, path = pretrained
    with pytest.raises(ValueError, match="band_wavelengths"):
        adapt_pretrained(path, bands=["g", "r", "i", "z", "y"])
    with pytest.raises(ValueError, match="unknown configuration arguments"):
        adapt_pretrained(path, colour="blue")


def test_freeze_encoder(pretrained):
    _, path = pretrained
    model = adapt_pretrained(path).model
    frozen = freeze_encoder(model)
    assert frozen and all(not p.requires_grad for p in model.galspec.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())


def test_finetune_freeze_encoder_keeps_encoder_weights(pretrained, tmp_path):
    """examples/finetune.py --freeze_encoder: the encoder's weights after fine-tuning equal the pretrained ones,
    while the embeddings, decoder and heads move."""
    import importlib.util

    model, path = pretrained
    write_toy_dataset(tmp_path / "data", model.config, num_rows=8)
    spec = importlib.util.spec_from_file_location("galspec_finetune_example", ROOT / "examples" / "finetune.py")
    finetune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finetune)
    argv = [
        "--model_name_or_path", str(path), "--dataset", str(tmp_path / "data"), "--fiber_diameter", "2.0",
        "--freeze_encoder", "--max_steps", "2", "--per_device_batch_size", "4", "--learning_rate", "1e-2",
        "--warmup_steps", "0", "--validation_fraction", "0", "--cpu", "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    assert finetune.main(argv) == 0
    before = model.state_dict()
    after = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert before.keys() == after.keys()
    encoder = [name for name in before if name.startswith("galspec.encoder.")]
    assert len(encoder) > 10
    for name in encoder:
        assert torch.equal(before[name], after[name]), f"{name} changed although the encoder is frozen"
    others = [name for name in before if not name.startswith("galspec.encoder.")]
    changed = [name for name in others if not torch.equal(before[name], after[name])]
    assert {"galspec.embeddings.image_projection.weight", "decoder.readout.spectrum_head.weight"} <= set(changed)
    assert len(changed) > 0.8 * len(others), sorted(set(others) - set(changed))


def _write_sdss_hsc_files(folder: Path, count: int) -> list[tuple[Path, Path]]:
    """SDSS spec-*.fits spectra and 5-band HSC-like cutouts (0.168"/pixel), in the real file layouts."""
    pairs = []
    rng = np.random.default_rng(0)
    for index in range(count):
        ra, dec, z = 150.0 + 0.01 * index, 2.0, float(rng.uniform(0.05, 0.3))
        spec = write_sdss_spec(folder / f"spec-1000-52000-{index + 1:04d}.fits", z=z, ra=ra + 0.3 / 3600, dec=dec)
        cutout = write_legacy_cutout(
            folder / f"hsc-{index}.fits", ra, dec, size=40, bands="grizy", pixel_scale_arcsec=0.168, seed=index
        )
        pairs.append((spec, cutout))
    return pairs


def test_custom_dataset_from_sdss_and_hsc_files(tmp_path):
    target = GalSpecConfig.from_preset("tiny", **HSC, **SDSS_GRID, fiber_diameter=3.0, pixel_scale=0.168)
    pairs = _write_sdss_hsc_files(tmp_path, 3)
    pairs.append((tmp_path / "missing-spec.fits", pairs[0][1]))
    legacy_scale = write_legacy_cutout(tmp_path / "legacy.fits", 150.0, 2.0, size=40, bands="grizy")  # 0.262"/px
    pairs.append((pairs[0][0], legacy_scale))
    report = build_custom_dataset(pairs, tmp_path / "data", target, image_size=36)
    assert report["n_written"] == 3 and len(report["skipped"]) == 2
    assert "missing-spec.fits" in report["skipped"][0]["reason"]
    assert "legacy.fits: pixel scale 0.2620 arcsec differs from the model's 0.168" in report["skipped"][1]["reason"]
    rows = datasets.load_from_disk(str(tmp_path / "data")).with_format("numpy")
    row = rows[0]
    assert row["image"].shape == (5, 36, 36) and row["flux"].shape == (3841,)
    # the fiber sits 0.3" east of the cutout centre, through the WCS
    assert row["fiber_offset"] == pytest.approx([0.3, 0.0], abs=0.01)
    # the SDSS spectrum (loglam from 3800 A, 3000 pixels) covers the start of the grid, not past its end
    assert (row["ivar"][:100] > 0).all() and (row["ivar"][-10:] == 0).all()


@pytest.mark.slow
def test_finetune_end_to_end_on_hsc_sdss_data(pretrained, tmp_path):
    _, path = pretrained
    target = GalSpecConfig.from_preset("tiny", **HSC, **SDSS_GRID, fiber_diameter=3.0, pixel_scale=0.168)
    report = build_custom_dataset(_write_sdss_hsc_files(tmp_path, 20), tmp_path / "sdss_hsc", target, image_size=40)
    assert report["n_written"] == 20
    command = [
        sys.executable, str(ROOT / "examples" / "finetune.py"), "--model_name_or_path", str(path),
        "--dataset", str(tmp_path / "sdss_hsc"), "--bands", *HSC["bands"],
        "--band_wavelengths", *map(str, HSC["band_wavelengths"]), "--pixel_scale", "0.168",
        "--wavelength_min", "3800", "--wavelength_max", "9200", "--wavelength_step", "1e-4",
        "--wavelength_scale", "log10", "--fiber_diameter", "3.0", "--freeze_encoder",
        "--max_steps", "4", "--per_device_batch_size", "4", "--output_dir", str(tmp_path / "out"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "initialised 3 tensors: " in result.stdout and "decoder.image_head.weight" in result.stdout
    assert "froze" in result.stdout
    model = AutoModel.from_pretrained(tmp_path / "out")
    assert model.config.bands == HSC["bands"] and model.config.num_wavelengths == 3841
    assert model.config.fiber_diameter == 3.0
