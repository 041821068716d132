"""F-Quantization in the row store: budget mode keeps memory_bytes within budget with hot rows fp32 and cold int8,
thresholds move rows both ways, uniform baselines, config/manifest compatibility, bit-exact snapshot/restore."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ps.checkpoint.manifest import build_manifest, config_to_json, parse_manifest, table_file_name
from ps.store import InvalidRequest, RowStore, TableConfig


def train(store: RowStore, table: str, rng: np.random.Generator, pushes: int, n: int, dim: int, seq0: int = 0,
          batch: int = 512) -> None:
    for q in range(pushes):
        ids = rng.zipf(1.3, batch) - 1  # id 0 hottest
        ids = ids[ids < n]
        batch = ids.shape[0]
        cp = (rng.random(batch) < 0.3).astype(np.int64)
        store.push(table, ids, (rng.normal(size=(batch, dim)) * 0.01).astype(np.float32), cp, 1 - cp, 0, seq0 + q)


def test_budget_half_of_fp32_holds_and_hot_rows_are_fp32_cold_int8():
    n, dim = 4000, 64
    s = RowStore()
    s.create_table(TableConfig("t", dim=dim, capacity=1 << 16, quant="fq", fq_budget_fraction=0.5,
                               fq_retier_every=10))
    s.pull("t", np.arange(n))  # every row present (int8 at first)
    rng = np.random.default_rng(0)
    for k in range(8):
        train(s, "t", rng, 20, n, dim, seq0=20 * k)  # ends on a retier
        m = s.memory_bytes("t")
        assert m["total"] <= 0.5 * m["fp32_equivalent_total"], m
    st = s.stats("t")
    assert st["rows_fp32"] > 0 and st["rows_fp16"] > 0 and st["rows_int8"] > 0
    tiers = s.tiers("t", np.arange(n))
    assert (tiers[:5] == 0).all()  # the hottest ids
    w = s.priorities("t", np.arange(n))
    assert (tiers[w == 0] == 2).all() and (w == 0).sum() > n // 4  # never pushed: int8
    assert (tiers[n // 2:] == 2).mean() > 0.5 and (tiers[n // 2:] == 0).mean() < 0.01  # the long tail
    assert w[0] > w[100] > 0 and (np.diff(tiers[np.argsort(w, kind="stable")].astype(int)) <= 0).all()
    m = s.memory_bytes("t")
    assert m["payload_bytes"] < 0.5 * m["payload_bytes_fp32"] and m["free_lists"] == 0


def test_compaction_really_shrinks_the_arrays():
    s = RowStore()
    s.create_table(TableConfig("t", dim=32, capacity=1 << 14, quant="fq", fq_budget_fraction=0.5,
                               fq_retier_every=5))
    s.pull("t", np.arange(3000))
    s.set_tiers("t", np.arange(3000), np.zeros(3000, np.uint8))  # all fp32 (int8 slots freed, not yet released)
    t = s._tables["t"]
    before = sum(a.nbytes for p in t.pools for a in p.arrays().values())
    assert before >= 3000 * 32 * 4
    train(s, "t", np.random.default_rng(1), 30, 3000, 32)
    after = sum(a.nbytes for p in t.pools for a in p.arrays().values())
    assert after < 0.5 * before and t.pools[0].data.shape[0] == t.pools[0].live
    assert s.memory_bytes("t")["total"] <= 0.5 * s.memory_bytes("t")["fp32_equivalent_total"]


def test_threshold_mode_moves_rows_up_and_down():
    s = RowStore()
    s.create_table(TableConfig("t", dim=8, capacity=100, quant="fq", fq_beta=0.5, fq_t8=0.5, fq_t16=4.0,
                               fq_retier_every=1))
    one = np.ones(1, np.int64)

    def hit(seq, count):
        s.push("t", np.array([7]), np.zeros((1, 8), np.float32), one * count, one * 0, 0, seq)

    assert s.tiers("t", np.array([7]))[0] == 255
    s.pull("t", np.array([7, 8]))
    assert s.tiers("t", np.array([7, 8])).tolist() == [2, 2]  # priority 0 < t8: new rows start int8
    hit(0, 1)  # w = 0.5 * 2 = 1 -> fp16
    assert s.tiers("t", np.array([7]))[0] == 1
    hit(1, 8)  # w = 0.5 + 8 -> fp32
    assert s.tiers("t", np.array([7]))[0] == 0
    for q in range(2, 8):  # 7 is cold now; pushes to 8 advance the clock
        s.push("t", np.array([8]), np.zeros((1, 8), np.float32), one * 0, one * 0, 0, q)
    assert s.tiers("t", np.array([7]))[0] == 2 and s.priorities("t", np.array([7]))[0] < 0.5


@pytest.mark.parametrize("quant,tier", [("fp16", 1), ("int8", 2)])
def test_uniform_baselines_store_every_row_low_and_peek_matches_pull(quant, tier):
    s = RowStore()
    s.create_table(TableConfig("t", dim=16, capacity=1000, quant=quant))
    ids = np.arange(0, 1000, 7)
    peeked = s.pull("t", ids, create=False)
    assert np.array_equal(s.pull("t", ids), peeked)  # a read-only pull sees what a creating pull stores
    train(s, "t", np.random.default_rng(2), 20, 1000, 16)
    assert (s.tiers("t", np.arange(1000))[s.tiers("t", np.arange(1000)) != 255] == tier).all()
    m = s.memory_bytes("t")
    assert m["payload_fp32"] == 0 and m["payload_bytes"] == s.stats("t")["rows"] * 16 * (2 if tier == 1 else 1)


def test_quantized_snapshot_restores_bit_exactly_and_continues_identically():
    cfg = TableConfig("t", dim=16, capacity=5000, quant="fq", fq_budget_fraction=0.6, fq_retier_every=7, seed=3)
    a = RowStore()
    a.create_table(cfg)
    train(a, "t", np.random.default_rng(5), 23, 5000, 16, batch=256)  # 23: mid-way between retiers
    snap = a.snapshot("t")
    b = RowStore()
    b.restore_table(cfg, snap)
    sb = b.snapshot("t")
    assert snap.keys() == sb.keys() and all(snap[k].tobytes() == sb[k].tobytes() for k in snap)
    assert (snap["tier"] != 0).any() and snap["priority"].any()
    for store in (a, b):  # crosses several retiers (and compactions) after the restore
        train(store, "t", np.random.default_rng(6), 20, 5000, 16, seq0=100, batch=256)
    sa, sb = a.snapshot("t"), b.snapshot("t")
    assert all(sa[k].tobytes() == sb[k].tobytes() for k in sa)
    assert np.array_equal(a.pull("t", np.arange(5000)), b.pull("t", np.arange(5000)))


def test_config_validation_and_old_manifests_still_parse(tmp_path):
    for bad in ({"quant": "int4"}, {"quant": "fq", "optimizer": "adam"}, {"fq_t8": 2.0, "fq_t16": 1.0},
                {"fq_beta": 0.0}, {"fq_budget_fraction": 1.5}, {"fq_budget_bytes": 10, "fq_budget_fraction": 0.5},
                {"fq_retier_every": 0}, {"fq_t16_ratio": 0.5}, {"fq_alpha": float("inf")}):
        with pytest.raises(InvalidRequest):
            TableConfig("t", dim=4, capacity=10, **bad)
    cfg = TableConfig("t", dim=4, capacity=10, quant="fq", fq_budget_bytes=1000)
    old = {k: v for k, v in config_to_json(cfg).items() if not k.startswith(("fq_", "quant"))}

    def parsed(c):
        entry = {"name": "t", "config": c, "file": table_file_name("t"), "bytes": 0, "sha256": "0" * 64}
        m = build_manifest(tag="a", shard="s", created_unix_ns=0, created_utc="", seq_window=8, tables=[entry])
        return parse_manifest(json.dumps(m).encode(), tmp_path, shard="s", tag="a")["tables"][0]["cfg"]

    assert parsed(old) == dataclasses.replace(cfg, quant="none", fq_budget_bytes=0)
    assert parsed(config_to_json(cfg)) == cfg
