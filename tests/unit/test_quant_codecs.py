"""shark.quant codecs: fp16 (plain and per-row scaled) precision, no NaN on zero/constant rows, and unbiased
stochastic rounding for every codec (int8's nearest bound is in test_ps_quant.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shark.quant import (
    fp16_decode,
    fp16_decode_scaled,
    fp16_encode,
    fp16_encode_scaled,
    int8_decode,
    int8_encode,
)

wide = st.floats(-2.0**100, 2.0**100, allow_nan=False, allow_infinity=False, width=32)
rows = arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 16)), elements=wide)


@settings(max_examples=200, deadline=None)
@given(x=arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 16)),
                elements=st.floats(-6e4, 6e4, allow_nan=False, width=32)))
def test_fp16_nearest_within_half_an_fp16_ulp(x):
    err = np.abs(fp16_decode(fp16_encode(x)).astype(np.float64) - x)
    # relative 2^-11 in the normal range, an absolute 2^-25 (half the subnormal step) below it
    assert (err <= np.abs(x).astype(np.float64) * 2.0**-11 + 2.0**-25).all()


@settings(max_examples=200, deadline=None)
@given(x=rows)
def test_fp16_scaled_keeps_fp16_relative_precision_at_any_magnitude(x):
    h, scale = fp16_encode_scaled(x)
    y = fp16_decode_scaled(h, scale)
    assert np.isfinite(y).all() and (np.abs(h.astype(np.float32)) <= 2).all()
    err = np.abs(y.astype(np.float64) - x)
    amax = np.abs(x).max(axis=1, keepdims=True).astype(np.float64)
    # fp16 relative rounding of each element, plus the subnormal floor relative to the row's max
    assert (err <= np.abs(x) * 2.0**-11 + amax * 2.0**-24).all()


@pytest.mark.parametrize("stochastic", [False, True])
def test_zero_and_constant_rows_give_no_nan(stochastic):
    x = np.array([[0.0] * 5, [0.7] * 5, [-1e-30] * 5, [1.5 * 2.0**120] * 5, [-0.0] * 5], np.float32)
    rng = np.random.default_rng(0) if stochastic else None
    q, s = int8_encode(x, rng)
    h, hs = fp16_encode_scaled(x, rng)
    for y in (int8_decode(q, s), fp16_decode(fp16_encode(x, rng)), fp16_decode_scaled(h, hs)):
        assert np.isfinite(y).all()
        assert (y[0] == 0).all() and (y[4] == 0).all()
    assert s[0] == 0 and hs[0] == 0
    np.testing.assert_array_equal(int8_decode(q, s)[1], x[1])  # constant rows are exact in int8 (+-127 steps)
    np.testing.assert_array_equal(fp16_decode_scaled(h, hs)[3], x[3])  # beyond fp16's range, exact when scaled


@settings(max_examples=30, deadline=None)
@given(v=st.floats(-0.875, 0.875, allow_nan=False, width=32), seed=st.integers(0, 2**32))
def test_stochastic_rounding_is_unbiased(v, seed):
    """The mean of K stochastic roundings of v is v within 6 standard errors (each rounding errs by < one step,
    so its standard deviation is at most step / 2)."""
    k = 20000
    rng = np.random.default_rng(seed)
    x = np.tile(np.array([[1.0, v]], np.float32), (k, 1))  # the 1.0 pins the int8 scale at 1/127
    q, s = int8_encode(x, rng)
    bound = 6 * (1 / 127) / 2 / np.sqrt(k) + 1e-7
    assert abs(int8_decode(q, s)[:, 1].astype(np.float64).mean() - np.float64(v)) <= bound
    step16 = float(np.spacing(np.float16(max(abs(v), 2.0**-14))))
    for y in (fp16_decode(fp16_encode(x, rng)), fp16_decode_scaled(*fp16_encode_scaled(x, rng))):
        assert abs(y[:, 1].astype(np.float64).mean() - np.float64(v)) <= 6 * step16 / 2 / np.sqrt(k) + 1e-9
