"""The MPE baseline in the row store (quant "mpe"): every row in int8/fp16, the most pushed rows also in an fp32
cache that serves their pulls and takes their updates; eviction writes back; bytes counted from the real arrays;
budgets held; bit-exact snapshots; rejected pushes change nothing; the config travels (wire, manifest, CLI)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ps.checkpoint.manifest import build_manifest, config_to_json, parse_manifest, table_file_name
from ps.requests import create_table_request, table_config
from ps.store import InvalidRequest, RowStore, TableConfig
from ps.store.optimizer import adagrad
from shark.bench.quant_bench import QuantMethod
from shark.quant import fp16_decode, int8_decode
from shark.quant.codecs import bf16_value
from shark.quant.mpe import cache_rows_for_budget, hottest_rows
from shark.train.config import TrainConfig
from tests.unit.test_row_store import assert_same_state, push, state_of

NEVER = 10**9  # fq_retier_every: refresh only when the test says so (RowStore.retier)


def mpe(dim: int = 8, capacity: int = 1000, **kw) -> TableConfig:
    kw = {"mpe_cache_fraction": 0.25, "fq_retier_every": NEVER, **kw}
    return TableConfig("t", dim=dim, capacity=capacity, quant="mpe", **kw)


def zipf_train(store: RowStore, rng: np.random.Generator, pushes: int, n: int, dim: int, seq0: int = 0,
               batch: int = 256) -> np.ndarray:
    """Zipf pushes over ids [0, n) (id 0 hottest); returns how many pushes touched each id."""
    touched = np.zeros(n, np.int64)
    for q in range(pushes):
        ids = rng.zipf(1.3, batch) - 1
        ids = ids[ids < n]
        touched[np.unique(ids)] += 1
        cp = (rng.random(ids.shape[0]) < 0.3).astype(np.int64)
        store.push("t", ids, (rng.normal(size=(ids.shape[0], dim)) * 0.01).astype(np.float32), cp, 1 - cp, 0,
                   seq0 + q)
    return touched


def low_decoded(store: RowStore, ids: np.ndarray) -> np.ndarray:
    """The rows' low-precision copies (slot = row number), decoded."""
    t = store._tables["t"]
    r = t.lookup(ids)
    pool = t.pools[t.base_tier]
    if pool.scale is None:
        return fp16_decode(pool.data[r])
    return int8_decode(pool.data[r], bf16_value(pool.scale[r]))


def cached_ids(store: RowStore) -> np.ndarray:
    t = store._tables["t"]
    return np.sort(t.row_ids()[t.cached])


def real_bytes(store: RowStore) -> int:
    t = store._tables["t"]
    return (sum(a.nbytes for p in t.pools for a in p.arrays().values())
            + sum(a.nbytes for a in t.rows.cols.values()) + t.index.nbytes + t.cached.nbytes)


# --- which rows are cached ----------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), frac=st.sampled_from([0.05, 0.1, 0.3]), every=st.integers(3, 12))
def test_hot_rows_end_cached_cold_ones_not(seed, frac, every):
    n, dim = 600, 4
    s = RowStore()
    s.create_table(mpe(dim, n, mpe_cache_fraction=frac, fq_retier_every=every))
    s.pull("t", np.arange(n))  # every row present, never pushed: count 0
    touched = zipf_train(s, np.random.default_rng(seed), 4 * every, n, dim)  # ends on a refresh
    t = s._tables["t"]
    assert np.array_equal(t.rows["access"][t.lookup(np.arange(n))], touched)  # LFU: pushes per row
    k = int(frac * n)
    want = hottest_rows(touched, k)  # ids == row numbers: created in id order by the pull
    got = cached_ids(s)
    assert np.array_equal(got, want) and got.shape[0] == min(k, np.count_nonzero(touched))
    assert 0 in got  # the hottest id
    if got.shape[0]:  # every cached row is at least as hot as every uncached one, never-pushed rows never cached
        rest = np.setdiff1d(np.arange(n), got)
        assert touched[got].min() >= touched[rest].max() and touched[got].min() > 0
    tiers = s.tiers("t", np.arange(n))
    assert np.array_equal(np.flatnonzero(tiers == 0), got) and (np.delete(tiers, got) == 2).all()
    assert s.stats("t")["rows_cached"] == s.stats("t")["rows_fp32"] == got.shape[0]


