"""Where rows sit in the tiers against how often training touched them: the check that F-Quantization keeps hot
rows precise and cold rows small. Pure numpy; the coordinator reads the training rows, pulls the tiers
(read-only) and hands them here.

A row's accesses are the training examples whose value maps to it. Rows are binned by powers of two of their
accesses (bin k holds [2^k, 2^(k+1))); a bin with more rows than `cap` is represented by a seeded uniform sample of
`cap` of them, so the tier pull stays small while every bin, the few hottest rows included, is measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shark.quant.stored import TIER_ABSENT
from shark.quant.tiers import TIER_NAMES

STATES = (*TIER_NAMES, "absent")  # indexed by tier code


class AccessCounter:
    """Per table, the distinct row ids seen and how often, over (B, T) batches of row ids (column t = table t).
    Batches are merged every `merge_rows` rows, so memory is bounded by the distinct ids, not the rows read."""

    def __init__(self, tables: Sequence[str], merge_rows: int = 1 << 18) -> None:
        self.tables = tuple(tables)
        self.rows = 0
        self._merge_rows = merge_rows
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._ids = [np.zeros(0, np.int64) for _ in self.tables]
        self._counts = [np.zeros(0, np.int64) for _ in self.tables]

    def add(self, ids: np.ndarray) -> None:
        if ids.ndim != 2 or ids.shape[1] != len(self.tables):
            raise ValueError(f"expected (B, {len(self.tables)}) row ids, got {ids.shape}")
        self._pending.append(np.asarray(ids, np.int64))
        self._pending_rows += ids.shape[0]
        self.rows += ids.shape[0]
        if self._pending_rows >= self._merge_rows:
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        block = np.concatenate(self._pending)
        self._pending, self._pending_rows = [], 0
        for t in range(len(self.tables)):
            ids = np.concatenate([self._ids[t], block[:, t]])
            weights = np.concatenate([self._counts[t], np.ones(block.shape[0], np.int64)])
            uniq, inverse = np.unique(ids, return_inverse=True)
            self._ids[t], self._counts[t] = uniq, np.bincount(inverse, weights=weights).astype(np.int64)

    def counts(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{table: ((n,) sorted distinct row ids, (n,) accesses)}."""
        self._merge()
        return {name: (self._ids[t], self._counts[t]) for t, name in enumerate(self.tables)}


def access_bins(accesses: np.ndarray) -> np.ndarray:
    """(n,) accesses >= 1 -> (n,) bin k with 2^k <= accesses < 2^(k+1)."""
    a = np.asarray(accesses, np.int64)
    if a.size and a.min() < 1:
        raise ValueError("accesses must be >= 1")
    return np.floor(np.log2(a)).astype(np.int64)


def sample_by_bin(counted: dict[str, tuple[np.ndarray, np.ndarray]], cap: int, seed: int = 0
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """({table: sorted row ids to pull}, {table: their bins}, (K,) rows per bin over every table before
    sampling). At most `cap` rows per bin over all tables, drawn uniformly."""
    if cap < 1:
        raise ValueError("cap must be >= 1")
    names = list(counted)
    table = np.concatenate([np.full(counted[n][0].size, i, np.int64) for i, n in enumerate(names)]) \
        if names else np.zeros(0, np.int64)
    ids = np.concatenate([counted[n][0] for n in names]) if names else np.zeros(0, np.int64)
    bins = access_bins(np.concatenate([counted[n][1] for n in names])) if names else np.zeros(0, np.int64)
    rows_per_bin = np.bincount(bins, minlength=1) if bins.size else np.zeros(0, np.int64)
    # a random key per row; within each bin keep the `cap` smallest keys: a uniform sample without replacement
    key = np.random.default_rng(seed).random(ids.size)
    order = np.lexsort((key, bins))
    first = np.searchsorted(bins[order], bins[order], side="left")
    keep = order[np.arange(order.size) - first < cap]
    out_ids: dict[str, np.ndarray] = {}
    out_bins: dict[str, np.ndarray] = {}
    for i, n in enumerate(names):
        mine = keep[table[keep] == i]
        mine = mine[np.argsort(ids[mine], kind="stable")]
        if mine.size:
            out_ids[n], out_bins[n] = ids[mine], bins[mine]
    return out_ids, out_bins, rows_per_bin


def tier_fractions(bins: dict[str, np.ndarray], tiers: dict[str, np.ndarray], rows_per_bin: np.ndarray
                   ) -> list[dict[str, Any]]:
    """One entry per non-empty bin: its access range, rows (before sampling), rows measured, and the share of
    the measured rows in each tier (fp32, fp16, int8, absent)."""
    b = np.concatenate([bins[t] for t in bins]) if bins else np.zeros(0, np.int64)
    s = np.concatenate([np.asarray(tiers[t], np.int64) for t in bins]) if bins else np.zeros(0, np.int64)
    if b.shape != s.shape or (s.size and (s.min() < 0 or s.max() > TIER_ABSENT)):
        raise ValueError("tiers must be tier codes, one per sampled row")
    k = rows_per_bin.size
    table = np.bincount(b * len(STATES) + s, minlength=k * len(STATES)).reshape(k, len(STATES))
    out = []
    for i in np.flatnonzero(rows_per_bin):
        measured = int(table[i].sum())
        out.append({"accesses": [int(1 << i), int((1 << (i + 1)) - 1)], "rows": int(rows_per_bin[i]),
                    "measured": measured,
                    **{name: (float(table[i, j]) / measured if measured else 0.0) for j, name in enumerate(STATES)}})
    return out
