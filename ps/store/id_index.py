"""IdIndex: a compact id -> row map for sparse (hashed) id spaces, numpy-only, vectorised.

Why not a direct-mapped array over the id space: with hashed ids a shard's rows are spread over the whole space, so
nearly every 4 KiB page of an int32 index is resident even for a table holding a few rows; a 2^18-id table cost
about 1 MiB per shard whatever its size, 123 B per row on the default synthetic run. Here the cost is 8 bytes per
slot (int32 key + int32 row), independent of the id space: the load is kept in (MAX_LOAD / GROWTH, MAX_LOAD] by
growing by GROWTH, and fit() packs it to MAX_LOAD: 10-12.5 B per row. `grows` counts growths (an F-Q budget
re-plans on one).

Layout: a hash table of buckets of BUCKET slots, filled left to right (rows are never removed, so there are no
tombstones); an id lives in its home bucket or, when that is full, in the stash.
Entries that find their home bucket full go to a sorted overflow stash (about 7% of them at load 0.8). A lookup
compares each id with its home bucket's 8 keys in one vectorised pass, then searches the stash (np.searchsorted)
for the ids whose home bucket is full and did not hold them: two passes, whatever the load. The bucket count is any integer
(multiply-shift maps the hash to [0, nb)), so capacity can follow the row count closely.
"""

from __future__ import annotations

import numpy as np

EMPTY = np.int32(-1)
BUCKET = 8
MAX_LOAD = 0.8
GROWTH = 1.25
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class IdIndex:
    def __init__(self, expected: int = 0, buckets: int = 0) -> None:
        self._alloc(buckets if buckets > 0 else self.fitted_buckets(expected))
        self.count = 0
        self.grows = 0

    def _alloc(self, nb: int) -> None:
        self.keys = np.full((nb, BUCKET), EMPTY, dtype=np.int32)
        self.vals = np.zeros((nb, BUCKET), dtype=np.int32)
        self.stash_keys = np.zeros(0, dtype=np.int32)  # sorted
        self.stash_vals = np.zeros(0, dtype=np.int32)
        self._nb = np.uint64(nb)

    @property
    def capacity(self) -> int:
        """Bucket slots (the stash holds the overflow beyond them)."""
        return int(self.keys.size)

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.vals.nbytes + self.stash_keys.nbytes + self.stash_vals.nbytes)

    @staticmethod
    def fitted_buckets(count: int) -> int:
        """The fewest buckets holding count entries at load <= MAX_LOAD (at least 2)."""
        return max(2, -(-count * 5 // (4 * BUCKET)))  # ceil(count / (MAX_LOAD * BUCKET)), in integers

    @property
    def buckets(self) -> int:
        return int(self.keys.shape[0])

    def _home(self, ids: np.ndarray) -> np.ndarray:
        h = (ids.astype(np.uint64) * _GOLDEN) >> np.uint64(32)  # the product's top 32 bits: well mixed
        return ((h * self._nb) >> np.uint64(32)).astype(np.int64)  # in [0, nb)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """(N,) ids in [0, 2^31) -> (N,) int64 rows, -1 where absent."""
        ids = np.asarray(ids)
        b = self._home(ids)
        k = self.keys[b]
        word = (k == ids[:, None]).view(np.uint64)[:, 0]  # BUCKET (8) bools in one word: byte j set = slot j
        hit = word != 0
        # A key is in a bucket at most once, so a hit word is 2^(8j): frexp gives j without any masked indexing.
        j = (np.frexp(word.astype(np.float64))[1] - 1) >> 3
        out = np.where(hit, self.vals.reshape(-1)[b * BUCKET + np.maximum(j, 0)], -1).astype(np.int64)
        if self.stash_keys.size:  # only ids whose home bucket is full can be in the stash
            todo = np.flatnonzero(~hit & (k[:, -1] != EMPTY))
            if todo.size:
                q = ids[todo]
                pos = np.minimum(np.searchsorted(self.stash_keys, q), self.stash_keys.shape[0] - 1)
                found = self.stash_keys[pos] == q
                out[todo[found]] = self.stash_vals[pos[found]]
        return out

    def insert(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Add (N,) unique ids that are absent, mapping to rows (N,)."""
        n = int(ids.shape[0])
        if n == 0:
            return
        if self.count + n > MAX_LOAD * self.capacity:
            self._grow(self.count + n)
        self._place(np.asarray(ids, dtype=np.int32), np.asarray(rows, dtype=np.int32))
        self.count += n

    def _place(self, ids: np.ndarray, rows: np.ndarray) -> None:
        b = self._home(ids)
        order = np.argsort(b, kind="stable")
        ids, rows, b = ids[order], rows[order], b[order]
        start = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])  # first of each run of equal buckets
        rank = np.arange(b.shape[0]) - np.repeat(start, np.diff(np.r_[start, b.shape[0]]))
        slot = (self.keys[b] != EMPTY).sum(axis=1) + rank  # buckets fill left to right
        ok = slot < BUCKET
        self.keys[b[ok], slot[ok]] = ids[ok]
        self.vals[b[ok], slot[ok]] = rows[ok]
        if not ok.all():
            keys = np.concatenate((self.stash_keys, ids[~ok]))
            order = np.argsort(keys, kind="stable")
            self.stash_keys = keys[order]
            self.stash_vals = np.concatenate((self.stash_vals, rows[~ok]))[order]

    def _grow(self, need: int) -> None:
        ids, rows = self.items()
        self._alloc(max(self.fitted_buckets(need), int(self.keys.shape[0] * GROWTH)))
        self._place(ids, rows)
        self.grows += 1

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int32, rows int32) of every entry."""
        occ = self.keys != EMPTY
        return (np.concatenate((self.keys[occ], self.stash_keys)),
                np.concatenate((self.vals[occ], self.stash_vals)))

    def fit(self) -> None:
        """Rebuild with the fewest buckets that keep the load at most MAX_LOAD. (nbytes depends only on the ids and
        the bucket count, whatever the arrival order: an entry goes to the stash only when its home bucket is full,
        so the stash holds sum over buckets of max(0, ids homed there - BUCKET) entries.)"""
        ids, rows = self.items()
        order = np.argsort(ids)
        self._alloc(self.fitted_buckets(self.count))
        self._place(ids[order], rows[order])
