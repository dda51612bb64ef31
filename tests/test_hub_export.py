"""modeling/export_hub_repo.py and galspec_hf.hub: a Hub-ready folder, served by a real Hub-compatible server.

The end-to-end tests publish the exported folder through olah (a Hugging Face Hub mirror server, PyPI
package ``olah``) running in offline mirror mode on 127.0.0.1: olah serves git repositories found under its
``mirrors-path`` (``<mirrors-path>/models/<org>/<name>``) through the Hub's HTTP API. The tests then load
``AutoModel.from_pretrained("org/galspec")`` with ``HF_ENDPOINT`` pointing at it, (a) in a process that
imports galspec_hf and (b) in a process where ``import galspec_hf`` fails, with ``trust_remote_code=True``.
Nothing touches the network: olah is offline and listens on 127.0.0.1 only.

Olah 0.5.4 answers a request for a file that is *absent* from a mirrored repository with
``401 RepoNotFound`` where the Hub answers ``404 EntryNotFound``. ``AutoProcessor.from_pretrained(repo_id)``
first probes optional files (``processor_config.json``, chat templates) and transformers treats a
RepoNotFound as fatal, so the processor is loaded from ``snapshot_download("org/galspec")`` (which downloads
through the same server) instead of from the repo id; the model and configuration load from the repo id.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra, GalSpecProcessor
from galspec_hf.hub import (
    CONFIG_AUTO_MAP,
    HUB_CODE_FILES,
    PROCESSOR_AUTO_MAP,
    HubExportError,
    export_hub_folder,
    load_metrics_file,
    validate_repo_id,
)

from .galspec_testing import toy_galaxies

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "modeling" / "export_hub_repo.py"
CODE_DIR = REPO_ROOT / "src" / "galspec_hf" / "models" / "galspec"
REPO_ID = "org/galspec"
METRICS = {
    "dataset": {"name": "toy galaxies held-out", "type": "galspec-toy", "split": "test"},
    "metrics": {"nll": -1.25, "coverage_1sigma": 0.664, "coverage_2sigma": 0.951},
    "source": "tests/test_hub_export.py (made-up test values, never published)",
}
EXPORTED_FILES = sorted(["README.md", "config.json", "model.safetensors", "preprocessor_config.json", *HUB_CODE_FILES])
SERVER_START_TIMEOUT_S = 30.0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_script():
    spec = importlib.util.spec_from_file_location("export_hub_repo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny-preset model with fixed seed, saved with save_pretrained (model and processor)."""
    path = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    config = GalSpecConfig.from_preset("tiny")
    model = GalSpecForMaskedSpectra(config).eval()
    model.save_pretrained(path)
    GalSpecProcessor.from_config(config).save_pretrained(path)
    return path, model


@pytest.fixture(scope="module")
def exported(saved_model, tmp_path_factory):
    """The folder written by the real command line, with a metrics file and training-data description."""
    model_dir, _ = saved_model
    root = tmp_path_factory.mktemp("export")
    metrics_file = root / "metrics.json"
    metrics_file.write_text(json.dumps(METRICS))
    out = root / "hub"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--model",
            str(model_dir),
            "--repo-id",
            REPO_ID,
            "--out",
            str(out),
            "--metrics",
            str(metrics_file),
            "--training-data",
            "Toy galaxies from tests/galspec_testing.py.",
            "--dataset",
            "org/toy-galaxies",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"Wrote {out}" in result.stdout
    return out


# ------------------------------------------------------------------------------------------------
# The exported folder
# ------------------------------------------------------------------------------------------------
def test_export_writes_weights_config_processor_code_and_card(saved_model, exported):
    model_dir, _ = saved_model
    assert sorted(os.listdir(exported)) == EXPORTED_FILES
    assert _sha256(exported / "model.safetensors") == _sha256(model_dir / "model.safetensors")
    for name in HUB_CODE_FILES:
        assert (exported / name).read_bytes() == (CODE_DIR / name).read_bytes(), name

    config = json.loads((exported / "config.json").read_text())
    assert config["auto_map"] == CONFIG_AUTO_MAP
    assert config["auto_map"]["AutoModel"] == "modeling_galspec.GalSpecForMaskedSpectra"
    assert config["architectures"] == ["GalSpecForMaskedSpectra"]
    original = json.loads((model_dir / "config.json").read_text())
    assert {k: v for k, v in config.items() if k not in ("auto_map", "architectures")} == {
        k: v for k, v in original.items() if k != "architectures"
    }

    processor = json.loads((exported / "preprocessor_config.json").read_text())
    assert processor["auto_map"] == PROCESSOR_AUTO_MAP
    saved_processor = json.loads((model_dir / "preprocessor_config.json").read_text())
    assert {k: v for k, v in processor.items() if k != "auto_map"} == saved_processor


