"""What a row really costs: the compact id index, the per-tier bytes against the fp32 method's store, budgets held
with the reported byte count, and the shard process's resident memory."""

from __future__ import annotations

import numpy as np
import pytest

from ps.server.servicer import process_rss_bytes, return_freed_memory
from ps.store import RowStore, TableConfig
from ps.store.id_index import MAX_LOAD, IdIndex


def test_id_index_maps_inserted_ids_and_nothing_else():
    rng = np.random.default_rng(0)
    ids = rng.choice(1 << 31, 50_000, replace=False)
    ix = IdIndex()
    n = 0
    for chunk in np.array_split(ids, 40):  # grows many times, overflowing buckets into the stash
        new = chunk[ix.lookup(chunk) < 0]
        ix.insert(new, np.arange(n, n + new.shape[0]))
        n += new.shape[0]
    assert n == ids.shape[0] and ix.stash_keys.size > 0
    assert np.array_equal(ix.lookup(ids), np.arange(n))
    absent = rng.integers(0, 1 << 31, 5000)
    absent = absent[~np.isin(absent, ids)]
    assert (ix.lookup(absent) == -1).all()
    ix.fit()
    assert np.array_equal(ix.lookup(ids), np.arange(n)) and (ix.lookup(absent) == -1).all()
    assert ix.count / ix.capacity <= MAX_LOAD and ix.nbytes < 11.5 * n  # ~10.7 B a row when packed


def test_fitted_index_depends_only_on_the_ids_present():
    rng = np.random.default_rng(1)
    ids = rng.choice(1 << 20, 3000, replace=False)
    a, b = IdIndex(), IdIndex()
    a.insert(ids, np.arange(3000))
    for part in np.array_split(rng.permutation(3000), 7):  # another arrival order
        b.insert(ids[part], part)
    a.fit()
    b.fit()
    assert a.nbytes == b.nbytes and np.array_equal(a.keys, b.keys) and np.array_equal(a.stash_keys, b.stash_keys)


def _per_row(dim: int, n: int, tier: int | None) -> tuple[float, float]:
    """(bytes per row of the store, bytes per row of its fp32 reference), packed, n sparse ids."""
    ids = np.random.default_rng(dim).choice(1 << 30, n, replace=False)
    s = RowStore()
    quant = {"quant": "fq", "fq_budget_fraction": 0.5} if tier is not None else {}
    s.create_table(TableConfig("t", dim=dim, capacity=1 << 30, **quant))
    s.pull("t", ids)
    if tier is not None:
        s.set_tiers("t", ids, np.full(n, tier, np.uint8))
    s.compact("t")
    m = s.memory_bytes("t")
    return m["total"] / n, m["fp32_equivalent_total"] / n


@pytest.mark.parametrize("dim", [16, 32])
def test_row_bytes_per_tier_and_the_fp32_reference_is_the_fp32_store(dim):
    n = 20_000
    fp32_store, ref = _per_row(dim, n, None)
    assert fp32_store == ref  # the reference is what quant "none" really holds, nothing more
    index = IdIndex.fitted_buckets(n) * 64 / n
    assert fp32_store <= 4 * dim + 4 + index + 1  # payload + Adagrad accumulator + index (+ its small stash)
    b32, _ = _per_row(dim, n, 0)
    b16, _ = _per_row(dim, n, 1)
    b8, _ = _per_row(dim, n, 2)
    # F-Q adds 10 B a row (tier+slot 4, priority 2 -- the accumulator 4 is the fp32 store's too: 6 B) and int8 a
    # 2-byte scale.
    assert b32 - fp32_store == pytest.approx(6, abs=0.01)
    assert b16 - b8 == pytest.approx(dim - 2, abs=0.01) and b32 - b16 == pytest.approx(2 * dim, abs=0.01)
    floor = b8 / fp32_store
    assert floor < 0.5 if dim == 16 else floor < 0.4  # 50% reachable at dim 16, 40% at dim 32


@pytest.mark.parametrize("fraction", [0.5, 0.4])
def test_budget_holds_with_the_reported_bytes_at_dim_32(fraction):
    rng = np.random.default_rng(3)
    s = RowStore()
    s.create_table(TableConfig("t", dim=32, capacity=1 << 24, quant="fq", fq_budget_fraction=fraction,
                               fq_retier_every=5))
    for q in range(40):
        ids = np.unique((rng.zipf(1.2, 2048) * 7919) % (1 << 24))
        cp = (rng.random(ids.shape[0]) < 0.3).astype(np.int64)
        s.push("t", ids, (rng.normal(size=(ids.shape[0], 32)) * 0.01).astype(np.float32), cp, 1 - cp, 0, q)
        # After every push, not only at retiers: the rows created since are int8, which cost less than their share
        # of the budget at dim 32, and growth slack is not counted (never touched, so never resident).
        m = s.memory_bytes("t")
        assert m["total"] <= fraction * m["fp32_equivalent_total"], (q, m)
    st = s.stats("t")
    assert st["rows_int8"] > 0 and st["rows_fp32"] + st["rows_fp16"] > 0  # room beyond all-int8


def test_process_rss_follows_the_store():
    before = process_rss_bytes()
    assert before > 0
    s = RowStore()
    s.create_table(TableConfig("t", dim=64, capacity=1 << 30))
    s.pull("t", np.random.default_rng(0).choice(1 << 30, 200_000, replace=False))
    grown = process_rss_bytes() - before
    assert grown >= 0.8 * s.memory_bytes("t")["total"]  # the counted bytes are really resident


def test_compaction_gives_memory_back_to_the_os():
    """What a shard does at start (return_freed_memory): the bytes an F-Q compaction frees leave the RSS."""
    assert return_freed_memory()
    s = RowStore()
    s.create_table(TableConfig("t", dim=64, capacity=1 << 30))
    ids = np.random.default_rng(1).choice(1 << 30, 300_000, replace=False)
    s.pull("t", ids)
    s.compact("t")
    full = process_rss_bytes()
    before = s.memory_bytes("t")["total"]
    s.set_tiers("t", ids, np.full(ids.shape, 2, np.uint8))  # all int8: ~1/3 of the bytes
    s.compact("t")
    freed = before - s.memory_bytes("t")["total"]
    assert freed > 40 << 20
    assert full - process_rss_bytes() >= 0.7 * freed
