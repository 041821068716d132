"""DataPlan.stream_batches: the endless stream split among workers, deterministic and resumable."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from shark.train.data_plan import DataPlan, DataSpec


def test_stream_shares_are_disjoint_full_and_resumable() -> None:
    plan = DataPlan(DataSpec(stream=True), batch_size=1000, eval_batch_size=4096)
    g = plan.stream_group_batches()
    shares = []
    for w in range(3):
        batches = list(itertools.islice(plan.stream_batches(w, 3), 2 * g + 5))
        assert all(len(b) == 1000 for b in batches)
        resumed = list(itertools.islice(plan.stream_batches(w, 3, start=g - 2), g + 7))
        assert all(np.array_equal(a.lines, b.lines) for a, b in zip(batches[g - 2:], resumed))
        shares.append(np.concatenate([b.lines for b in batches]))
    rows = np.concatenate(shares)
    assert np.unique(rows).size == rows.size  # no row twice, within or across workers
    first = np.sort(rows)[: 3 * g * 1000]  # the first 3 groups are covered completely
    assert np.array_equal(first, np.arange(1, first.size + 1))


def test_stream_is_synthetic_only() -> None:
    with pytest.raises(ValueError, match="--stream supports --data synthetic for now"):
        DataSpec(source="train.tsv", stream=True)


def test_progressive_windows_keep_only_the_open_window() -> None:
    from shark.coordinator.actor import _Windows

    rng = np.random.default_rng(0)
    w = _Windows(1000)
    for n in (700, 700, 1900, 300):
        p = rng.random(n).astype(np.float32)
        w.add(((rng.random(n) < p).astype(np.float32), p), 0)
        assert w.y.size < 1000
    assert [c["examples"] for c in w.curve] == [1000, 2000, 3000]
    w.finish(3600)  # 600 left >= a quarter window: a last, partial point
    assert w.curve[-1]["examples"] == 3600 and w.curve[-1]["window_examples"] == 600
    assert w.last_summary is not None and w.last_summary["examples"] == 600 and w.y.size == 0
