"""Eq. 8 tiers, fixed and from a byte budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shark.quant import BudgetPolicy, RowBytes, TierPolicy, default_t16_over_t8


def test_eq8_thresholds():
    p = TierPolicy(1.0, 10.0)
    assert p.tiers(np.array([0.0, 0.99, 1.0, 9.9, 10.0, 1e9])).tolist() == [2, 2, 1, 1, 0, 0]
    with pytest.raises(ValueError):
        TierPolicy(2.0, 1.0)


def _bytes(tiers, fixed, row):
    per = np.array(row.per_tier())
    return fixed + int(per[tiers].sum())


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(0, 300), dim=st.integers(1, 96), frac=st.floats(0.0, 1.2),
       ties=st.booleans())
def test_budget_fits_keeps_order_and_is_tight(seed, n, dim, frac, ties):
    rng = np.random.default_rng(seed)
    w = rng.pareto(1.0, n).astype(np.float32)
    if ties:
        w = np.round(w)
    row = RowBytes(dim, 29)
    fixed = 4096
    budget = int(frac * (fixed + n * row.per_tier()[0]))
    ratio = default_t16_over_t8(dim)
    policy = BudgetPolicy(budget, ratio)
    tiers, t8, _ = policy.assign(w, fixed, row)
    floor = fixed + n * min(row.per_tier())
    if budget >= floor:
        assert _bytes(tiers, fixed, row) <= budget
    else:
        assert (tiers == (1 if math.isinf(ratio) else 2)).all()
    # higher priority never sits at lower precision
    order = np.argsort(w, kind="stable")
    assert (np.diff(tiers[order].astype(int)) <= 0).all()
    if n and not math.isinf(ratio) and 0 < t8 < math.inf:  # tight: the next lower t8 breakpoint overflows
        cands = np.concatenate((w.astype(np.float64), w.astype(np.float64) / ratio))
        lower = cands[cands < t8]
        if lower.size:
            t = float(lower.max())
            alt = np.where(w < t, 2, np.where(w < t * ratio, 1, 0))
            assert _bytes(alt, fixed, row) > budget


def test_budget_puts_hot_rows_in_fp32_and_cold_in_int8():
    w = np.concatenate((np.full(10, 1000.0), np.full(100, 1.0), np.zeros(1000)))
    row = RowBytes(64, 33)
    budget = int(0.5 * len(w) * row.per_tier()[0])
    tiers, t8, t16 = BudgetPolicy(budget, default_t16_over_t8(64)).assign(w, 0, row)
    assert (tiers[:10] == 0).all() and (tiers[-1000:] == 2).all() and t8 <= t16
    assert 10 < default_t16_over_t8(64) < 20 and math.isinf(default_t16_over_t8(2))  # fp16 <= int8 + scale
    assert math.isfinite(default_t16_over_t8(3))
