"""The README's two commands and .ci/run stay in step."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)][:2]


def test_readme_starts_with_demo_and_test_commands():
    text = (ROOT / "README.md").read_text()
    first_lines = [line for line in text.splitlines() if line.strip()][:8]
    assert first_lines[0] == "# galspec-hf"
    demo, tests = _readme_commands()
    assert "torch==2.13.0" in demo and "torch==2.13.0" in tests
    assert "python3.11 -m venv .venv" in demo and "python3.11 -m venv .venv" in tests
    assert "examples/ifu_from_one_fiber.py --quick" in demo
    assert "pytest" in tests
    # the two commands are the first two blocks of the README
    assert text.index(demo) < text.index(tests) < text.index("## ")


def test_ci_runs_the_readme_test_command_with_realdata_required():
    ci = (ROOT / ".ci" / "run").read_text()
    _, tests = _readme_commands()
    assert tests in ci
    assert "export GALSPEC_REQUIRE_REALDATA=1" in ci
    assert '"$status" -eq 5' in ci  # pytest's "no tests collected" is a failure


def _readme_python_block() -> str:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]


@pytest.mark.realdata
def test_readme_python_example_runs_as_written(tmp_path, shared_data):
    """The README's first Python block, run from a project root where the demo left its model folder."""
    from galspec_hf import GalSpecConfig, GalSpecForMaskedSpectra, GalSpecProcessor

    root = tmp_path / "project"
    model_dir = root / "demo_output" / "one_fiber_model"
    config = GalSpecConfig.from_preset("tiny")
    GalSpecForMaskedSpectra(config).save_pretrained(model_dir)
    GalSpecProcessor.from_config(config).save_pretrained(model_dir)
    (tmp_path / "shared").symlink_to(Path(shared_data).resolve().parent)  # ../shared beside the project root
    code = _readme_python_block()
    assert 'from_pretrained("demo_output/one_fiber_model")' in code
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    n_wave = GalSpecProcessor.from_config(config).wavelength.size
    assert f"torch.Size([{n_wave}]) torch.Size([1, 2, {n_wave}]) torch.Size([1, 2, {n_wave}])" in result.stdout


def test_no_file_cites_a_design_document_outside_the_repository():
    paths = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("src/**/*.py"), *ROOT.glob("examples/*.py")]
    citing = [str(p.relative_to(ROOT)) for p in paths if "DESIGN.md" in p.read_text()]
    assert citing == []
