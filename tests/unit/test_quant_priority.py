"""Eq. 7 priorities: the lazy form (decay on touch/read) equals the eager per-push formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shark.quant import PriorityRule


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), alpha=st.floats(0, 5), beta=st.floats(0.001, 1.0), steps=st.integers(1, 60))
def test_lazy_decay_equals_eager_formula(seed, alpha, beta, steps):
    rng = np.random.default_rng(seed)
    n = 12
    rule = PriorityRule(alpha, beta)
    eager = np.zeros(n)
    w = np.zeros(n, np.float32)
    last = np.zeros(n, np.uint32)
    for step in range(1, steps + 1):
        touched = np.flatnonzero(rng.random(n) < 0.3)
        cp = np.zeros(n, np.int64)
        cn = np.zeros(n, np.int64)
        cp[touched] = rng.integers(0, 4, touched.shape[0])
        cn[touched] = rng.integers(0, 9, touched.shape[0])
        eager = (1 - beta) * eager + beta * (alpha * cp + cn)  # every row, every push
        w[touched] = rule.touched(w[touched], last[touched], step, cp[touched], cn[touched])
        last[touched] = step
        np.testing.assert_allclose(rule.decayed(w, last, step), eager, rtol=2e-5, atol=1e-30)


def test_step_clock_wraps_mod_2_32_and_validation():
    rule = PriorityRule(2.0, 0.5)
    w = rule.decayed(np.array([8.0], np.float32), np.array([2**32 - 1], np.uint32), 2**32 + 2)  # gap 3
    assert w[0] == 1.0
    assert rule.touched(np.zeros(1, np.float32), np.zeros(1, np.uint32), 5, np.array([1]), np.array([2]))[0] == 2.0
    for bad in ({"alpha": -1.0}, {"beta": 0.0}, {"beta": 1.5}, {"alpha": float("nan")}):
        with pytest.raises(ValueError):
            PriorityRule(**{"alpha": 2.0, "beta": 0.1, **bad})