def test_model_card_metadata_and_sections(exported):
    from huggingface_hub import ModelCard

    card = ModelCard.load(exported / "README.md")
    data = card.data
    assert data.license == "bsd-3-clause"
    assert data.library_name == "transformers"
    assert "custom_code" in data.tags and "astronomy" in data.tags
    assert data.datasets == ["org/toy-galaxies"]
    assert data.metrics == ["nll", "coverage_1sigma", "coverage_2sigma"]
    results = {r.metric_type: r.metric_value for r in data.eval_results}
    assert results == METRICS["metrics"]
    assert {r.dataset_name for r in data.eval_results} == {"toy galaxies held-out"}
    assert {r.dataset_split for r in data.eval_results} == {"test"}
    text = card.text
    for heading in ("## Training data", "## Evaluation", "## Intended use", "## Limitations", "## Citation"):
        assert heading in text
    assert "Toy galaxies from tests/galspec_testing.py." in text
    assert "arxiv.org/abs/2606.10197" in text and "Integral Field Unit Spectroscopy with One Fiber" in text
    assert "not yet measured" not in text
    num_parameters = sum(p.numel() for p in GalSpecForMaskedSpectra.from_pretrained(exported).parameters())
    assert f"{num_parameters:,}" in text  # the parameter count, from the loaded model
    assert f'AutoModel.from_pretrained("{REPO_ID}", trust_remote_code=True)' in text


def test_card_without_metrics_says_not_yet_measured(saved_model, tmp_path):
    model_dir, _ = saved_model
    result = export_hub_folder(model_dir, "someone/galspec-small", tmp_path / "out")
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "Metrics: not yet measured" in card.text
    assert "**Not recorded.**" in card.text  # no training-data description given
    assert card.data.eval_results is None and card.data.metrics is None and card.data.datasets is None
    assert "model_name" not in card.data.to_dict() and "model-index" not in card.content
    assert result.metrics == {} and result.files == EXPORTED_FILES
    assert not result.processor_created


def test_export_leaves_the_classes_unregistered(saved_model, tmp_path):
    """The export registers the classes for the Auto API only while saving: later saves write no auto_map."""
    model_dir, model = saved_model
    export_hub_folder(model_dir, REPO_ID, tmp_path / "out")
    for cls in (GalSpecConfig, GalSpecForMaskedSpectra, GalSpecProcessor):
        assert cls._auto_class is None, cls
    model.config.save_pretrained(tmp_path / "plain")
    GalSpecProcessor.from_config(model.config).save_pretrained(tmp_path / "plain")
    assert sorted(os.listdir(tmp_path / "plain")) == ["config.json", "preprocessor_config.json"]
    for name in ("config.json", "preprocessor_config.json"):
        assert "auto_map" not in json.loads((tmp_path / "plain" / name).read_text()), name


def test_reexporting_an_export_writes_the_same_auto_map(exported, tmp_path):
    export_hub_folder(exported, REPO_ID, tmp_path / "again")
    for name in ("config.json", "preprocessor_config.json", "model.safetensors", *HUB_CODE_FILES):
        assert (tmp_path / "again" / name).read_bytes() == (exported / name).read_bytes(), name


def test_repo_ids_follow_the_hub_rules():
    assert validate_repo_id("org/galspec-small_v1.0") == "org/galspec-small_v1.0"
    for bad in ("galspec", "a/b/c", "org/a--b", "org/a..b", "org/galspec.git", "org/-x", "/galspec", "org/", None):
        with pytest.raises(HubExportError, match="repo id must be ORG/NAME"):
            validate_repo_id(bad)
    with pytest.raises(HubExportError, match="^--dataset must be ORG/NAME"):
        validate_repo_id("x", what="--dataset")


def test_missing_preprocessor_config_is_built_from_the_model_config(saved_model, tmp_path):
    model_dir, _ = saved_model
    partial = tmp_path / "model"
    partial.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model_dir / name, partial / name)
    result = export_hub_folder(partial, REPO_ID, tmp_path / "out")
    assert result.processor_created
    written = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    expected = GalSpecProcessor.from_config(GalSpecConfig.from_preset("tiny")).to_dict()
    assert written["auto_map"] == PROCESSOR_AUTO_MAP
    assert {k: v for k, v in written.items() if k != "auto_map"} == expected


