"""Strict JSON for every file the package writes: NaN and +-inf become null (json.dumps(allow_nan=False) passes).

Python's json module writes NaN, which strict parsers (JavaScript, jq, most other languages) reject.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["dumps_strict", "to_strict_json", "write_strict_json"]


def to_strict_json(value):
    """A copy of nested dicts/lists/numbers with NaN and +-inf as None and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): to_strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_strict_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_strict_json(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def dumps_strict(value, **kwargs) -> str:
    """``json.dumps`` of :func:`to_strict_json` (value), with ``allow_nan=False`` (keyword arguments passed on)."""
    return json.dumps(to_strict_json(value), allow_nan=False, **kwargs)


def write_strict_json(path: str | Path, value, indent: int = 2) -> Path:
    """Write ``value`` as indented strict JSON with a final newline; returns the path."""
    path = Path(path)
    path.write_text(dumps_strict(value, indent=indent) + "\n")
    return path