def test_hottest_rows_breaks_ties_by_row_and_skips_unaccessed():
    c = np.array([3, 0, 5, 3, 3, 1], np.uint32)
    assert hottest_rows(c, 2).tolist() == [0, 2]
    assert hottest_rows(c, 3).tolist() == [0, 2, 3]
    assert hottest_rows(c, 6).tolist() == [0, 2, 3, 4, 5]  # row 1 never accessed
    assert hottest_rows(c, 0).tolist() == [] and hottest_rows(np.zeros(0, np.uint32), 4).tolist() == []
    assert cache_rows_for_budget(1000, 400, 50, 100) == 6 and cache_rows_for_budget(300, 400, 50, 100) == 0
    assert cache_rows_for_budget(10**9, 0, 50, 100) == 50


# --- what pulls see and how updates land --------------------------------------------------------------------------

@pytest.mark.parametrize("low", ["int8", "fp16"])
def test_pulls_serve_fp32_when_cached_else_the_low_copy_and_updates_are_fp32(low):
    n, dim = 300, 8
    s = RowStore()
    s.create_table(mpe(dim, n, mpe_low=low, rounding="nearest", fq_retier_every=10))
    s.pull("t", np.arange(n))
    zipf_train(s, np.random.default_rng(1), 35, n, dim)  # 5 pushes after the last refresh: cached rows drifted
    ids = np.arange(n)
    c = cached_ids(s)
    cold = np.setdiff1d(ids, c)
    assert c.shape[0] == int(0.25 * n)
    vals = s.pull("t", ids)
    t = s._tables["t"]
    assert np.array_equal(vals[c], t.pools[0].data[np.searchsorted(t.cached, t.lookup(c))])
    assert np.array_equal(vals[cold], low_decoded(s, cold))
    assert (vals[c] != low_decoded(s, c)).any()  # the fp32 copy moved on; the low copy waits for the eviction
    # One more push of a cached and a cold row: the cached one gets the exact fp32 Adagrad step, the cold one the
    # same step rounded into its low copy.
    hot, cold1 = int(c[0]), int(cold[-1])
    g = np.random.default_rng(2).normal(size=(2, dim)).astype(np.float32)
    r = t.lookup(np.array([hot, cold1]))
    want, _ = adagrad(vals[[hot, cold1]], t.rows["accum"][r].copy(), g, 0.05, 1e-8)
    push(s, "t", [hot, cold1], g, seq=1000)
    after = s.pull("t", np.array([hot, cold1]))
    assert np.array_equal(after[0], want[0])
    assert np.array_equal(after[1:], low_decoded(s, np.array([cold1]))) and not np.array_equal(after[1], want[1])
    assert np.abs(after[1] - want[1]).max() <= (np.abs(want[1]).max() / 127 if low == "int8" else 1e-3)
    # read-only pulls and stored-precision pulls see the same values
    assert np.array_equal(s.pull("t", ids, create=False), s.pull("t", ids))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), dim=st.integers(1, 24), rounding=st.sampled_from(["nearest", "stochastic"]),
       scale=st.sampled_from([0.01, 1.0, 300.0]))
