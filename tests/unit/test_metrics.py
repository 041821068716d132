import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, roc_auc_score

from shark.metrics import ScoreLog, auc, logloss


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=2, max_size=300))
def test_auc_matches_sklearn_with_ties(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=np.float64) / 3.0  # few distinct scores: many ties
    if y.min() == y.max():
        assert np.isnan(auc(y, s))
    else:
        assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_large_random_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100_000)
    s = rng.normal(size=y.size) + y * 0.5
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_extremes():
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(y, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert auc(y, np.ones(4)) == 0.5


def test_logloss_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 1000)
    p = rng.uniform(0.01, 0.99, 1000)
    assert logloss(y, p) == pytest.approx(log_loss(y, p), rel=1e-9)


def test_score_log_accumulates_chunks():
    log = ScoreLog()
    log.add(np.array([0, 1]), np.array([0.2, 0.8]))
    log.add(np.array([1, 0]), np.array([0.7, 0.4]))
    s = log.summary()
    assert s["examples"] == 4 and s["auc"] == 1.0 and s["positive_rate"] == 0.5


def test_score_log_curve_windows_cover_the_stream():
    rng = np.random.default_rng(2)
    log = ScoreLog()
    for _ in range(10):
        y = rng.integers(0, 2, 100)
        log.add(y, np.clip(y * 0.6 + rng.random(100) * 0.4, 0, 1))
    curve = log.curve(points=4)
    assert [c["examples"] for c in curve] == [250, 500, 750, 1000]
    y, p = log.arrays()
    assert curve[0]["auc"] == pytest.approx(auc(y[:250], p[:250]))
    ty, tp = log.tail(250)
    np.testing.assert_array_equal(ty, y[-250:])
    np.testing.assert_array_equal(tp, p[-250:])
    assert log.tail(5000)[0].size == 1000
