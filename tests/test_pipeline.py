"""The pieces together: simulate a survey, build the data set from its files, pretrain on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

from galspec_hf.data.build import build_desi_dataset
from galspec_hf.simulate import simulate_survey

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_simulate_build_pretrain(tmp_path):
    written = simulate_survey(tmp_path / "survey", n_galaxies=12, n_ifu=1, seed=5, cutout_size=48, progress=False)
    assert written["logcubes"] and written["maps"]
    report = build_desi_dataset(tmp_path / "survey", tmp_path / "arrow", image_size=40, progress=False)
    # MaNGA products in the same tree are not mistaken for cutouts
    skipped = json.dumps(report)
    assert "LOGCUBE" not in skipped and "MAPS" not in skipped
    dataset = datasets.load_from_disk(str(tmp_path / "arrow"))
    assert 8 <= len(dataset) <= 12  # a few may fail the quality cuts (e.g. DELTACHI2), and say so
    row = dataset.with_format("numpy")[0]
    assert row["image"].shape == (3, 40, 40) and row["flux"].shape == (7781,)
    assert np.all(np.abs(row["fiber_offset"]) < 40 * 0.262 / 2)

    command = [
        sys.executable, str(ROOT / "examples" / "pretrain.py"), "--dataset", str(tmp_path / "arrow"),
        "--preset", "tiny", "--max_steps", "3", "--per_device_batch_size", "4", "--output_dir", str(tmp_path / "run"),
        "--max_shift_pixels", "4", "--validation_fraction", "0.25",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "train_results.json").read_text())
    assert results["steps"] == 3 and results["eval_pixels"] > 0