def test_eviction_writes_the_fp32_value_back_within_the_int8_step(seed, dim, rounding, scale):
    rng = np.random.default_rng(seed)
    s = RowStore()
    s.create_table(mpe(dim, 40, rounding=rounding, lr=scale))
    s.pull("t", np.arange(40))
    old, new = np.arange(10), np.arange(10, 20)
    for q in range(3):
        push(s, "t", old, rng.normal(size=(10, dim)) * scale, seq=q)
    s.retier("t")
    assert np.array_equal(cached_ids(s), old)  # cache = 0.25 * 40 = 10 rows
    for q in range(3, 8):
        push(s, "t", old, rng.normal(size=(10, dim)) * scale, seq=q)  # updates land in fp32 only
        push(s, "t", new, rng.normal(size=(10, dim)) * scale, seq=100 + q)
    for q in range(8, 12):  # new: 9 pushes, old: 8
        push(s, "t", new, rng.normal(size=(10, dim)) * scale, seq=100 + q)
    before = s.pull("t", old)
    s.retier("t")
    assert np.array_equal(cached_ids(s), new)  # the new rows are hotter: the old ones are evicted
    back = low_decoded(s, old)
    assert np.array_equal(s.pull("t", old), back)
    step = np.abs(before).max(axis=1, keepdims=True) / 127  # the int8 row's scale
    tol = step / 2 if rounding == "nearest" else step
    assert (np.abs(back - before) <= tol * (1 + 1e-2) + 1e-30).all()


# --- memory -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("low", ["int8", "fp16"])
def test_memory_counts_both_copies_from_the_real_arrays(low):
    n, dim = 2000, 16
    ids = np.random.default_rng(0).choice(1 << 28, n, replace=False)
    s = RowStore()
    s.create_table(mpe(dim, 1 << 28, mpe_low=low, mpe_cache_fraction=0.1))
    s.pull("t", ids)
    rng = np.random.default_rng(1)
    for q in range(30):
        hot = ids[rng.zipf(1.3, 200) % n]
        push(s, "t", hot, rng.normal(size=(hot.shape[0], dim)), seq=q)
    s.retier("t")
    s.compact("t")
    m = s.memory_bytes("t")
    k = int(0.1 * n)
    assert s.stats("t")["rows_cached"] == k
    low_row = dim + 2 if low == "int8" else 2 * dim
    assert m["payload_fp32"] == k * dim * 4 and m["cache_index"] == 4 * k
    assert m["payload_int8"] + m["int8_scales"] + m["payload_fp16"] == n * low_row  # every row's low copy
    assert m["access_counts"] == 4 * n and m["optimizer_state"] == 4 * n and m["slots"] == m["priorities"] == 0
    assert m["total"] == m["allocated_total"] == real_bytes(s)  # packed: the counted bytes are the arrays'
    assert m["payload_bytes"] == k * dim * 4 + n * dim * (1 if low == "int8" else 2)


@pytest.mark.parametrize("fraction", [0.5, 0.4])
def test_budget_holds_with_the_reported_bytes_at_dim_32(fraction):
    rng = np.random.default_rng(3)
    dim = 32
    s = RowStore()
    s.create_table(TableConfig("t", dim=dim, capacity=1 << 24, quant="mpe", fq_budget_fraction=fraction,
                               fq_retier_every=5))
    t = s._tables["t"]
    for q in range(40):
        ids = np.unique((rng.zipf(1.2, 2048) * 7919) % (1 << 24))
        cp = (rng.random(ids.shape[0]) < 0.3).astype(np.int64)
        s.push("t", ids, (rng.normal(size=(ids.shape[0], dim)) * 0.01).astype(np.float32), cp, 1 - cp, 0, q)
        m = s.memory_bytes("t")
        assert m["total"] <= fraction * m["fp32_equivalent_total"], (q, m)
        if q % 5 == 4:  # just refreshed: the largest cache that fits (one more row would not), or every pushed row
            k = t.cached.shape[0]
            assert k == np.count_nonzero(t.rows["access"][: t.rows.n]) or \
                m["total"] + 4 * dim + 4 > fraction * m["fp32_equivalent_total"]
            assert m["free_lists"] == 0 and t.pools[0].top == k
    assert s.stats("t")["rows_cached"] > 0


# --- snapshots, rejection, config -----------------------------------------------------------------------------------

