"""Rows' tiers against their access counts: counting over batches, log2 bins, per-bin sampling, fractions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shark.quant.tier_frequency import AccessCounter, access_bins, sample_by_bin, tier_fractions


def test_counter_merges_batches_into_exact_counts():
    rng = np.random.default_rng(0)
    ids = rng.zipf(1.3, size=(5000, 2)) % 1000
    c = AccessCounter(["a", "b"], merge_rows=700)  # several merges on the way
    for lo in range(0, 5000, 300):
        c.add(ids[lo:lo + 300])
    got = c.counts()
    for t, name in enumerate(("a", "b")):
        u, n = np.unique(ids[:, t], return_counts=True)
        np.testing.assert_array_equal(got[name][0], u)
        np.testing.assert_array_equal(got[name][1], n)
    assert c.rows == 5000
    with pytest.raises(ValueError, match="row ids"):
        c.add(np.zeros((3, 3), np.int64))


def test_bins_are_powers_of_two():
    np.testing.assert_array_equal(access_bins(np.array([1, 2, 3, 4, 7, 8, 1023, 1024])), [0, 1, 1, 2, 2, 3, 9, 10])
    with pytest.raises(ValueError):
        access_bins(np.array([0]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=400), st.integers(1, 20), st.integers(0, 5))
def test_sampling_keeps_at_most_cap_per_bin_and_counts_every_row(accesses, cap, seed):
    a = np.array(accesses, np.int64)
    counted = {"x": (np.arange(a.size, dtype=np.int64) * 3, a), "y": (np.arange(a.size, dtype=np.int64), a[::-1])}
    ids, bins, rows = sample_by_bin(counted, cap, seed)
    everything = np.concatenate([access_bins(a), access_bins(a[::-1])])
    np.testing.assert_array_equal(rows, np.bincount(everything))
    sampled = np.concatenate(list(bins.values()))
    assert np.all(np.bincount(sampled, minlength=rows.size) == np.minimum(rows, cap))
    for name in ids:  # sorted, real ids of that table, with their own bins
        assert np.all(np.diff(ids[name]) > 0)
        lookup = dict(zip(counted[name][0].tolist(), access_bins(counted[name][1]).tolist()))
        assert [lookup[i] for i in ids[name].tolist()] == bins[name].tolist()


def test_fractions_per_bin():
    bins = {"a": np.array([0, 0, 0, 3]), "b": np.array([3, 3])}
    tiers = {"a": np.array([2, 2, 1, 0], np.uint8), "b": np.array([0, 3], np.uint8)}
    out = tier_fractions(bins, tiers, np.array([10, 0, 0, 3]))
    assert [e["accesses"] for e in out] == [[1, 1], [8, 15]]
    assert out[0]["rows"] == 10 and out[0]["measured"] == 3
    assert out[0]["int8"] == pytest.approx(2 / 3) and out[0]["fp16"] == pytest.approx(1 / 3)
    assert out[1]["fp32"] == pytest.approx(2 / 3) and out[1]["absent"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="tier codes"):
        tier_fractions({"a": np.array([0])}, {"a": np.array([7], np.uint8)}, np.array([1]))


def test_plot_from_a_summary(tmp_path):
    from shark.report.tier_plots import has_data, plot_tiers

    bins = [{"accesses": [1 << k, (2 << k) - 1], "rows": 1000 >> k, "measured": 1000 >> k, "fp32": k / 9,
             "fp16": 0.0, "int8": 1 - k / 9, "absent": 0.0} for k in range(10)]
    summary = {"model": {"tiers_by_frequency": {"quant": "fq", "training_rows_read": 5000, "tables": 2,
                                                "bins": bins}}}
    assert has_data(summary) and not has_data({"model": {}})
    plot_tiers(summary, tmp_path / "tiers.png")
    assert (tmp_path / "tiers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_coordinator_report_reads_counts_pulls_and_survives_a_failure():
    """tiers_by_frequency with a stand-in coordinator: the workers' id mapping, one read-only pull of the sampled
    rows, and a clear {"error"} (not a failed run) when the training rows cannot be read again."""
    from types import SimpleNamespace

    from shark.coordinator.tier_report import tiers_by_frequency
    from shark.data.batch import RawBatch
    from shark.data.errors import DataError
    from shark.train.config import TrainConfig

    keys = np.array([[1, 5], [1, 6], [1, 5], [2, 7]], np.uint64)
    raw = RawBatch(np.zeros(4, np.float32), np.zeros((4, 1), np.float32), keys, np.arange(4))
    pulled: list[dict] = []

    def pull_tiers(ids):
        pulled.append(ids)
        return {t: np.zeros(v.size, np.uint8) for t, v in ids.items()}

    plan = SimpleNamespace(table_names=["C1", "C2"], train_batches=lambda: iter([raw]))
    coord = SimpleNamespace(config=TrainConfig(quant="fq", capacity=1 << 10), spec=SimpleNamespace(stream=False),
                            plan=plan, fields=["dense", "C2"], client=SimpleNamespace(pull_tiers=pull_tiers))
    out = tiers_by_frequency(coord)
    assert out["training_rows_read"] == 4 and out["tables"] == 1 and list(pulled[0]) == ["C2"]  # C1 was deleted
    assert [(b["accesses"], b["rows"], b["fp32"]) for b in out["bins"]] == [([1, 1], 2, 1.0), ([2, 3], 1, 1.0)]

    def unreadable():
        raise DataError("train.tsv: gone")

    coord.plan = SimpleNamespace(table_names=["C1", "C2"], train_batches=unreadable)
    assert tiers_by_frequency(coord) == {"error": "DataError: train.tsv: gone"}
    assert tiers_by_frequency(SimpleNamespace(config=TrainConfig(), spec=coord.spec, plan=plan)) is None  # fp32
