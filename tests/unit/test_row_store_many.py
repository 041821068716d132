"""RowStore read-only pulls, multi-table pulls/pushes (all-or-nothing validation, per-table idempotency) and
assign (set rows, reset optimizer state)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ps.store import InvalidRequest, PushResult, RowStore, SeqOutOfWindow, TableConfig, UnknownTable
from tests.unit.test_row_store import assert_same_state, push, state_of


def three_tables() -> RowStore:
    s = RowStore(seq_window=16)
    s.create_table(TableConfig("a", dim=4, capacity=20, optimizer="sgd", lr=1.0, init_scale=0.0))
    s.create_table(TableConfig("b", dim=2, capacity=10, optimizer="adagrad", seed=3))
    s.create_table(TableConfig("c", dim=3, capacity=8, optimizer="adam", lr=0.1))
    return s


def part(table: str, ids: list[int], dim: int, g: float = 1.0) -> tuple:
    n = len(ids)
    return (table, np.asarray(ids, np.int64), np.full((n, dim), g, np.float32), np.ones(n, np.int64),
            np.zeros(n, np.int64))


# --- read-only pull --------------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(ids=st.lists(st.integers(0, 99), min_size=0, max_size=30), present=st.lists(st.integers(0, 99), max_size=10))
def test_read_only_pull_returns_initial_values_and_changes_nothing(ids: list[int], present: list[int]) -> None:
    s = RowStore()
    s.create_table(TableConfig("t", dim=5, capacity=100, init_scale=0.3, seed=8))
    push(s, "t", present, np.ones((len(present), 5)), seq=0)  # some rows exist (and differ from their init)
    before, snap = state_of(s), s.snapshot("t")
    got = s.pull("t", np.asarray(ids, np.int64), create=False)
    assert_same_state(before, state_of(s))
    assert s.stats("t")["rows"] == len(set(present))
    assert all(snap[k].tobytes() == v.tobytes() for k, v in s.snapshot("t").items())
    assert np.array_equal(got, s.pull("t", np.asarray(ids, np.int64)))  # what a creating pull returns


# --- pull_many -------------------------------------------------------------------------------------------------

def test_pull_many_validates_every_part_before_creating_rows() -> None:
    s = three_tables()
    before = state_of(s)
    for bad in ([("a", np.array([1]), True), ("zz", np.array([1]), True)],       # unknown table
                [("a", np.array([1]), True), ("b", np.array([10]), True)],       # id out of range
                [("a", np.array([1]), True), ("a", np.array([2]), True)]):       # repeated table
        with pytest.raises((UnknownTable, InvalidRequest)):
            s.pull_many(bad)
        assert_same_state(before, state_of(s))
    rows = s.pull_many([("a", np.array([3, 1, 3]), True), ("b", np.array([4]), False)])
    assert [r.shape for r in rows] == [(3, 4), (1, 2)]
    assert s.stats("a")["rows"] == 2 and s.stats("b")["rows"] == 0


# --- push_many -------------------------------------------------------------------------------------------------

BAD_PART = ["unknown_table", "repeated_table", "id_too_big", "grads_nan", "grads_shape", "count_negative",
            "seq_window", "not_a_tuple"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(BAD_PART), where=st.integers(0, 2))
def test_one_bad_part_rejects_the_whole_push_and_changes_nothing(kind: str, where: int) -> None:
    s = three_tables()
    s.push_many([part("a", [1, 2], 4), part("b", [3], 2), part("c", [0], 3)], worker_id=1, seq=0)
    before = state_of(s)
    parts = [part("a", [1, 5], 4), part("b", [3, 3], 2), part("c", [0, 7], 3)]
    seq = 1
    name, ids, g, cp, cn = parts[where]
    if kind == "unknown_table":
        parts[where] = ("zz", ids, g, cp, cn)
    elif kind == "repeated_table":
        parts[where] = (parts[(where + 1) % 3][0], ids, g, cp, cn)
    elif kind == "id_too_big":
        parts[where] = (name, np.array([1, 99]), g, cp, cn)
    elif kind == "grads_nan":
        g = g.copy()
        g[1, 0] = np.nan
        parts[where] = (name, ids, g, cp, cn)
    elif kind == "grads_shape":
        parts[where] = (name, ids, g[:, :1], cp, cn)
    elif kind == "count_negative":
        parts[where] = (name, ids, g, cp, -cn - 1)
    elif kind == "not_a_tuple":
        parts[where] = list(parts[where])
    else:
        seq = 40  # beyond every table's window (16) above hw 0
    err = {"unknown_table": UnknownTable, "seq_window": SeqOutOfWindow}.get(kind, InvalidRequest)
    with pytest.raises(err):
        s.push_many(parts, worker_id=1, seq=seq)
    assert_same_state(before, state_of(s))


def test_push_many_is_idempotent_per_table_and_equals_separate_pushes() -> None:
    s, ref = three_tables(), three_tables()
    parts = [part("a", [1, 2, 1], 4), part("b", [3], 2, g=0.5)]
    assert s.push_many(parts, worker_id=7, seq=0) == PushResult(True, False)
    for p in parts:
        ref.push(*p, worker_id=7, seq=0)
    assert_same_state(state_of(ref), state_of(s))
    before = state_of(s)
    assert s.push_many(parts, worker_id=7, seq=0) == PushResult(False, True)  # a retry: nothing changes
    assert_same_state(before, state_of(s))
    # Table "a" already has (7, 1) from a single-table push; only "b" and "c" apply it now.
    s.push(*part("a", [1], 4), worker_id=7, seq=1)
    a_before = s.pull("a", np.array([1, 2]))
    res = s.push_many([part("a", [1], 4), part("b", [3], 2), part("c", [2], 3)], worker_id=7, seq=1)
    assert res == PushResult(True, False)
    assert np.array_equal(s.pull("a", np.array([1, 2])), a_before)
    assert [s.stats(t)["step"] for t in "abc"] == [2, 2, 1]
    assert s.push_many([], worker_id=7, seq=2) == PushResult(False, True)  # nothing to apply
    with pytest.raises(InvalidRequest):
        s.push_many([], worker_id=-1, seq=2)  # still validated


# --- assign ----------------------------------------------------------------------------------------------------

def test_assign_sets_rows_and_resets_optimizer_state() -> None:
    s = three_tables()
    push(s, "b", [1, 2], np.ones((2, 2)), seq=0)
    push(s, "c", [1, 2], np.ones((2, 3)), seq=0)
    vals_b = np.array([[0.5, -0.5], [1.5, 2.0], [3.0, 4.0]], np.float32)
    s.assign("b", np.array([2, 9, 1]), vals_b)  # 9 is new
    assert np.array_equal(s.pull("b", np.array([2, 9, 1])), vals_b)
    tb = s._tables["b"]
    assert (tb.rows["accum"][tb.lookup(np.array([1, 2, 9]))] == 0).all()
    vals_c = np.arange(6, dtype=np.float32).reshape(2, 3)
    s.assign("c", np.array([1, 2]), vals_c)
    tc = s._tables["c"]
    r = tc.lookup(np.array([1, 2]))
    assert not tc.rows["adam_m"][r].any() and not tc.rows["adam_v"][r].any() and not tc.rows["adam_t"][r].any()
    # After a reset the next push is Adam's first step again: |update| = lr in every coordinate.
    push(s, "c", [1], np.full((1, 3), 0.3), seq=1)
    np.testing.assert_allclose(s.pull("c", np.array([1]))[0], vals_c[0] - 0.1, rtol=1e-6)
    before = state_of(s)
    s.assign("b", np.array([2, 9, 1]), vals_b)  # idempotent
    assert_same_state(before, state_of(s))


def test_assign_into_low_precision_tier_uses_that_tier() -> None:
    s = three_tables()
    s.pull("b", np.array([4]))
    s.set_tiers("b", np.array([4]), np.array([1]))
    s.assign("b", np.array([4]), np.array([[1.0 / 3, 2.0]], np.float32))
    assert s.tiers("b", np.array([4])).tolist() == [1]
    assert np.array_equal(s.pull("b", np.array([4])), np.array([[np.float16(1 / 3), 2.0]], np.float32))


@pytest.mark.parametrize("ids, vals, err", [
    ([1, 1], np.zeros((2, 2), np.float32), InvalidRequest),          # repeated id
    ([1, 10], np.zeros((2, 2), np.float32), InvalidRequest),         # out of range
    ([1, 2], np.zeros((2, 3), np.float32), InvalidRequest),          # wrong dim
    ([1, 2], np.zeros((2, 2), np.float64), InvalidRequest),          # wrong dtype
    ([1, 2], np.array([[0, np.inf], [0, 0]], np.float32), InvalidRequest),
    ([1, 2], np.zeros((1, 2), np.float32), InvalidRequest),          # wrong length
])
def test_rejected_assign_changes_nothing(ids: list[int], vals: np.ndarray, err: type) -> None:
    s = three_tables()
    push(s, "b", [1], np.ones((1, 2)), seq=0)
    before = state_of(s)
    with pytest.raises(err):
        s.assign("b", np.asarray(ids, np.int64), vals)
    with pytest.raises(UnknownTable):
        s.assign("zz", np.array([1]), np.zeros((1, 2), np.float32))
    assert_same_state(before, state_of(s))
