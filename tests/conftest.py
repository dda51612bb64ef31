"""Shared pytest fixtures.

Tests that read the real survey files in ``../shared/data`` are marked ``realdata`` and use the
``shared_data`` fixture: it skips with a clear reason when the folder is absent, except when
``GALSPEC_REQUIRE_REALDATA=1`` is set (CI sets it), where it fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("GALSPEC_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


def _require_realdata() -> bool:
    return os.environ.get("GALSPEC_REQUIRE_REALDATA", "0") not in ("", "0", "false", "False")


def _missing(message: str) -> None:
    """Skip the test for missing real data, or fail it when GALSPEC_REQUIRE_REALDATA=1 (as in CI)."""
    if _require_realdata():
        pytest.fail(message + " and GALSPEC_REQUIRE_REALDATA=1 is set")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; skip (or fail under GALSPEC_REQUIRE_REALDATA=1) when absent."""
    if not SHARED_DATA.is_dir():
        _missing(f"real survey data folder {SHARED_DATA} not found (set GALSPEC_SHARED_DATA to point at it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_file(shared_data: Path):
    """Factory: ``shared_file("desi/coadd-....fits")`` -> path, with the same skip/fail rule as the folder."""

    def _get(relative: str) -> Path:
        path = shared_data / relative
        if not path.is_file():
            _missing(f"real survey file {path} not found")
        return path

    return _get


#: Test files that take minutes: collected first, so that with pytest-xdist (pyproject's addopts) one worker starts
#: on the longest while the others take the rest. Measured with `--durations` on 2 cores.
LONGEST_FIRST = ("test_ifu_experiment.py", "analysis/test_dap_agreement.py", "training/test_training.py")


def pytest_collection_modifyitems(config, items):
    tests_folder = Path(__file__).resolve().parent
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}

    def position(item) -> int:
        try:
            return rank.get(Path(item.path).resolve().relative_to(tests_folder).as_posix(), len(rank))
        except ValueError:  # a test outside this folder keeps its place after the listed ones
            return len(rank)

    items.sort(key=position)  # stable: the order within and among the other files stays pytest's