def test_exported_folder_loads_as_a_local_path_with_the_package(exported, saved_model):
    from transformers import AutoModel, AutoProcessor

    _, model = saved_model
    loaded = AutoModel.from_pretrained(exported).eval()
    assert type(loaded) is GalSpecForMaskedSpectra  # the registered class, not remote code
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert type(AutoProcessor.from_pretrained(exported)) is GalSpecProcessor


# ------------------------------------------------------------------------------------------------
# Errors: one line, exit code 2
# ------------------------------------------------------------------------------------------------
def _main_error(capsys, *argv) -> str:
    code = _load_script().main(list(argv))
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("export_hub_repo.py: error: ")
    assert "Traceback" not in captured.err
    return lines[0]


def test_cli_errors_are_one_line_with_exit_code_2(saved_model, tmp_path, capsys):
    model_dir, _ = saved_model
    out = str(tmp_path / "out")
    assert "folder not found" in _main_error(
        capsys, "--model", str(tmp_path / "nope"), "--repo-id", REPO_ID, "--out", out
    )
    assert "repo id must be ORG/NAME" in _main_error(
        capsys, "--model", str(model_dir), "--repo-id", "no-slash", "--out", out
    )
    assert "--dataset must be" in _main_error(
        capsys, "--model", str(model_dir), "--repo-id", REPO_ID, "--out", out, "--dataset", "x"
    )

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("user file")
    message = _main_error(capsys, "--model", str(model_dir), "--repo-id", REPO_ID, "--out", str(busy))
    assert "is not empty" in message and (busy / "keep.txt").read_text() == "user file"

    bad_metrics = tmp_path / "metrics.json"
    bad_metrics.write_text(json.dumps({"dataset": {"name": "d"}, "metrics": {"nll": "low"}}))
    message = _main_error(
        capsys, "--model", str(model_dir), "--repo-id", REPO_ID, "--out", out, "--metrics", str(bad_metrics)
    )
    assert str(bad_metrics) in message and "`metrics.nll` must be a finite number" in message

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps({"model_type": "bert"}))
    message = _main_error(capsys, "--model", str(wrong), "--repo-id", REPO_ID, "--out", out)
    assert "config.json" in message and "`model_type` must be 'galspec', got 'bert'" in message

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(model_dir / "config.json", no_weights / "config.json")
    assert "no model.safetensors" in _main_error(
        capsys, "--model", str(no_weights), "--repo-id", REPO_ID, "--out", out
    )
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cli_error_exit_code_in_a_real_process(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", str(tmp_path / "nope"), "--repo-id", REPO_ID, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"export_hub_repo.py: error: --model {tmp_path / 'nope'}: folder not found"
    ]


def test_weights_that_do_not_fit_the_config_are_refused(saved_model, tmp_path):
    model_dir, _ = saved_model
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((model_dir / "config.json").read_text())
    config.update(hidden_size=128, intermediate_size=256)
    (bad / "config.json").write_text(json.dumps(config))
    shutil.copy(model_dir / "model.safetensors", bad / "model.safetensors")
    with pytest.raises(HubExportError, match="weights do not load into config.json"):
        export_hub_folder(bad, REPO_ID, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_metrics_file_validation(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"dataset": {"name": "held-out"}, "metrics": {"nll": 1}}))
    assert load_metrics_file(path) == {
        "dataset": {"name": "held-out", "type": "held-out", "split": None},
        "metrics": {"nll": 1.0},
        "source": None,
    }
    for payload, field in [
        ({"metrics": {"nll": 1}}, "dataset.name"),
        ({"dataset": {"name": "d"}, "metrics": {}}, "`metrics`"),
        ({"dataset": {"name": "d"}, "metrics": {"nll": float("nan")}}, "metrics.nll"),
        ({"dataset": {"name": "d"}, "metrics": {"nll": 1}, "extra": 1}, "unknown field"),
    ]:
        path.write_text(json.dumps(payload))
        with pytest.raises(HubExportError, match=field.replace(".", r"\.")):
            load_metrics_file(path)


