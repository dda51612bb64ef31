"""Strict JSON: what the package writes parses with a parser that rejects NaN and Infinity."""

import json
import math

import numpy as np
import pytest

from galspec_hf.strict_json import dumps_strict, to_strict_json, write_strict_json


def _strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinities_become_null_and_numpy_becomes_python(tmp_path):
    value = {"a": float("nan"), "b": [np.float32(1.5), np.inf, -np.inf], "c": np.int64(3), "d": np.bool_(True),
             "e": np.array([np.nan, 2.0]), 4: "key"}  # fmt: skip
    path = write_strict_json(tmp_path / "x.json", value)
    loaded = _strict_loads(path.read_text())
    assert loaded == {"a": None, "b": [1.5, None, None], "c": 3, "d": True, "e": [None, 2.0], "4": "key"}
    assert type(to_strict_json(np.int64(3))) is int and type(to_strict_json(np.float32(1.5))) is float


def test_plain_json_dumps_would_not_be_strict():
    # the reason this module exists: json.dumps writes NaN, which a strict parser refuses
    with pytest.raises(ValueError, match="NaN"):
        _strict_loads(json.dumps({"a": math.nan}))
    assert _strict_loads(dumps_strict({"a": math.nan})) == {"a": None}
