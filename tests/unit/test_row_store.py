"""RowStore: exact optimizer arithmetic, idempotent pushes, rejection without mutation, init parity, tiers,
memory accounting, snapshot/restore, and the no-grpc/no-ray import rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ps.store import InvalidRequest, PushResult, RowStore, SeqOutOfWindow, TableConfig, TableExists, UnknownTable
from shark.model.embedding import EmbeddingStore
from shark.quant.codecs import bf16_value


def state_of(store: RowStore) -> dict:
    """Every array and counter the store holds, copied, for byte-for-byte comparisons."""
    out = {}
    for name, t in store._tables.items():
        out[(name, "index")] = t.index.keys.tobytes() + t.index.vals.tobytes()
        out[(name, "n")] = t.rows.n
        out[(name, "step")] = t.step
        for k, a in t.rows.cols.items():
            out[(name, "col", k)] = a.copy()
        for i, p in enumerate(t.pools):
            for k, a in p.arrays().items():
                out[(name, "pool", i, k)] = a.copy()
            out[(name, "top", i)] = p.top
        out[(name, "hw")] = dict(t.seqs.hw)
        out[(name, "above")] = {w: set(s) for w, s in t.seqs.above.items()}
    return out


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        if isinstance(v, np.ndarray):
            assert v.dtype == b[k].dtype and v.shape == b[k].shape, k
            assert v.tobytes() == b[k].tobytes(), k
        else:
            assert v == b[k], k


def push(store, table, ids, grads, worker=0, seq=0, c_pos=None, c_neg=None) -> PushResult:
    ids = np.asarray(ids, dtype=np.int64)
    zeros = np.zeros(ids.shape[0], dtype=np.int64)
    return store.push(table, ids, np.asarray(grads, dtype=np.float32), zeros if c_pos is None else c_pos,
                      zeros if c_neg is None else c_neg, worker, seq)


# --- optimizer arithmetic ------------------------------------------------------------------------------------

def test_sgd_two_workers_accumulate_exactly():
    s = RowStore()
    s.create_table(TableConfig("t", dim=4, capacity=50, optimizer="sgd", lr=0.5, init_scale=0.0))
    ids = np.array([3, 3, 7, 9, 3, 7], dtype=np.int64)  # duplicates inside each push are summed
    grads = np.where(ids[:, None] == 3, 1.0, 0.25).astype(np.float32) * np.ones((1, 4), np.float32)
    rounds = 10
    for r in range(rounds):
        for w in (0, 1):
            assert push(s, "t", ids, grads, worker=w, seq=r) == PushResult(True, False)
    got = s.pull("t", np.array([3, 7, 9, 0]))
    per_push = {3: 3 * 1.0, 7: 2 * 0.25, 9: 1 * 0.25}
    want = np.array([[-0.5 * 2 * rounds * per_push[i]] * 4 for i in (3, 7, 9)] + [[0.0] * 4], np.float32)
    assert np.array_equal(got, want)
    assert s.stats("t")["step"] == 2 * rounds


def test_adagrad_matches_numpy_reference_and_embedding_store():
    rng = np.random.default_rng(0)
    cfg = TableConfig("f", dim=8, capacity=200, optimizer="adagrad", lr=0.1, eps=1e-8, init_scale=0.05, seed=3)
    s = RowStore()
    s.create_table(cfg)
    es = EmbeddingStore(["f"], [200], dim=8, lr=0.1, eps=1e-8, init_scale=0.05, seed=3)
    ref_w = {i: v for i, v in zip(range(200), s.pull("f", np.arange(200)))}  # creates all rows
    es.pull(np.arange(200)[:, None])
    ref_acc = np.zeros(200, np.float32)
    for seq in range(20):
        ids = rng.integers(0, 200, size=64)
        grads = rng.normal(size=(64, 8)).astype(np.float32)
        push(s, "f", ids, grads, seq=seq)
        uniq, inv = np.unique(ids, return_inverse=True)
        g = np.zeros((uniq.shape[0], 8), np.float64)
        np.add.at(g, inv, grads)
        g = g.astype(np.float32)
        ref_acc[uniq] += (g * g).mean(axis=1)
        for k, i in enumerate(uniq):  # the plain (slow, obvious) reference
            ref_w[i] = ref_w[i] - 0.1 * g[k] / np.sqrt(ref_acc[i] + 1e-8)
        es.push(torch.from_numpy(uniq), torch.from_numpy(g))
    got = s.pull("f", np.arange(200))
    np.testing.assert_allclose(got, np.stack([ref_w[i] for i in range(200)]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, es.table_rows("f").numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s._tables["f"].rows["accum"][s._tables["f"].lookup(np.arange(200))], ref_acc,
                               rtol=1e-5)


def test_rows_hold_only_what_their_method_needs():
    s = RowStore()
    for name, kw in (("ada", {}), ("sgd", {"optimizer": "sgd"}), ("fq", {"quant": "fq"}), ("i8", {"quant": "int8"})):
        s.create_table(TableConfig(name, dim=2, capacity=10, **kw))
        push(s, name, [1, 1, 2], np.zeros((3, 2)), seq=0, c_pos=np.array([1, 2, 0]), c_neg=np.array([0, 1, 5]))
    cols = {name: set(t.rows.cols) for name, t in s._tables.items()}
    assert cols == {"ada": {"accum"}, "sgd": set(), "fq": {"accum", "loc", "priority"}, "i8": {"accum"}}


@pytest.mark.parametrize("beta", [0.01, 0.3, 0.99])
def test_fq_priorities_follow_eager_eq7_with_one_shared_epoch(beta):
    """The store keeps no last step per row: its priorities (fp16 against a shared, renormalised epoch) must still
    match eq. 7 applied eagerly to every row after every push."""
    rng = np.random.default_rng(int(beta * 100))
    s = RowStore()
    s.create_table(TableConfig("t", dim=2, capacity=64, quant="fq", fq_alpha=2.0, fq_beta=beta, fq_t8=-1.0,
                               fq_t16=-1.0, fq_retier_every=7))
    eager = np.zeros(64)
    for q in range(60):
        ids = np.unique(rng.integers(0, 64, 12))
        cp, cn = rng.integers(0, 5, ids.shape[0]), rng.integers(0, 5, ids.shape[0])
        push(s, "t", ids, np.zeros((ids.shape[0], 2)), seq=q, c_pos=cp, c_neg=cn)
        x = np.zeros(64)
        x[ids] = 2.0 * cp + cn
        eager = (1 - beta) * eager + beta * x
        got = s.priorities("t", np.arange(64)).astype(np.float64)
        present = s.tiers("t", np.arange(64)) != 255
        # fp16 storage: a relative error of a few 2^-11 roundings, plus values too small for fp16 read as 0
        assert np.allclose(got[present], eager[present], rtol=4e-3, atol=1e-6 * eager.max()), q


# --- idempotency -----------------------------------------------------------------------------------------------

def test_duplicate_seq_is_ignored_and_changes_nothing():
    s = RowStore()
    s.create_table(TableConfig("t", dim=3, capacity=10, optimizer="sgd", lr=1.0, init_scale=0.0))
    assert push(s, "t", [1], np.ones((1, 3)), worker=5, seq=0).applied
    before = state_of(s)
    assert push(s, "t", [1], np.ones((1, 3)), worker=5, seq=0) == PushResult(False, True)
    assert_same_state(before, state_of(s))
    assert push(s, "t", [1], np.ones((1, 3)), worker=6, seq=0).applied  # another worker's seq 0 is its own


def test_out_of_order_seqs_within_window_apply_once_each():
    s = RowStore(seq_window=8)
    s.create_table(TableConfig("t", dim=1, capacity=10, optimizer="sgd", lr=1.0, init_scale=0.0))
    arrivals = [2, 0, 5, 1, 1, 2, 3, 0, 4, 5, 6, 3]
    applied = [push(s, "t", [0], [[1.0]], worker=1, seq=q).applied for q in arrivals]
    assert sum(applied) == 7  # seqs 0..6, once each
    assert s.pull("t", np.array([0]))[0, 0] == -7.0
    tr = s._tables["t"].seqs
    assert tr.hw[1] == 6 and not tr.above[1]
    before = state_of(s)
    with pytest.raises(SeqOutOfWindow):
        push(s, "t", [0], [[1.0]], worker=1, seq=6 + 9)
    assert_same_state(before, state_of(s))
    assert push(s, "t", [0], [[1.0]], worker=1, seq=6 + 8).applied  # the window's edge is accepted
    assert len(tr.above[1]) <= 8


# --- rejection -------------------------------------------------------------------------------------------------

BAD_KINDS = ["id_negative", "id_too_big", "ids_2d", "ids_float", "grads_f64", "grads_shape", "grads_nan",
             "grads_inf", "len_mismatch", "count_negative", "count_huge", "count_float", "count_len",
             "unknown_table",
             "worker_negative", "seq_negative", "seq_float"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(BAD_KINDS), n=st.integers(1, 12), pos=st.integers(0, 11), seed=st.integers(0, 99))
def test_rejected_push_leaves_store_byte_identical(kind, n, pos, seed):
    rng = np.random.default_rng(seed)
    s = RowStore()
    s.create_table(TableConfig("t", dim=4, capacity=20))
    s.create_table(TableConfig("u", dim=2, capacity=5, optimizer="sgd"))
    push(s, "t", rng.integers(0, 20, 6), rng.normal(size=(6, 4)), seq=0)
    s.set_tiers("t", s._tables["t"].row_ids()[:2], np.array([1, 2]))
    before = state_of(s)
    pos = pos % n
    ids = rng.integers(0, 20, n).astype(np.int64)
    grads = rng.normal(size=(n, 4)).astype(np.float32)
    cp, cn = np.ones(n, np.int64), np.zeros(n, np.int64)
    table, worker, seq = "t", 0, 1
    if kind == "id_negative":
        ids[pos] = -1
    elif kind == "id_too_big":
        ids[pos] = 20
    elif kind == "ids_2d":
        ids = ids[:, None]
    elif kind == "ids_float":
        ids = ids.astype(np.float64)
    elif kind == "grads_f64":
        grads = grads.astype(np.float64)
    elif kind == "grads_shape":
        grads = grads[:, :3]
    elif kind == "grads_nan":
        grads[pos, pos % 4] = np.nan
    elif kind == "grads_inf":
        grads[pos, 0] = -np.inf
    elif kind == "len_mismatch":
        grads = np.concatenate([grads, grads[:1]])
    elif kind == "count_negative":
        cn[pos] = -1
    elif kind == "count_huge":
        cp[pos] = 2**32
    elif kind == "count_float":
        cp = cp.astype(np.float32)
    elif kind == "count_len":
        cp = cp[1:]
    elif kind == "unknown_table":
        table = "nope"
    elif kind == "worker_negative":
        worker = -1
    elif kind == "seq_negative":
        seq = -3
    elif kind == "seq_float":
        seq = 1.0
    err = UnknownTable if kind == "unknown_table" else InvalidRequest
    with pytest.raises(err):
        s.push(table, ids, grads, cp, cn, worker, seq)
    assert_same_state(before, state_of(s))
    if kind in ("id_negative", "id_too_big", "ids_2d", "ids_float", "unknown_table"):
        with pytest.raises(err):  # pull validates ids the same way
            s.pull(table, ids)
        assert_same_state(before, state_of(s))


def test_unknown_table_is_a_key_error_and_table_config_validates():
    s = RowStore()
    with pytest.raises(KeyError):
        s.pull("x", np.array([0]))
    with pytest.raises(UnknownTable):
        s.drop_table("x")
    for bad in ({"dim": 0}, {"capacity": 0}, {"capacity": 2**31 + 1}, {"optimizer": "lamb"}, {"lr": -1.0},
                {"eps": float("nan")}, {"rounding": "up"}, {"name": ""}, {"seed": -1}, {"beta1": 1.0},
                {"beta2": -0.1}, {"beta1": float("nan")}, {"beta2": True}):
        with pytest.raises(InvalidRequest):
            TableConfig(**{"name": "a", "dim": 4, "capacity": 10, **bad})
    s.create_table(TableConfig("a", dim=4, capacity=10))
    with pytest.raises(TableExists):
        s.create_table(TableConfig("a", dim=4, capacity=10))


# --- init parity -----------------------------------------------------------------------------------------------

def test_initial_rows_equal_embedding_store():
    names, caps = ["C1", "some_field", "C26"], [1000, 37, 2**20]
    es = EmbeddingStore(names, caps, dim=16, init_scale=0.07, seed=11)
    rng = np.random.default_rng(1)
    ids = np.stack([rng.integers(0, c, 300) for c in caps], axis=1)
    _u, inverse, rows = es.pull(ids)
    want = rows.numpy()[inverse.numpy()]  # (B, T, d)
    s = RowStore()
    for k, (name, cap) in enumerate(zip(names, caps)):
        s.create_table(TableConfig(name, dim=16, capacity=cap, init_scale=0.07, seed=11))
        assert np.array_equal(s.pull(name, ids[:, k]), want[:, k])


# --- tiers -----------------------------------------------------------------------------------------------------

def test_tier_moves_round_trip_and_reuse_slots():
    s = RowStore()
    s.create_table(TableConfig("t", dim=16, capacity=1000, init_scale=0.5, seed=2))
    ids = np.arange(0, 1000, 7, dtype=np.int64)
    v32 = s.pull("t", ids)
    tiers = (ids % 3).astype(np.uint8)
    s.set_tiers("t", ids, tiers)
    assert s.tiers("t", ids).tolist() == tiers.tolist()
    assert s.stats("t")["rows_int8"] == int((tiers == 2).sum())
    got = s.pull("t", ids)
    m16, m8 = tiers == 1, tiers == 2
    assert np.array_equal(got[tiers == 0], v32[tiers == 0])
    assert np.array_equal(got[m16], v32[m16].astype(np.float16).astype(np.float32))
    scale = np.abs(v32[m8]).max(axis=1, keepdims=True) / 127 * (1 + 2.0**-7)  # the bfloat16 scale, rounded up
    assert (np.abs(got[m8] - v32[m8]) <= scale / 2 + np.spacing(np.abs(v32[m8]).max())).all()
    s.set_tiers("t", ids, (tiers + 1) % 3)
    s.set_tiers("t", ids, tiers)
    tops = [p.top for p in s._tables["t"].pools]  # each pool at its peak occupancy
    for _ in range(3):  # moving back and forth reuses freed slots: the pools grow no further
        s.set_tiers("t", ids, (tiers + 1) % 3)
        s.set_tiers("t", ids, tiers)
    assert [p.top for p in s._tables["t"].pools] == tops
    s.set_tiers("t", ids, np.full(ids.shape, 2))
    x8 = s.pull("t", ids)
    s.set_tiers("t", ids, np.zeros(ids.shape, np.uint8))
    assert np.array_equal(s.pull("t", ids), x8)  # widening is exact
    s.set_tiers("t", ids, np.full(ids.shape, 2))
    t = s._tables["t"]
    step = bf16_value(t.pools[2].scale[t.tier_slot(t.lookup(ids))[1]])[:, None]
    # re-quantizing a decoded int8 row: exact when its largest |q| was 127, else within half a (new) step
    assert (np.abs(s.pull("t", ids) - x8) <= step / 2 + np.spacing(np.abs(x8).max())).all()
    with pytest.raises(InvalidRequest):
        s.set_tiers("t", np.array([1]), np.array([0]))  # absent row


@settings(max_examples=60, deadline=None)
@given(vals=arrays(np.float32, st.tuples(st.integers(1, 8), st.just(6)),
                   elements=st.floats(-100, 100, allow_nan=False, width=32)))
def test_int8_move_through_the_store_errs_at_most_half_a_step(vals):
    s = RowStore()
    s.create_table(TableConfig("t", dim=6, capacity=8, optimizer="sgd", lr=1.0, init_scale=0.0))
    ids = np.arange(vals.shape[0], dtype=np.int64)
    push(s, "t", ids, -vals)  # rows start at 0, so after one SGD step with lr 1 they hold vals exactly
    assert np.array_equal(s.pull("t", ids), vals)
    s.set_tiers("t", ids, np.full(ids.shape, 2))
    got = s.pull("t", ids).astype(np.float64)
    t = s._tables["t"]
    scale = bf16_value(t.pools[2].scale[t.tier_slot(t.lookup(ids))[1]])  # stored in 2 bytes (bfloat16)
    amax = np.abs(vals).max(axis=1)
    assert (scale >= amax / 127 * (1 - 1e-7)).all() and np.allclose(scale, amax / 127, rtol=2.0**-7)  # rounded up
    bound = scale[:, None].astype(np.float64) / 2 + np.spacing(np.abs(vals).max(axis=1, keepdims=True)) / 2
    assert (np.abs(got - vals) <= bound).all()


def test_low_precision_rows_train_with_stochastic_rounding_deterministically():
    def run(rounding: str) -> tuple[np.ndarray, np.ndarray]:
        s = RowStore()
        s.create_table(TableConfig("t", dim=8, capacity=64, optimizer="sgd", lr=1.0, init_scale=0.0,
                                   rounding=rounding, seed=5))
        ids = np.arange(64, dtype=np.int64)
        push(s, "t", ids, -np.ones((64, 8)), seq=0)  # every row = 1.0
        s.set_tiers("t", ids, np.where(ids < 32, 1, 2))
        for q in range(1, 101):  # 100 updates of +1e-4 each: below half an fp16 ulp (4.9e-4) at 1.0
            push(s, "t", ids, np.full((64, 8), -1e-4), seq=q)
        return s.pull("t", ids[:32]), s.pull("t", ids[32:])

    h, _q = run("nearest")
    assert (h == 1.0).all()  # nearest rounding loses every small update
    h1, q1 = run("stochastic")
    h2, q2 = run("stochastic")
    assert np.array_equal(h1, h2) and np.array_equal(q1, q2)  # deterministic given the seed
    assert abs(h1.mean() - 1.01) < 2e-3  # unbiased: the updates survive on average
    assert abs(q1.mean() - 1.01) < 2e-3


# --- accounting ------------------------------------------------------------------------------------------------

def test_memory_accounting_grows_with_rows_and_goes_on_drop():
    s = RowStore()
    s.create_table(TableConfig("t", dim=16, capacity=1 << 20))
    m0 = s.memory_bytes("t")
    s.pull("t", np.arange(0, 1 << 20, 97))
    m1 = s.memory_bytes("t")
    n = len(range(0, 1 << 20, 97))
    assert m1["total"] > m0["total"] + n * 16 * 4
    assert m1["payload_bytes"] == m1["payload_bytes_fp32"] == n * 16 * 4
    assert m1["payload_fp32"] >= n * 16 * 4 and m1["optimizer_state"] >= n * 4
    assert n * 8 < m1["index"] <= 2 * n * 8 / 0.8  # a hash index: 8 B a slot, load in (0.4, 0.8]
    assert s.stats("t")["rows"] == n
    ids = np.arange(0, 1 << 20, 97)
    s.set_tiers("t", ids, np.full(ids.shape, 2))
    m2 = s.memory_bytes("t")
    assert m2["payload_bytes"] == n * 16 and m2["int8_scales"] >= n * 2
    assert m2["payload_fp32"] == m1["payload_fp32"]  # freed fp32 slots stay allocated until compact()
    before = s.pull("t", ids)
    s.compact("t")
    m3 = s.memory_bytes("t")
    assert m3["payload_fp32"] == 0 and m3["free_lists"] == 0 and m3["payload_int8"] == n * 16
    assert m3["optimizer_state"] == n * 4 and m3["total"] < m2["total"] - n * 16 * 4
    assert np.array_equal(s.pull("t", ids), before)
    r = RowStore()
    r.restore_table(s.config("t"), s.snapshot("t"))  # a compacted table snapshots consistently
    assert np.array_equal(r.pull("t", ids), before)
    s.pull("t", np.array([1]))  # grows again after compaction
    assert s.stats("t")["rows_fp32"] == 1
    s.drop_table("t")
    assert not s.has_table("t")
    with pytest.raises(UnknownTable):
        s.memory_bytes("t")


# --- snapshot --------------------------------------------------------------------------------------------------

def test_snapshot_restore_round_trip():
    rng = np.random.default_rng(4)
    cfg = TableConfig("t", dim=8, capacity=500, seed=9)
    a = RowStore()
    a.create_table(cfg)
    for q in range(5):
        ids = rng.integers(0, 500, 100)
        push(a, "t", ids, rng.normal(size=(100, 8)), worker=2, seq=q, c_pos=rng.integers(0, 3, 100),
             c_neg=rng.integers(0, 3, 100))
    present = a._tables["t"].row_ids()
    a.set_tiers("t", present, (present % 3).astype(np.uint8))
    push(a, "t", [present[0]], np.ones((1, 8)), worker=2, seq=7)  # leaves seq 5, 6 open above hw
    snap = a.snapshot("t")
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in snap.values())
    b = RowStore()
    b.restore_table(cfg, snap)
    probe = np.arange(500)
    assert np.array_equal(a.pull("t", probe), b.pull("t", probe))  # also creates the same new rows in both
    sa, sb = a.snapshot("t"), b.snapshot("t")
    assert sa.keys() == sb.keys() and all(sa[k].tobytes() == sb[k].tobytes() for k in sa)
    assert a.stats("t") == b.stats("t")
    assert a.memory_bytes("t")["payload_bytes"] == b.memory_bytes("t")["payload_bytes"]  # capacity slack differs
    assert push(b, "t", [1], np.ones((1, 8)), worker=2, seq=7).duplicate
    for store in (a, b):
        push(store, "t", [3, 4], np.ones((2, 8)), worker=2, seq=5)
    assert np.array_equal(a.pull("t", probe), b.pull("t", probe))
    bad = dict(snap)
    bad["row_id"] = np.zeros_like(snap["row_id"])  # duplicate ids
    c = RowStore()
    with pytest.raises(InvalidRequest):
        c.restore_table(cfg, bad)
    assert not c.has_table("t")
    with pytest.raises(InvalidRequest):
        c.restore_table(TableConfig("t", dim=4, capacity=500), snap)


# --- import rule -----------------------------------------------------------------------------------------------


def test_durable_ledger_counts_applied_pushes_and_survives_a_snapshot():
    from ps.store.snapshot import table_from_arrays

    s = RowStore(seq_window=16)
    s.create_table(TableConfig("t", dim=4, capacity=100, optimizer="sgd", lr=0.1))
    ids = np.arange(5, dtype=np.int64)
    g = np.ones((5, 4), np.float32)
    ones, zeros = np.ones(5, np.int64), np.zeros(5, np.int64)
    for seq in (0, 1, 3, 1, 0):  # 1 and 0 again: duplicates, not applied; seq 2 missing so far
        s.push("t", ids, g, ones, zeros, worker_id=7, seq=seq)
    assert s.ledger("t") == {7: {"applied": 3, "distinct": 3, "highest": 3}}  # a hole: distinct < highest + 1
    s.push("t", ids, g, ones, zeros, worker_id=7, seq=2)
    assert s.ledger("t") == {7: {"applied": 4, "distinct": 4, "highest": 3}}
    arrays = s.snapshot("t")
    assert arrays["seq_count"].tolist() == [4]
    back = table_from_arrays(s.config("t"), arrays, 16)
    assert back.seqs.ledger() == s.ledger("t")
    old = {k: v for k, v in arrays.items() if k != "seq_count"}  # a snapshot from before the ledger
    assert table_from_arrays(s.config("t"), old, 16).seqs.ledger() == s.ledger("t")
