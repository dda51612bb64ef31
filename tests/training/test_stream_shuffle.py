"""The streaming shuffle buffer: every row once, seeded order, bounded buffering, sharding between processes."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from galspec_hf.training import GalSpecStreamShuffler, shuffle_stream, shuffled_rows


def _rows(n: int, start: int = 0):
    for i in range(start, start + n):
        yield {"id": np.int64(i), "flux": np.full(5, i, dtype=np.float32), "image": np.full((2, 3, 3), -i, np.float32)}


def _ids(rows) -> list[int]:
    return [int(row["id"]) for row in rows]


def test_every_row_once_in_a_seeded_order():
    out = list(shuffled_rows(_rows(500), buffer_size=64, rng=np.random.default_rng(1)))
    ids = _ids(out)
    assert sorted(ids) == list(range(500))
    assert ids != list(range(500))
    assert ids == _ids(shuffled_rows(_rows(500), 64, np.random.default_rng(1)))  # same seed, same order
    assert ids != _ids(shuffled_rows(_rows(500), 64, np.random.default_rng(2)))
    # each row's values travel with it: rows handed out are copies, not views of a slot refilled later
    for row in out:
        assert np.all(row["flux"] == int(row["id"])) and np.all(row["image"] == -int(row["id"]))
        assert row["flux"].dtype == np.float32 and row["image"].shape == (2, 3, 3)


def test_buffer_of_one_keeps_the_order_and_shorter_streams_are_drained():
    assert _ids(shuffled_rows(_rows(20), 1, np.random.default_rng(0))) == list(range(20))
    assert sorted(_ids(shuffled_rows(_rows(7), 100, np.random.default_rng(0)))) == list(range(7))
    assert list(shuffled_rows(iter(()), 10, np.random.default_rng(0))) == []


def test_holds_at_most_buffer_size_rows():
    consumed = 0

    def counting():
        nonlocal consumed
        for row in _rows(300):
            consumed += 1
            yield row

    yielded, most_held = 0, 0
    for _ in shuffled_rows(counting(), 32, np.random.default_rng(0)):
        yielded += 1
        most_held = max(most_held, consumed - yielded)
    assert yielded == 300 and most_held <= 32


def test_ragged_and_non_numeric_columns():
    def rows():
        for i in range(40):
            yield {"id": i, "image": np.full((1, 4 + i % 3, 4 + i % 3), i, np.float32), "name": f"g{i}"}

    out = list(shuffled_rows(rows(), 8, np.random.default_rng(0)))
    assert sorted(_ids(out)) == list(range(40))
    for row in out:
        i = int(row["id"])
        assert row["image"].shape == (1, 4 + i % 3, 4 + i % 3) and np.all(row["image"] == i)
        assert row["name"] == f"g{i}"


def test_buffer_size_is_checked():
    with pytest.raises(ValueError, match="buffer_size"):
        list(shuffled_rows(_rows(3), 0, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="buffer_size"):
        GalSpecStreamShuffler(None, buffer_size=0)


def _parquet_stream(tmp_path, shards: int = 6, rows_per_shard: int = 20):
    for shard in range(shards):
        ids = np.arange(shard * rows_per_shard, (shard + 1) * rows_per_shard, dtype=np.int64)
        table = datasets.Dataset.from_dict({"targetid": ids, "flux": np.repeat(ids[:, None], 4, 1).astype("float32")})
        table.to_parquet(str(tmp_path / f"part-{shard:03d}.parquet"))
    files = sorted(str(p) for p in tmp_path.glob("*.parquet"))
    return datasets.load_dataset("parquet", data_files=files, split="train", streaming=True).with_format("numpy")


def _targetids(stream) -> list[int]:
    return [int(row["targetid"]) for row in stream]


def test_stream_epochs_resume_and_processes(tmp_path):
    stream = _parquet_stream(tmp_path)
    shuffler = shuffle_stream(stream, buffer_size=16, seed=3)
    first = _targetids(shuffler)
    assert sorted(first) == list(range(120)) and first != list(range(120))
    assert _targetids(shuffler) == first  # the same epoch again: the same order (what resume relies on)
    shuffler.set_epoch(1)
    second = _targetids(shuffler)
    assert sorted(second) == list(range(120)) and second != first
    # the shard order is shuffled too: with a one-row buffer the shards come whole, in a new order
    whole_shards = _targetids(shuffle_stream(stream, buffer_size=1, seed=3))
    blocks = [whole_shards[i : i + 20] for i in range(0, 120, 20)]
    assert all(block == list(range(block[0], block[0] + 20)) for block in blocks)
    assert sorted(block[0] // 20 for block in blocks) == list(range(6))
    assert [block[0] // 20 for block in blocks] != list(range(6))
    # two processes: disjoint halves that together cover the stream
    ranks = [_targetids(shuffle_stream(stream, buffer_size=16, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == list(range(120))
    # rows come out as numpy values that the collator reads
    row = next(iter(shuffler))
    assert isinstance(row["flux"], np.ndarray) and row["flux"].shape == (4,)
    assert np.all(row["flux"] == int(row["targetid"]))
    # a stream in Python format (lists) comes out as arrays too: the buffer converts them
    listed = next(iter(shuffle_stream(stream.with_format(None), buffer_size=4, seed=0)))
    assert isinstance(listed["flux"], np.ndarray) and np.all(listed["flux"] == int(listed["targetid"]))
