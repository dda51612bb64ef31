"""The README's two commands and .ci/run stay in step."""

import re
from pathlib import Path

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
