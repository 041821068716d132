"""The drift report's pieces: read-only pulls leave the store as it was (rows, priorities, tiers, clock), the
probe tells absent rows from trained ones, the drift figures, and the report directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shark.coordinator.stream_loop import drift_report
from shark.coordinator.tier_probe import HotRows
from shark.data.synthetic import SynthConfig, SyntheticCriteo
from shark.quant.stored import TIER_ABSENT, check_stored, decode_stored
from shark.report.writer import write_report
from shark.train.config import TrainConfig

CFG = TrainConfig(quant="fq")


def _store():
    from ps.store import RowStore, TableConfig

    s = RowStore()
    s.create_table(TableConfig("C1", dim=CFG.embedding_dim, capacity=1 << 12, lr=CFG.lr_embedding,
                               init_scale=CFG.init_scale, seed=CFG.seed, quant="fq", fq_t8=0.05, fq_t16=1.0,
                               fq_retier_every=5))
    rng = np.random.default_rng(0)
    for q in range(40):
        ids, counts = np.unique(rng.zipf(1.3, 256) - 1, return_counts=True)
        keep = ids < 400
        ids, counts = ids[keep], counts[keep]
        cp = rng.binomial(counts, 0.3)
        grads = (rng.normal(size=(ids.size, CFG.embedding_dim)) * 0.01).astype(np.float32)
        s.push("C1", ids, grads, cp, counts - cp, 0, q)
    return s


def _state(s) -> tuple:
    ids = np.arange(1 << 12)
    st = s.stats("C1")
    return (st["rows"], s._table("C1").step, s.priorities("C1", ids).tobytes(), s.tiers("C1", ids).tobytes())


def test_read_only_pulls_change_nothing() -> None:
    s = _store()
    before = _state(s)
    assert len(set(np.frombuffer(before[3], dtype=np.uint8))) == 4  # fp32, fp16, int8 and absent rows
    ids = np.arange(0, 1 << 12, 3)
    s.pull_many([("C1", ids, False)])
    s.pull_many_stored([("C1", ids, False)])
    s.pull_many_stored([("C1", np.arange(50), False)])  # present rows only: the stored reply's own tiers
    assert _state(s) == before


def test_a_read_only_stored_pull_marks_absent_rows_and_decodes_as_a_float_pull() -> None:
    s = _store()
    ids = np.arange(1 << 12)
    stored = s.pull_many_stored([("C1", ids, False)])[0]
    check_stored(stored, ids.size)
    expected = s.tiers("C1", ids).copy()
    expected[expected == 255] = TIER_ABSENT  # the store's "no row" becomes the wire's absent code
    np.testing.assert_array_equal(stored.tiers, expected)
    assert (stored.tiers == TIER_ABSENT).any() and (stored.tiers != TIER_ABSENT).any()
    np.testing.assert_array_equal(decode_stored(stored), s.pull_many([("C1", ids, False)])[0])


def test_hot_rows_of_both_concepts_are_disjoint() -> None:
    gen = SyntheticCriteo(SynthConfig(seed=0, drift_at=1000))
    tables = gen.config.cat_names
    hot = HotRows.of(gen, CFG, tables, 8)
    assert set(hot.ids["new"]) <= set(tables) and "C9" not in hot.ids["new"]  # duplicates are not sampled
    for t, ids in hot.ids["new"].items():
        assert not np.intersect1d(ids, hot.ids["old"].get(t, ids[:0])).size
        assert ids.size <= 8 and (ids < CFG.capacity_of(t)).all()
    assert hot.count("old") > 100 and hot.count("new") > 100


def _curve(aucs: list[float], window: int = 1000) -> list[dict]:
    return [{"examples": (i + 1) * window, "window_examples": window, "auc": a, "logloss": 0.5}
            for i, a in enumerate(aucs)]


def test_drift_report_figures() -> None:
    curve = _curve([0.6, 0.7, 0.74, 0.76, 0.75, 0.62, 0.66, 0.70, 0.72, 0.745, 0.75, 0.76])
    tiers = [{"examples": e, "new": {"fp32": a, "fp16": 0.0, "int8": 1 - a, "absent": 0.0},
              "old": {"fp32": 0.5, "fp16": b, "int8": 0.5 - b, "absent": 0.0}}
             for e, a, b in ((0, 0.0, 0.0), (5000, 0.1, 0.4), (8000, 0.6, 0.2), (12000, 0.9, 0.0))]
    r = drift_report(5000, 0, (5000, 5000), curve, tiers, {"new": 10, "old": 12})
    assert r["pre_auc"] == pytest.approx((0.74 + 0.76 + 0.75) / 3)
    assert r["dip_auc"] == 0.62 and r["dip_examples"] == 6000
    assert r["end_auc"] == pytest.approx((0.745 + 0.75 + 0.76) / 3)
    assert r["recovered"] == pytest.approx((r["end_auc"] - 0.62) / (r["pre_auc"] - 0.62))
    assert r["high_tier"]["new"] == {"at_drift": 0.1, "end": 0.9}
    assert r["high_tier"]["old"] == {"at_drift": 0.9, "end": 0.5}
    # workers reaching the drift at different times: the straddling windows are neither before nor after
    r = drift_report(5000, 0, (4500, 6500), curve, [], {})
    assert [w["examples"] for w in r["windows_before"]][-1] == 4000
    assert r["windows_after"][0]["examples"] == 8000 and "tiers" not in r


def test_report_directory(tmp_path: Path) -> None:
    curve = _curve([0.6, 0.7, 0.65, 0.72])
    tiers = [{"examples": e, "new": {"fp32": f, "fp16": 0.0, "int8": 1 - f, "absent": 0.0},
              "old": {"fp32": 1 - f, "fp16": 0.0, "int8": f, "absent": 0.0}} for e, f in ((0, 0.0), (4000, 1.0))]
    drift = drift_report(2000, 0, (2000, 2000), curve, tiers, {"new": 3, "old": 3})
    summary = {"test": {"auc": 0.7}, "stream": {"config": {"window": 1000}, "progressive_windows": curve,
                                                 "drift": drift}}
    written = write_report(summary, tmp_path / "rep")
    assert [p.name for p in written] == ["summary.json", "stream.png"]
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["stream"]["drift"]["drift_at"] == 2000
    assert (tmp_path / "rep" / "stream.png").read_bytes()[:4] == b"\x89PNG"
    # no stream: only the summary
    assert [p.name for p in write_report({"test": {"auc": 0.7}}, tmp_path / "plain")] == ["summary.json"]
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="report directory"):
        write_report(summary, tmp_path / "file" / "sub")