@pytest.mark.parametrize("low,budget", [("int8", 0.6), ("fp16", 0.75)])  # fp16 rows alone take ~65% at dim 16
def test_snapshot_restores_bit_exactly_and_training_continues_identically(low, budget):
    cfg = mpe(16, 5000, mpe_low=low, fq_budget_fraction=budget, mpe_cache_fraction=0.0, fq_retier_every=7, seed=3)
    a = RowStore()
    a.create_table(cfg)
    zipf_train(a, np.random.default_rng(5), 23, 5000, 16)  # mid-way between refreshes
    snap = a.snapshot("t")
    assert snap["mpe_cached"].shape[0] > 0 and snap["mpe_access"].any()
    b = RowStore()
    b.restore_table(cfg, snap)
    sb = b.snapshot("t")
    assert snap.keys() == sb.keys() and all(snap[k].tobytes() == sb[k].tobytes() for k in snap)
    for store in (a, b):  # crosses several refreshes (evictions with stochastic write-back) after the restore
        zipf_train(store, np.random.default_rng(6), 20, 5000, 16, seq0=100)
    sa, sb = a.snapshot("t"), b.snapshot("t")
    assert all(sa[k].tobytes() == sb[k].tobytes() for k in sa)
    assert np.array_equal(a.pull("t", np.arange(5000)), b.pull("t", np.arange(5000)))
    bad = dict(snap, mpe_cached=snap["mpe_cached"][::-1].copy())  # not sorted
    with pytest.raises(InvalidRequest):
        RowStore().restore_table(cfg, bad)
    bad = dict(snap, mpe_cached=snap["mpe_cached"][:-1].copy())  # the fp32 pool has one row too many
    with pytest.raises(InvalidRequest):
        RowStore().restore_table(cfg, bad)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["id_too_big", "grads_nan", "grads_shape", "count_negative", "seq_negative"]),
       seed=st.integers(0, 99))
def test_rejected_push_changes_nothing(kind, seed):
    rng = np.random.default_rng(seed)
    s = RowStore()
    s.create_table(mpe(4, 20, mpe_cache_fraction=0.3, fq_retier_every=2))
    for q in range(3):
        push(s, "t", rng.integers(0, 20, 6), rng.normal(size=(6, 4)), seq=q)
    assert s._tables["t"].cached.shape[0] > 0
    before = state_of(s), s._tables["t"].cached.copy()
    ids, grads = rng.integers(0, 20, 5).astype(np.int64), rng.normal(size=(5, 4)).astype(np.float32)
    cp, cn, seq = np.ones(5, np.int64), np.zeros(5, np.int64), 3  # seq 3: would also trigger a refresh
    if kind == "id_too_big":
        ids[2] = 20
    elif kind == "grads_nan":
        grads[1, 1] = np.nan
    elif kind == "grads_shape":
        grads = grads[:, :3]
    elif kind == "count_negative":
        cn[0] = -1
    else:
        seq = -1
    with pytest.raises(InvalidRequest):
        s.push("t", ids, grads, cp, cn, 0, seq)
    assert_same_state(before[0], state_of(s))
    assert s._tables["t"].cached.tobytes() == before[1].tobytes()
    with pytest.raises(InvalidRequest):  # the cache is the table's own business
        s.set_tiers("t", np.arange(2), np.zeros(2, np.uint8))
    assert_same_state(before[0], state_of(s))


def test_config_validates_and_travels_over_the_wire_and_in_manifests(tmp_path):
    for bad in ({"quant": "mpe"}, {"quant": "mpe", "mpe_cache_fraction": 0.2, "fq_budget_fraction": 0.5},
                {"quant": "mpe", "mpe_cache_fraction": 1.5}, {"quant": "mpe", "mpe_cache_fraction": 0.1,
                                                               "mpe_low": "int4"},
                {"quant": "fq", "mpe_cache_fraction": 0.1}, {"quant": "mpe", "optimizer": "adam",
                                                             "mpe_cache_fraction": 0.1}):
        with pytest.raises(InvalidRequest):
            TableConfig("t", dim=4, capacity=10, **bad)
    cfg = TableConfig("t", dim=4, capacity=10, quant="mpe", mpe_low="fp16", fq_budget_fraction=0.45,
                      fq_retier_every=9)
    from shark.wire.v1 import ps_pb2

    wire = ps_pb2.CreateTableRequest.FromString(create_table_request(cfg).SerializeToString())
    assert table_config(wire) == cfg

    def parsed(c):
        entry = {"name": "t", "config": c, "file": table_file_name("t"), "bytes": 0, "sha256": "0" * 64}
        m = build_manifest(tag="a", shard="s", created_unix_ns=0, created_utc="", seq_window=8, tables=[entry])
        return parse_manifest(json.dumps(m).encode(), tmp_path, shard="s", tag="a")["tables"][0]["cfg"]

    assert parsed(config_to_json(cfg)) == cfg
    old = {k: v for k, v in config_to_json(cfg).items() if not k.startswith(("fq_", "quant", "mpe_"))}
    assert parsed(old) == dataclasses.replace(cfg, quant="none", mpe_low="int8", fq_budget_fraction=0.0,
                                              fq_retier_every=100)


