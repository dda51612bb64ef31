"""save_pretrained / from_pretrained, the Auto classes, and offline loading from a Hub cache layout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoProcessor

from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra, GalSpecProcessor

from ..galspec_testing import GalSpecModelTester


def _saved_model(path, seed=0):
    tester = GalSpecModelTester()
    torch.manual_seed(seed)
    model = GalSpecForMaskedSpectra(tester.config).eval()
    model.save_pretrained(path)
    GalSpecProcessor.from_config(tester.config).save_pretrained(path)
    return model, tester


def test_save_pretrained_writes_safetensors_only(tmp_path):
    _saved_model(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "galspec"


# Weight names of the checkpoints saved so far (layer indices as N): renaming one would stop them loading.
_LAYER = ("attention.proj", "attention.qkv", "layernorm_after", "layernorm_before", "mlp.fc1", "mlp.fc2")
_READOUT = ("k_proj", "key_norm", "o_proj", "output_norm", "q_proj", "query_norm", "spectrum_head", "v_proj")
_DECODER = ("decoder_embed", "image_head", "layernorm", "sky_projection", "wavelength_projection")
_EMBEDDINGS = ("image_projection", "sky_projection", "spectrum_projection", "wavelength_projection")
WEIGHT_NAMES = {
    *(f"{module}.{p}" for module in ("decoder.layers.N", "galspec.encoder.layers.N") for module_part in _LAYER
      for p in (f"{module_part}.bias", f"{module_part}.weight")),
    *(f"decoder.readout.{m}.{p}" for m in (*_READOUT, "fiber_encoder.mlp.N") for p in ("bias", "weight")),
    *(f"decoder.{m}.{p}" for m in _DECODER for p in ("bias", "weight")),
    *(f"galspec.embeddings.{m}.{p}" for m in (*_EMBEDDINGS, "fiber_encoder.mlp.N") for p in ("bias", "weight")),
    *(f"galspec.encoder.layernorm.{p}" for p in ("bias", "weight")),
    "decoder.readout.distance_strength", "decoder.readout.fiber_query.weight", "decoder.readout.key_position.weight",
    "decoder.image_mask_token", "decoder.spectrum_mask_token", "decoder.image_type_embedding",
    "galspec.embeddings.image_type_embedding", "galspec.embeddings.spectrum_type_embedding",
}  # fmt: skip


def test_weight_names_are_those_of_saved_checkpoints():
    import re

    model = GalSpecForMaskedSpectra(GalSpecConfig.from_preset("tiny"))
    assert {re.sub(r"\.\d+\.", ".N.", name) for name in model.state_dict()} == WEIGHT_NAMES


def test_from_pretrained_restores_identical_outputs(tmp_path):
    model, tester = _saved_model(tmp_path)
    inputs = tester.prepare_inputs()
    noise = tester.noise()
    expected = model(**inputs, noise=noise)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(reloaded) is GalSpecForMaskedSpectra
    assert reloaded.dtype == torch.float32
    again = reloaded(**inputs, noise=noise)
    assert torch.equal(expected.spectrum_mean, again.spectrum_mean)
    assert torch.equal(expected.loss, again.loss)


def test_auto_classes():
    config = GalSpecConfig.from_preset("tiny")
    assert type(AutoModel.from_config(config)).__name__ == "GalSpecForMaskedSpectra"
    assert type(AutoModelForPreTraining.from_config(config)).__name__ == "GalSpecForMaskedSpectra"
    assert type(AutoConfig.for_model("galspec")) is GalSpecConfig


def test_auto_processor_round_trip(tmp_path):
    _saved_model(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(processor) is GalSpecProcessor
    assert processor.image_size == 32
    assert processor.to_dict() == GalSpecProcessor.from_config(GalSpecConfig.from_preset("tiny")).to_dict()


def test_auto_model_from_hub_cache_offline(tmp_path):
    """AutoModel.from_pretrained("org/galspec") from a Hugging Face cache layout, with HF_HUB_OFFLINE=1."""
    model, tester = _saved_model(tmp_path / "saved")
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--galspec"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in os.listdir(tmp_path / "saved"):
        shutil.copy(tmp_path / "saved" / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)

    inputs = tester.prepare_inputs()
    np.savez(tmp_path / "inputs.npz", **{k: v.numpy() for k, v in inputs.items()}, noise=tester.noise().numpy())
    script = textwrap.dedent(
        f"""
        import numpy as np, torch
        import galspec_hf
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained("org/galspec").eval()
        processor = AutoProcessor.from_pretrained("org/galspec")
        assert type(processor).__name__ == "GalSpecProcessor", type(processor)
        data = dict(np.load({str(tmp_path / "inputs.npz")!r}))
        noise = torch.from_numpy(data.pop("noise"))
        out = model(**{{k: torch.from_numpy(v) for k, v in data.items()}}, noise=noise)
        np.save({str(tmp_path / "mean.npy")!r}, out.spectrum_mean.detach().numpy())
        print(type(model).__name__)
        """
    )
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "home"))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "GalSpecForMaskedSpectra"
    expected = model(**inputs, noise=tester.noise()).spectrum_mean.detach().numpy()
    assert np.array_equal(np.load(tmp_path / "mean.npy"), expected)
