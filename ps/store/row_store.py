"""RowStore: the pure (numpy-only, no grpc/ray) parameter-server state of one shard, several tables.

pull creates rows on first touch; push segment-sums duplicate ids, applies one optimizer step per unique row in
fp32 and writes the result back into the row's tier; (worker_id, seq) makes pushes idempotent per table.
Not thread-safe: the servicer serialises calls per table (or per shard).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ps.store.config import TableConfig
from ps.store.dedup import segment_sum
from ps.store.errors import InvalidRequest, TableExists, UnknownTable
from ps.store.optimizer import adagrad, sgd
from ps.store.snapshot import table_from_arrays, table_to_arrays
from ps.store.table import Table
from ps.store.validation import check_counts, check_grads, check_ids


@dataclass(frozen=True)
class PushResult:
    applied: bool
    duplicate: bool


class RowStore:
    def __init__(self, seq_window: int = 4096) -> None:
        self.seq_window = seq_window  # out-of-order pushes tolerated per worker, and the idempotency set's bound
        self._tables: dict[str, Table] = {}

    # --- tables -----------------------------------------------------------------------------------------------
    def create_table(self, cfg: TableConfig) -> None:
        if not isinstance(cfg, TableConfig):
            raise InvalidRequest("create_table needs a TableConfig")
        if cfg.name in self._tables:
            raise TableExists(f"table {cfg.name!r} exists")
        self._tables[cfg.name] = Table(cfg, self.seq_window)

    def drop_table(self, name: str) -> None:
        self._table(name)
        del self._tables[name]  # its arrays go with it

    def has_table(self, name: str) -> bool:
        return name in self._tables

    def table_names(self) -> list[str]:
        return sorted(self._tables)

    def config(self, name: str) -> TableConfig:
        return self._table(name).cfg

    def _table(self, name: str) -> Table:
        t = self._tables.get(name) if isinstance(name, str) else None
        if t is None:
            raise UnknownTable(f"no table {name!r}")
        return t

    # --- data path --------------------------------------------------------------------------------------------
    def pull(self, table: str, ids: np.ndarray) -> np.ndarray:
        """ids (N,) int -> (N, dim) float32 rows (duplicates allowed); absent rows are created with their init."""
        t = self._table(table)
        ids = check_ids(ids, t.cfg.capacity)
        if ids.shape[0] <= 1 or np.all(ids[1:] > ids[:-1]):  # sorted unique (workers dedup): skip np.unique
            return t.read(t.ensure(ids))
        uniq, inverse = np.unique(ids, return_inverse=True)
        return t.read(t.ensure(uniq))[inverse]

    def push(self, table: str, ids: np.ndarray, grads: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray,
             worker_id: int, seq: int) -> PushResult:
        """Apply one push at most once per (worker_id, seq). ids (N,), grads (N, dim) float32, c_pos/c_neg (N,)
        non-negative ints (the batch's positive/negative example counts per id occurrence)."""
        t = self._table(table)
        cfg = t.cfg
        ids = check_ids(ids, cfg.capacity)
        n = ids.shape[0]
        grads = check_grads(grads, n, cfg.dim)
        c_pos, c_neg = check_counts(c_pos, n, "c_pos"), check_counts(c_neg, n, "c_neg")
        if t.seqs.check(worker_id, seq):
            return PushResult(applied=False, duplicate=True)
        # --- nothing above this line mutates the store ---
        t.step += 1
        uniq, g, (cp, cn) = segment_sum(ids, grads, c_pos, c_neg)
        r = t.ensure(uniq)
        w = t.read(r)
        if cfg.optimizer == "adagrad":
            w, acc = adagrad(w, t.rows["accum"][r], g, cfg.lr, cfg.eps)
            t.rows["accum"][r] = acc
        else:
            w = sgd(w, g, cfg.lr)
        rng = None
        if cfg.rounding == "stochastic" and t.rows["tier"][r].any():
            rng = np.random.default_rng([cfg.seed, t.step])  # deterministic per (seed, push step), restorable
        t.write(r, w, rng)
        t.add_counts(r, cp, cn)
        t.seqs.mark(worker_id, seq)
        return PushResult(applied=True, duplicate=False)

    # --- tiers ------------------------------------------------------------------------------------------------
    def set_tiers(self, table: str, ids: np.ndarray, tiers: np.ndarray) -> None:
        """Move present, unique rows to tiers (0 fp32, 1 fp16, 2 int8)."""
        t = self._table(table)
        ids = check_ids(ids, t.cfg.capacity)
        tiers = np.asarray(tiers)
        if tiers.shape != ids.shape or tiers.dtype.kind not in "iu" or (tiers.size and int(tiers.max()) > 2):
            raise InvalidRequest("tiers must be an integer array like ids with values in {0, 1, 2}")
        if np.unique(ids).shape[0] != ids.shape[0]:
            raise InvalidRequest("set_tiers ids must be unique")
        r = t.lookup(ids)
        if (r < 0).any():
            raise InvalidRequest("set_tiers ids must be present rows")
        t.set_tiers(r, tiers.astype(np.uint8))

    def compact(self, table: str) -> None:
        """Pack the tier pools (after many moves) and drop growth slack; values are unchanged."""
        self._table(table).compact()

    def tiers(self, table: str, ids: np.ndarray) -> np.ndarray:
        """(N,) ids -> (N,) uint8 tier, 255 for absent rows."""
        t = self._table(table)
        r = t.lookup(check_ids(ids, t.cfg.capacity))
        return np.where(r >= 0, t.rows["tier"][np.maximum(r, 0)], 255).astype(np.uint8)

    # --- accounting and checkpoints ---------------------------------------------------------------------------
    def memory_bytes(self, table: str) -> dict[str, int]:
        return self._table(table).memory_bytes()

    def stats(self, table: str) -> dict[str, int]:
        return self._table(table).stats()

    def snapshot(self, table: str) -> dict[str, np.ndarray]:
        """Plain arrays (copies), no pickle: everything needed to restore the table bit-exactly."""
        return table_to_arrays(self._table(table))

    def restore_table(self, cfg: TableConfig, arrays: dict[str, np.ndarray]) -> None:
        """Add a table from snapshot arrays (validated first; nothing changes if they are inconsistent)."""
        if not isinstance(cfg, TableConfig):
            raise InvalidRequest("restore_table needs a TableConfig")
        if cfg.name in self._tables:
            raise TableExists(f"table {cfg.name!r} exists")
        self._tables[cfg.name] = table_from_arrays(cfg, arrays, self.seq_window)
