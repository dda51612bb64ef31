"""The ``galspec`` command starts light, and maps only user errors to one line and exit code 2.

``galspec --help`` and the commands that never need the model (simulate, build-dataset, line-maps) must not
import torch (about 4 s of start-up on the machines the package targets); ``import galspec_hf`` must still
register the Auto classes. Both are checked in fresh processes, since this test session imported torch long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from galspec_hf.cli import main
from galspec_hf.errors import CLIError, DownloadError, GalSpecFormatError, GalSpecUserError, HubExportError


def _run_python(code: str, cwd) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_and_model_free_commands_do_not_import_torch(tmp_path):
    report = _run_python(
        """
        import contextlib, io, json, sys
        from galspec_hf.cli import main

        torch_after = {}
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main(["--help"])
            except SystemExit:
                pass
            torch_after["help"] = "torch" in sys.modules
            codes = {}
            codes["simulate"] = main(["simulate", "--n-galaxies", "3", "--n-ifu", "1", "--seed", "2",
                                      "--out", "survey", "--cutout-size", "32", "--no-progress"])
            torch_after["simulate"] = "torch" in sys.modules
            cube = sorted(__import__("pathlib").Path("survey").rglob("*LOGCUBE*.fits*"))[0]
            codes["line-maps"] = main(["line-maps", str(cube), "--out", "maps", "--continuum", "local",
                                       "--no-progress"])
            torch_after["line-maps"] = "torch" in sys.modules
            codes["build-dataset"] = main(["build-dataset", "--input", "survey", "--output", "arrow",
                                           "--image-size", "32"])
            torch_after["build-dataset"] = "torch" in sys.modules
        print(json.dumps({"torch_after": torch_after, "codes": codes}))
        """,
        tmp_path,
    )
    assert report["codes"] == {"simulate": 0, "line-maps": 0, "build-dataset": 0}
    assert report["torch_after"] == {"help": False, "simulate": False, "line-maps": False, "build-dataset": False}
    assert (tmp_path / "maps" / "line_maps.fits").is_file()
    assert (tmp_path / "arrow").is_dir()


def test_import_registers_auto_classes_without_torch(tmp_path):
    report = _run_python(
        """
        import json, sys
        import galspec_hf

        torch_on_import = "torch" in sys.modules
        from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

        galspec_hf.GalSpecConfig.from_preset("tiny").save_pretrained("model")
        config = AutoConfig.from_pretrained("model")
        print(json.dumps({
            "torch_on_import": torch_on_import,
            "config": type(config).__name__,
            "model": type(AutoModel.from_config(config)).__name__,
            "pretraining": type(AutoModelForPreTraining.from_config(config)).__name__,
        }))
        """,
        tmp_path,
    )
    assert report == {
        "torch_on_import": False,
        "config": "GalSpecConfig",
        "model": "GalSpecForMaskedSpectra",
        "pretraining": "GalSpecForMaskedSpectra",
    }


@pytest.mark.parametrize("order", ["transformers_first", "model_first"])
def test_auto_registration_whatever_the_import_order(tmp_path, order):
    first = {
        "transformers_first": "from transformers import AutoFeatureExtractor, AutoModel, AutoProcessor\n"
        "import galspec_hf",
        "model_first": "import galspec_hf\nfrom galspec_hf import GalSpecForMaskedSpectra, GalSpecProcessor\n"
        "from transformers import AutoFeatureExtractor, AutoModel, AutoProcessor",
    }[order]
    report = _run_python(
        first
        + """
import json
from galspec_hf import GalSpecConfig, GalSpecProcessor
config = GalSpecConfig.from_preset("tiny")
config.save_pretrained("model")
GalSpecProcessor(image_size=config.image_size).save_pretrained("model")
print(json.dumps({
    "model": type(AutoModel.from_config(config)).__name__,
    "processor": type(AutoProcessor.from_pretrained("model")).__name__,
    "feature_extractor": type(AutoFeatureExtractor.from_pretrained("model")).__name__,
}))
""",
        tmp_path,
    )
    assert report == {
        "model": "GalSpecForMaskedSpectra",
        "processor": "GalSpecProcessor",
        "feature_extractor": "GalSpecProcessor",
    }


@pytest.mark.parametrize(
    "error",
    [
        CLIError("bad value"),
        GalSpecFormatError("x.fits: HDU FLUX missing"),
        DownloadError("refused"),
        HubExportError("bad repo id"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(monkeypatch, capsys, error):
    assert isinstance(error, GalSpecUserError)

    def run(args):
        raise error

    monkeypatch.setattr("galspec_hf.commands.demo.run", run)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"galspec demo: error: {error}"


def test_bugs_keep_their_traceback(monkeypatch):
    def run(args):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr("galspec_hf.commands.demo.run", run)
    with pytest.raises(ValueError, match="a bug"):
        main(["demo"])