def test_train_config_and_bench_methods():
    assert TrainConfig(quant="mpe", memory_budget=0.5).mpe_low == "int8"
    assert TrainConfig(quant="mpe", mpe_cache=0.1, mpe_low="fp16").mpe_cache == 0.1
    for bad, msg in (({"quant": "mpe"}, "exactly one"), ({"quant": "mpe", "mpe_cache": 0.1, "memory_budget": 0.5},
                                                         "exactly one"),
                     ({"quant": "fq", "mpe_cache": 0.1}, "--mpe-cache needs"), ({"quant": "int8", "memory_budget": 0.5},
                                                                               "needs --quant fq or"),
                     ({"quant": "mpe", "mpe_cache": 1.5}, "mpe_cache"), ({"quant": "mpe", "mpe_low": "x",
                                                                          "mpe_cache": 0.1}, "mpe_low")):
        with pytest.raises(ValueError, match=msg):
            TrainConfig(**bad)
    assert QuantMethod.parse("mpe:0.4") == QuantMethod("mpe:0.4", "mpe", 0.4)
    for bad in ("mpe", "mpe:0", "mpe:2"):
        with pytest.raises(ValueError):
            QuantMethod.parse(bad)


# --- end to end -----------------------------------------------------------------------------------------------------

def test_ps_trainer_learns_with_mpe_tables():
    """The worker's training loop on an in-process store whose tables are MPE (int8 + fp32 cache, 55% budget: at
    dim 16 the int8 floor, index included, is ~47%)."""
    from shark.data.synthetic import SynthConfig, SyntheticCriteo
    from shark.metrics import auc
    from tests.unit.test_ps_trainer import InProcessClient
    from worker.dense import DENSE_TABLE
    from worker.trainer import PSTrainer

    gen = SyntheticCriteo(SynthConfig(seed=3))
    cfg = TrainConfig(capacity=1 << 12, threads=1, prefetch=0, batch_size=256, quant="mpe", memory_budget=0.55,
                      retier_every=10)
    tables = [f"C{i}" for i in range(1, 27)]
    store = RowStore()
    for t in tables:
        store.create_table(TableConfig(name=t, dim=cfg.embedding_dim, capacity=cfg.capacity_of(t),
                                       lr=cfg.lr_embedding, eps=1e-8, init_scale=cfg.init_scale, seed=cfg.seed,
                                       quant="mpe", fq_budget_fraction=cfg.memory_budget,
                                       fq_retier_every=cfg.retier_every))
    ps = PSTrainer(cfg, 13, tables, InProcessClient(store))
    d = ps.dense
    store.create_table(TableConfig(name=DENSE_TABLE, dim=d.chunk, capacity=d.n_rows, optimizer="adam",
                                   lr=cfg.lr_dense, init_scale=0.0, seed=cfg.seed))
    store.assign(DENSE_TABLE, d.ids, d.rows())
    ps.fit(gen.batches(20_000, 256))
    y, p = ps.evaluate(gen.batches(5_000, 1000, split="test")).arrays()
    assert auc(y, p) > 0.70
    mem = [store.memory_bytes(t) for t in tables]
    assert sum(m["total"] for m in mem) <= 0.55 * sum(m["fp32_equivalent_total"] for m in mem)
    assert sum(store.stats(t)["rows_cached"] for t in tables) > 0
