"""Growable arrays: a storage pool of fixed-width rows with a slot free-list, and growable per-row columns.

Growth doubles capacity (amortised O(1) per row); freed slots are reused before the pool grows, so moving rows
between tiers does not leak. Nothing here loops per row.
"""

from __future__ import annotations

import numpy as np


def _grow(a: np.ndarray, need: int) -> np.ndarray:
    """Return `a` (or a copy with more leading capacity, at least doubled) able to hold `need` leading entries."""
    if need <= a.shape[0]:
        return a
    cap = max(need, 2 * a.shape[0], 16)
    out = np.zeros((cap,) + a.shape[1:], dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


class Pool:
    """Rows of one storage dtype: data (cap, dim), optional per-row scale (cap,) for int8 (uint16 bfloat16 bits:
    2 bytes, see shark.quant.codecs.int8_encode(bf16_scale=True)), and a free-list."""

    def __init__(self, dim: int, dtype: np.dtype, scaled: bool) -> None:
        self.data = np.zeros((0, dim), dtype=dtype)
        self.scale = np.zeros(0, dtype=np.uint16) if scaled else None
        self.free = np.zeros(0, dtype=np.int32)  # stack of reusable slots
        self.top = 0  # slots [0, top) have been handed out at least once

    @property
    def live(self) -> int:
        return self.top - self.free.shape[0]

    def alloc(self, k: int) -> np.ndarray:
        """k slots (int32): reuse freed ones first, then extend."""
        take = min(k, self.free.shape[0])
        reused = self.free[self.free.shape[0] - take:]
        self.free = self.free[: self.free.shape[0] - take].copy()
        fresh = np.arange(self.top, self.top + (k - take), dtype=np.int32)
        self.top += k - take
        self.data = _grow(self.data, self.top)
        if self.scale is not None:
            self.scale = _grow(self.scale, self.top)
        return np.concatenate([reused, fresh])

    def release(self, slots: np.ndarray) -> None:
        self.data[slots] = 0  # keeps freed payload out of snapshots and makes memory comparisons exact
        if self.scale is not None:
            self.scale[slots] = 0
        self.free = np.concatenate([self.free, slots.astype(np.int32)])

    def compact(self, live_slots: np.ndarray) -> None:
        """Keep only live_slots, packed into [0, k) in the given order; drops free slots and growth slack.
        The caller renumbers its rows' slots to arange(k)."""
        self.data = self.data[live_slots]  # fancy indexing copies: exactly k rows
        if self.scale is not None:
            self.scale = self.scale[live_slots]
        self.free = np.zeros(0, dtype=np.int32)
        self.top = int(live_slots.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"data": self.data, "free": self.free}
        if self.scale is not None:
            out["scale"] = self.scale
        return out


class Columns:
    """Named per-row arrays sharing one row count n, grown together. A column is (n,) for a dtype, or (n, width)
    for a (dtype, width) pair (Adam's per-element moments)."""

    def __init__(self, dtypes: dict[str, np.dtype | tuple[np.dtype, int]]) -> None:
        self.cols = {k: np.zeros((0, t[1]), dtype=t[0]) if isinstance(t, tuple) else np.zeros(0, dtype=t)
                     for k, t in dtypes.items()}
        self.n = 0

    def extend(self, k: int) -> np.ndarray:
        """Append k zeroed rows; returns their row numbers (int64)."""
        start = self.n
        self.n += k
        for name, a in self.cols.items():
            self.cols[name] = _grow(a, self.n)
        return np.arange(start, self.n, dtype=np.int64)

    def add(self, name: str, dtype: np.dtype, fill: np.ndarray) -> None:
        """A new (n,) column holding fill (n,) (a table that starts tracking something per row)."""
        cap = max([self.n] + [a.shape[0] for a in self.cols.values()])  # the others' growth capacity
        col = np.zeros(cap, dtype=dtype)
        col[: self.n] = fill
        self.cols[name] = col

    def shrink(self) -> None:
        """Drop growth slack: capacity = n."""
        self.cols = {k: a[: self.n].copy() for k, a in self.cols.items()}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]