# ------------------------------------------------------------------------------------------------
# Through a real Hub-compatible server (olah, offline mirror mode)
# ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _git(cwd: Path, *args: str) -> str:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "galspec-hf tests",
        "GIT_AUTHOR_EMAIL": "tests@galspec.invalid",
        "GIT_COMMITTER_NAME": "galspec-hf tests",
        "GIT_COMMITTER_EMAIL": "tests@galspec.invalid",
    }
    result = subprocess.run(["git", "-C", str(cwd), *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
    return result.stdout.strip()


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def hub_server(exported, tmp_path_factory):
    """Olah in offline mirror mode on 127.0.0.1, serving the exported folder as the git repo org/galspec."""
    if importlib.util.find_spec("olah") is None:
        pytest.fail("the PyPI package `olah` is required for the Hub tests (pip install olah; in the test extra)")
    if shutil.which("git") is None:
        pytest.fail("`git` is required: olah's mirror mode serves git repositories")
    root = tmp_path_factory.mktemp("olah")
    repo = root / "mirrors" / "models" / "org" / "galspec"
    shutil.copytree(exported, repo)
    _git(repo, "init", "--quiet", "--initial-branch=main")
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "--message", "Export of the tiny test model")
    commit = _git(repo, "rev-parse", "HEAD")

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = root / "olah.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [basic]
            host = "127.0.0.1"
            port = {port}
            repos-path = {json.dumps(str(root / "cache"))}
            mirrors-path = [{json.dumps(str(root / "mirrors"))}]
            mirror-scheme = "http"
            mirror-netloc = "127.0.0.1:{port}"
            mirror-lfs-netloc = "127.0.0.1:{port}"

            [accessibility]
            offline = true
            """
        )
    )
    log_path = root / "server.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed in the finally below
    launcher = "import sys; from olah.server import cli; sys.argv[0] = 'olah-cli'; cli()"
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, "--config", str(config), "--log-path", str(root / "logs")],
        cwd=root,
        env={**os.environ, "OLAH_LOG_PATH": str(root / "logs")},  # olah.server logs on import, before argv
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        probe = f"{url}/api/models/{REPO_ID}/revision/main"
        while True:
            if process.poll() is not None:
                pytest.fail(f"olah exited with code {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                status, body = _get(probe)
            except OSError:
                status, body = None, b""
            if status == 200:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"olah not ready on {url} after {SERVER_START_TIMEOUT_S} s (last status {status})")
            time.sleep(0.2)
        assert json.loads(body)["sha"] == commit
        yield {"url": url, "commit": commit, "root": root, "log": log_path}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


CLIENT = textwrap.dedent(
    """
    import json, sys

    mode, inputs_path, output_path = sys.argv[1:4]
    if mode == "without-package":
        class BlockGalspec:
            def find_spec(self, name, path=None, target=None):
                if name == "galspec_hf" or name.startswith("galspec_hf."):
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
                return None

        sys.meta_path.insert(0, BlockGalspec())
        try:
            import galspec_hf  # noqa: F401
            importable = True
        except ModuleNotFoundError:
            importable = False
        kwargs = {"trust_remote_code": True}
    else:
        import galspec_hf  # noqa: F401  (registers the Auto classes)
        importable = True
        kwargs = {}

    import numpy as np
    import torch
    from huggingface_hub import snapshot_download
    from transformers import AutoConfig, AutoModel, AutoProcessor

    model = AutoModel.from_pretrained("org/galspec", **kwargs).eval()
    config = AutoConfig.from_pretrained("org/galspec", **kwargs)
    snapshot = snapshot_download("org/galspec")
    processor = AutoProcessor.from_pretrained(snapshot, **kwargs)
    data = np.load(inputs_path)
    batch = processor(data["images"], data["redshift"])
    with torch.no_grad():
        out = model.predict_spectra(batch["pixel_values"], batch["redshift"], torch.from_numpy(data["fibers"]))
    np.savez(output_path, mean=out.mean.numpy(), sigma=out.sigma.numpy(), wavelength=out.wavelength.numpy(),
             pixel_values=batch["pixel_values"].numpy())
    name = lambda obj: type(obj).__module__ + "." + type(obj).__qualname__
    print(json.dumps({
        "galspec_importable": importable,
        "galspec_modules": sorted(m for m in sys.modules if m.split(".")[0] == "galspec_hf"),
        "model": name(model), "config": name(config), "processor": name(processor), "snapshot": snapshot,
    }))
    """
)


@pytest.fixture(scope="module")
def fixed_inputs(tmp_path_factory):
    config = GalSpecConfig.from_preset("tiny")
    galaxies = toy_galaxies(config, batch_size=2, seed=3)
    fibers = torch.tensor([[[0.0, 0.0], [1.5, -0.5], [-2.0, 1.0]], [[0.5, 0.5], [0.0, 2.0], [3.0, 0.0]]])
    path = tmp_path_factory.mktemp("inputs") / "inputs.npz"
    np.savez(
        path, images=galaxies["pixel_values"].numpy(), redshift=galaxies["redshift"].numpy(), fibers=fibers.numpy()
    )
    return path


def _run_client(mode: str, server: dict, inputs: Path, tmp_path: Path) -> tuple[dict, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        HF_ENDPOINT=server["url"],
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_CACHE=str(tmp_path / "hub_cache"),
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    output = tmp_path / f"{mode}.npz"
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, mode, str(inputs), str(output)],
        env=env,
        cwd=tmp_path,  # not the repository root: nothing importable by accident
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{mode} client failed:\n{result.stderr[-4000:]}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report, dict(np.load(output))


def _expected(saved_model, inputs: Path) -> dict:
    _, model = saved_model
    data = np.load(inputs)
    processor = GalSpecProcessor.from_config(model.config)
    batch = processor(data["images"], data["redshift"])
    with torch.no_grad():
        out = model.predict_spectra(batch["pixel_values"], batch["redshift"], torch.from_numpy(data["fibers"]))
    return {"mean": out.mean.numpy(), "sigma": out.sigma.numpy(), "pixel_values": batch["pixel_values"].numpy()}


def _assert_same_predictions(got: dict, expected: dict) -> None:
    assert got["mean"].shape == (2, 3, 7781)
    np.testing.assert_array_equal(got["pixel_values"], expected["pixel_values"])
    np.testing.assert_allclose(got["mean"], expected["mean"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(got["sigma"], expected["sigma"], rtol=1e-6, atol=0)


@pytest.mark.slow
def test_hub_server_serves_the_model_card(hub_server, monkeypatch):
    from huggingface_hub import HfApi

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    info = HfApi(endpoint=hub_server["url"]).model_info(REPO_ID, revision="main")
    assert info.sha == hub_server["commit"]
    assert sorted(s.rfilename for s in info.siblings) == EXPORTED_FILES
    assert info.card_data["license"] == "bsd-3-clause"
    assert info.card_data["library_name"] == "transformers"


@pytest.mark.slow
def test_auto_model_from_hub_with_the_package_installed(hub_server, saved_model, fixed_inputs, tmp_path):
    report, got = _run_client("with-package", hub_server, fixed_inputs, tmp_path)
    assert report["galspec_importable"]
    # The package registers the classes, so its own code is used rather than the repository's.
    assert report["model"] == "galspec_hf.models.galspec.modeling_galspec.GalSpecForMaskedSpectra"
    assert report["config"] == "galspec_hf.models.galspec.configuration_galspec.GalSpecConfig"
    assert report["processor"] == "galspec_hf.models.galspec.processing_galspec.GalSpecProcessor"
    # Downloaded through the server: the snapshot is the commit olah serves.
    assert Path(report["snapshot"]).name == hub_server["commit"]
    assert Path(report["snapshot"]).is_relative_to(tmp_path / "hub_cache")
    log = hub_server["log"].read_text()
    assert "GET /org/galspec/resolve/main/model.safetensors" in log
    _assert_same_predictions(got, _expected(saved_model, fixed_inputs))


@pytest.mark.slow
def test_auto_model_from_hub_without_the_package(hub_server, saved_model, fixed_inputs, tmp_path):
    report, got = _run_client("without-package", hub_server, fixed_inputs, tmp_path)
    assert report["galspec_importable"] is False
    assert report["galspec_modules"] == []
    # trust_remote_code: the classes come from the repository's files, imported by transformers.
    for key, cls in (
        ("model", "GalSpecForMaskedSpectra"),
        ("config", "GalSpecConfig"),
        ("processor", "GalSpecProcessor"),
    ):
        assert report[key].startswith("transformers_modules."), report[key]
        assert report[key].endswith(f".{cls}"), report[key]
    assert Path(report["snapshot"]).name == hub_server["commit"]
    assert (tmp_path / "modules" / "transformers_modules").is_dir()
    _assert_same_predictions(got, _expected(saved_model, fixed_inputs))
