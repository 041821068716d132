"""Ranking helpers: Spearman (with ties), random order, bottom positions."""

from __future__ import annotations

import numpy as np
import pytest

from shark.fperm import FieldScores, average_ranks, bottom_positions, random_scores, spearman, spearman_with


def test_average_ranks_and_spearman_match_scipy_definition():
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])
    assert spearman(np.arange(5), np.arange(5) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)
    a, b = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([2.0, 1.0, 4.0, 3.0, 5.0])
    assert spearman(a, b) == pytest.approx(1 - 6 * 4 / (5 * 24))
    assert np.isnan(spearman(np.ones(3), np.arange(3)))


def test_ranking_random_and_bottom():
    s = FieldScores("t", ("a", "b", "c", "d"), np.array([0.1, 0.5, 0.0, 0.3]))
    assert s.ranking() == ["b", "d", "a", "c"]
    assert bottom_positions(s, ["c", "a"]) == {"c": 0, "a": 1}
    assert spearman_with(s, {"a": 1.0, "b": 3.0, "c": 0.0, "d": 2.0}) == pytest.approx(1.0)
    with pytest.raises(KeyError):
        spearman_with(s, {"a": 1.0})
    r1, r2 = random_scores(s.fields, seed=3), random_scores(s.fields, seed=3)
    assert r1.ranking() == r2.ranking() and sorted(r1.ranking()) == sorted(s.fields)
    assert s.to_json()["ranking"] == s.ranking()
