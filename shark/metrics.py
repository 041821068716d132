"""Exact evaluation metrics for click prediction."""

from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC by ranks (Mann-Whitney U), ties get their average rank.

    labels: (N,) 0/1; scores: (N,) any monotone score. Returns NaN when only one class is present.
    """
    y = np.asarray(labels).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # Average rank for each run of tied scores: ranks are 1-based positions in sorted order.
    run_start = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
    run_id = np.cumsum(run_start) - 1
    starts = np.flatnonzero(run_start)
    ends = np.r_[starts[1:], s.size]
    avg_rank = (starts + ends + 1) / 2.0  # mean of positions start+1 .. end
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = avg_rank[run_id]
    rank_sum_pos = ranks[y].sum()
    return float((rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities, clipped to [eps, 1-eps]."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), eps, 1.0 - eps)
    if y.size == 0:
        return float("nan")
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


class ScoreLog:
    """Accumulates (label, probability) pairs over a stream, for exact AUC at the end.

    Keeps float32 arrays in chunks (8 bytes per example), never a Python list of numbers.
    """

    def __init__(self) -> None:
        self._labels: list[np.ndarray] = []
        self._probs: list[np.ndarray] = []
        self.count = 0

    def add(self, labels: np.ndarray, probs: np.ndarray) -> None:
        self._labels.append(np.asarray(labels, dtype=np.float32).reshape(-1))
        self._probs.append(np.asarray(probs, dtype=np.float32).reshape(-1))
        self.count += self._labels[-1].size

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._labels:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        return np.concatenate(self._labels), np.concatenate(self._probs)

    def tail(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The last n (labels, probabilities), touching only the chunks that hold them."""
        ys, ps, k = [], [], 0
        for y, p in zip(reversed(self._labels), reversed(self._probs)):
            if k >= n:
                break
            ys.append(y)
            ps.append(p)
            k += y.size
        if not ys:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        return np.concatenate(ys[::-1])[-n:], np.concatenate(ps[::-1])[-n:]

    def summary(self) -> dict[str, float]:
        y, p = self.arrays()
        return {
            "examples": int(y.size),
            "auc": auc(y, p) if y.size else float("nan"),
            "logloss": logloss(y, p),
            "positive_rate": float(y.mean()) if y.size else float("nan"),
            "mean_prediction": float(p.mean()) if p.size else float("nan"),
        }

    def curve(self, points: int = 20) -> list[dict[str, float]]:
        """Progressive metrics over consecutive windows of the stream (how the online model improved).

        Up to `points` equal windows; each reports the examples seen at its end and its own AUC and logloss."""
        y, p = self.arrays()
        if y.size == 0:
            return []
        edges = np.unique(np.linspace(0, y.size, min(points, y.size) + 1).astype(np.int64))
        return [{"examples": int(hi), "auc": auc(y[lo:hi], p[lo:hi]), "logloss": logloss(y[lo:hi], p[lo:hi])}
                for lo, hi in zip(edges[:-1], edges[1:])]

