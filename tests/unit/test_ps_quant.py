"""Row codecs (int8 symmetric, fp16), rounding modes, and the push segment-sum."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ps.store.dedup import segment_sum
from ps.store.idempotency import SeqTracker
from shark.quant import fp16_decode, fp16_encode, int8_decode, int8_encode

finite32 = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
rows = arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 20)), elements=finite32)


@settings(max_examples=200, deadline=None)
@given(x=rows)
def test_int8_nearest_round_trip_error_at_most_half_a_step(x):
    q, scale = int8_encode(x)
    assert q.dtype == np.int8 and (np.abs(q.astype(int)) <= 127).all()
    err = np.abs(int8_decode(q, scale).astype(np.float64) - x)
    # scale/2 from rounding, plus half an fp32 ulp from the final float32 product
    bound = scale[:, None].astype(np.float64) / 2 + np.spacing(np.abs(x).max(axis=1, keepdims=True)) / 2
    assert (err <= bound).all()


@settings(max_examples=100, deadline=None)
@given(x=rows, seed=st.integers(0, 2**32))
def test_int8_stochastic_error_below_one_step(x, seed):
    q, scale = int8_encode(x, np.random.default_rng(seed))
    err = np.abs(int8_decode(q, scale).astype(np.float64) - x)
    assert (err <= scale[:, None] * (1 + 1e-6) + np.spacing(np.abs(x).max(axis=1, keepdims=True))).all()


def test_int8_zero_and_constant_rows():
    x = np.array([[0.0] * 4, [0.25] * 4, [-3.0] * 4], np.float32)
    q, scale = int8_encode(x)
    assert scale[0] == 0 and (q[0] == 0).all()
    assert np.array_equal(int8_decode(q, scale), x)  # constant rows hit +-127 exactly


@settings(max_examples=100, deadline=None)
@given(x=arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 8)),
                elements=st.floats(-7e4, 7e4, allow_nan=False, width=32)), seed=st.integers(0, 2**32))
def test_fp16_stochastic_picks_a_neighbour(x, seed):
    near = fp16_encode(x)
    sto = fp16_encode(x, np.random.default_rng(seed))
    xc = np.clip(x, -65504, 65504)
    with np.errstate(over="ignore"):  # nextafter(+-65504) is +-inf: a harmless outer bound here
        lo = np.nextafter(near, np.float16(-np.inf)).astype(np.float32)
        hi = np.nextafter(near, np.float16(np.inf)).astype(np.float32)
    s = fp16_decode(sto)
    assert np.isfinite(s).all() and ((s >= lo) & (s <= hi)).all()
    assert (s[xc == near.astype(np.float32)] == xc[xc == near.astype(np.float32)]).all()


def test_stochastic_rounding_is_unbiased():
    rng = np.random.default_rng(0)
    x = np.full((20000, 1), 1.0 + 1e-4, np.float32)
    assert abs(fp16_decode(fp16_encode(x, rng)).mean() - x[0, 0]) < 3e-5
    y = np.tile(np.array([[1.0, 0.3]], np.float32), (20000, 1))  # 0.3 sits between int8 steps of 1/127
    q, s = int8_encode(y, rng)
    assert abs(int8_decode(q, s)[:, 1].mean() - 0.3) < 3e-4


@settings(max_examples=100, deadline=None)
@given(ids=arrays(np.int64, st.integers(0, 40), elements=st.integers(0, 9)), seed=st.integers(0, 99))
def test_segment_sum_matches_add_at(ids, seed):
    g = np.random.default_rng(seed).normal(size=(ids.shape[0], 3)).astype(np.float32)
    c = np.arange(ids.shape[0], dtype=np.int64)
    uniq, gs, (cs,) = segment_sum(ids, g, c)
    want_u, inv = np.unique(ids, return_inverse=True)
    want_g = np.zeros((want_u.shape[0], 3), np.float64)
    np.add.at(want_g, inv, g)
    assert np.array_equal(uniq, want_u)
    np.testing.assert_allclose(gs, want_g, rtol=1e-5, atol=1e-5)
    assert np.array_equal(cs, np.bincount(inv, weights=c, minlength=want_u.shape[0]).astype(np.int64))
    su, sg, (sc,) = segment_sum(want_u, gs, cs)  # sorted unique input: the no-sort fast path
    assert np.array_equal(su, want_u) and np.array_equal(sg, gs) and np.array_equal(sc, cs)


def test_seq_tracker_round_trips_through_arrays():
    t = SeqTracker(window=16)
    for w, q in [(1, 0), (1, 2), (1, 5), (3, 0), (3, 1)]:
        t.mark(w, q)
    u = SeqTracker.from_arrays(t.to_arrays(), window=16)
    assert u.hw == t.hw == {1: 0, 3: 1} and u.above == t.above
    assert u.check(1, 2) and not u.check(1, 1) and u.check(3, 0)
