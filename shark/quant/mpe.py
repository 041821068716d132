"""The MPE baseline (Yang et al. 2020, mixed-precision embedding with a cache), pure numpy: every row is stored in
a low precision (int8 or fp16), and the most frequently accessed rows (LFU: access counts, no labels, no decay)
also keep an fp32 copy in a cache that serves their reads and takes their updates. The parameter-server row store
(ps.store.table) holds the arrays; this module decides which rows the cache holds and how many fit a byte budget.

The cache is a sorted array of row numbers `cached` (K,) int32 whose i-th entry's fp32 value sits at slot i of the
fp32 pool: membership is a binary search, and the index costs 4 B per cached row (not per row)."""

from __future__ import annotations

import numpy as np

from shark.quant.tiers import TIER_FP16, TIER_FP32, TIER_INT8

CACHE_INDEX_BYTES = 4  # one int32 row number per cached row


def low_tier(mpe_low: str) -> int:
    """The tier every row's stored copy lives in: "int8" or "fp16"."""
    return TIER_INT8 if mpe_low == "int8" else TIER_FP16


def hottest_rows(counts: np.ndarray, k: int) -> np.ndarray:
    """(n,) access counts -> the sorted (<= k,) int64 row numbers of the k most accessed rows; ties go to the lower
    row number (the older row), rows never accessed are never chosen. Deterministic (a restored table re-ranks
    exactly) and O(n): a partition, not a sort."""
    n = counts.shape[0]
    k = min(int(k), int(np.count_nonzero(counts)))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k == n:
        return np.arange(n, dtype=np.int64)
    kth = np.partition(counts, n - k)[n - k]  # the k-th largest count
    above = np.flatnonzero(counts > kth)
    ties = np.flatnonzero(counts == kth)[: k - above.shape[0]]
    return np.sort(np.concatenate([above, ties]))


def cache_rows_for_budget(budget: int, fixed: int, n: int, cached_row_bytes: int) -> int:
    """How many rows the fp32 cache may hold so that fixed + k * cached_row_bytes <= budget, in [0, n].
    fixed: every byte the table holds whatever the cache (the id index, every row's low-precision payload, int8
    scale and per-row columns); cached_row_bytes: what one cached row adds (its fp32 payload and its cache index
    entry). 0 when even an empty cache does not fit (the budget is below MPE's floor)."""
    if n <= 0 or budget <= fixed:
        return 0
    return min(n, (budget - fixed) // cached_row_bytes)


def cache_tier_slot(cached: np.ndarray, r: np.ndarray, low_tier: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) row numbers -> ((N,) uint8 serving tiers, (N,) int64 slots): cached rows read fp32 slot i (their position
    in `cached`), the others their low-precision copy at slot = row number."""
    r = np.asarray(r, dtype=np.int64)
    if cached.shape[0] == 0:
        return np.full(r.shape[0], low_tier, dtype=np.uint8), r
    pos = np.searchsorted(cached, r)
    hit = pos < cached.shape[0]
    hit[hit] = cached[pos[hit]] == r[hit]
    tier = np.where(hit, np.uint8(TIER_FP32), np.uint8(low_tier)).astype(np.uint8)
    return tier, np.where(hit, pos, r)
