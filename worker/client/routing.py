"""Which shard owns a row: ``shard = mix64(salt(table) ^ id) % S``, vectorised over a whole batch.

The salt is the stable FNV-1a hash of the table name (shark.data.hashing), so every process, worker and restart
agrees on the layout, and two tables' rows with equal ids land on unrelated shards (no hot shard for id 0).
"""

from __future__ import annotations

import numpy as np

from shark.data.hashing import hash_strings, mix64

__all__ = ["ShardRouter"]


class ShardRouter:
    """Routes (table, row id) pairs to one of ``num_shards`` shards. Thread-safe (the salt cache only grows)."""

    def __init__(self, num_shards: int) -> None:
        if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
            raise ValueError(f"num_shards must be an int >= 1, got {num_shards!r}")
        self.num_shards = num_shards
        self._salts: dict[str, np.uint64] = {}

    def salt(self, table: str) -> np.uint64:
        """The table's 64-bit salt (cached per name)."""
        s = self._salts.get(table)
        if s is None:
            if not isinstance(table, str) or not table:
                raise ValueError(f"table name must be a non-empty str, got {table!r}")
            s = np.uint64(hash_strings(np.array([table], dtype=object))[0])
            self._salts[table] = s
        return s

    def route(self, table: str, ids: np.ndarray) -> np.ndarray:
        """(n,) integer ids -> (n,) int64 shard indices in [0, num_shards)."""
        a = _as_ids(ids)
        if self.num_shards == 1:
            return np.zeros(a.shape[0], dtype=np.int64)
        keys = a.astype(np.uint64) ^ self.salt(table)
        return (mix64(keys) % np.uint64(self.num_shards)).astype(np.int64)

    def split(self, table: str, ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per shard s: (positions into ``ids`` (int64, ascending), ``ids[positions]``). Empty arrays for a shard
        that owns none of them; the positions of all shards together are a permutation of range(n)."""
        a = _as_ids(ids)
        if self.num_shards == 1:
            return [(np.arange(a.shape[0], dtype=np.int64), a)]
        shard = self.route(table, a)
        order = np.argsort(shard, kind="stable")  # stable: positions stay ascending within a shard
        bounds = np.concatenate(([0], np.cumsum(np.bincount(shard, minlength=self.num_shards))))
        out = []
        for s in range(self.num_shards):  # a loop over shards, not rows
            pos = order[bounds[s]:bounds[s + 1]]
            out.append((pos, a[pos]))
        return out


def _as_ids(ids: np.ndarray) -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim != 1 or (a.dtype.kind not in "iu" and a.size):
        raise ValueError(f"ids must be a 1-D integer array, got dtype {a.dtype} shape {a.shape}")
    return a.astype(np.int64, copy=False)
