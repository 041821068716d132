"""Feature transforms: raw values -> model inputs.

Dense: signed log1p, so heavy-tailed counts become O(1) and Criteo's occasional negatives (I2 = -1) stay finite.
Categorical: the hashing trick, one row-id space per table with its own capacity; tables use different seeds so
the same raw key lands on unrelated rows in different tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shark.data.batch import Batch, RawBatch
from shark.data.hashing import mix64


def log_transform(dense: np.ndarray) -> np.ndarray:
    """(B, D) raw -> (B, D) float32: sign(x) * log(1 + |x|), missing (NaN) -> 0."""
    x = np.nan_to_num(np.asarray(dense, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return (np.sign(x) * np.log1p(np.abs(x))).astype(np.float32)


@dataclass(frozen=True)
class FeatureTransform:
    capacities: tuple[int, ...]  # rows per categorical table, in column order
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.capacities:
            raise ValueError("FeatureTransform needs at least one categorical table")
        bad = [c for c in self.capacities if int(c) < 1 or int(c) > 2**40]
        if bad:
            raise ValueError(f"table capacity must be in [1, 2^40], got {bad[0]}")

    @staticmethod
    def uniform(n_tables: int, capacity: int, seed: int = 0) -> "FeatureTransform":
        return FeatureTransform(capacities=(int(capacity),) * n_tables, seed=seed)

    @property
    def n_tables(self) -> int:
        return len(self.capacities)

    def table_ids(self, keys: np.ndarray) -> np.ndarray:
        """(B, C) uint64 keys -> (B, C) int64 row ids, column t in [0, capacities[t])."""
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.ndim != 2 or keys.shape[1] != self.n_tables:
            raise ValueError(f"expected keys of shape (B, {self.n_tables}), got {keys.shape}")
        salts = mix64(np.arange(self.n_tables, dtype=np.uint64) + np.uint64(self.seed) * np.uint64(1_000_003))
        h = mix64(keys ^ salts[None, :])
        caps = np.asarray(self.capacities, dtype=np.uint64)[None, :]
        return (h % caps).astype(np.int64)

    def __call__(self, raw: RawBatch) -> Batch:
        return Batch(labels=raw.labels.astype(np.float32, copy=False), dense=log_transform(raw.dense),
                     ids=self.table_ids(raw.keys))
