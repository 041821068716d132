"""Rankings: random order (the floor baseline), Spearman correlation, agreement with a known truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from shark.fperm.scores import FieldScores


def random_scores(fields: Sequence[str], seed: int = 0) -> FieldScores:
    """A random field order, as scores (a seeded permutation of 1..F)."""
    rng = np.random.default_rng(seed)
    return FieldScores(f"random-{seed}", tuple(fields), rng.permutation(len(fields)).astype(np.float64) + 1.0)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x ascending; ties get their average rank."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    start = np.r_[True, xs[1:] != xs[:-1]]
    run = np.cumsum(start) - 1
    starts = np.flatnonzero(start)
    ends = np.r_[starts[1:], x.size]
    ranks = np.empty(x.size)
    ranks[order] = ((starts + ends + 1) / 2.0)[run]
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson on average ranks, so ties are handled); NaN if either is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.shape != rb.shape:
        raise ValueError(f"shapes differ: {ra.shape} vs {rb.shape}")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def spearman_with(scores: FieldScores, truth: Mapping[str, float]) -> float:
    """Spearman of the scores against true importances, on the scored fields (all must be in `truth`)."""
    missing = [f for f in scores.fields if f not in truth]
    if missing:
        raise KeyError(f"no true importance for {missing}")
    return spearman(scores.scores, np.array([truth[f] for f in scores.fields]))


def bottom_positions(scores: FieldScores, names: Sequence[str]) -> dict[str, int]:
    """How far from the bottom each named field ranks: 0 = least important of all."""
    ranking = scores.ranking()[::-1]
    return {n: ranking.index(n) for n in names}
