"""RowStore: the pure (numpy-only, no grpc/ray) parameter-server state of one shard, several tables.

pull creates rows on first touch (unless create=False); push segment-sums duplicate ids, applies one optimizer step per unique row in
fp32 and writes the result back into the row's tier; (worker_id, seq) makes pushes idempotent per table.
Not thread-safe: the servicer serialises calls per table (or per shard).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ps.store.batch_apply import apply_group, batch_key, read_many, rounding_rng
from ps.store.config import TableConfig
from ps.store.dedup import segment_sum
from ps.store.errors import InvalidRequest, TableExists, UnknownTable
from ps.store.optimizer import adagrad, adam, sgd
from ps.store.snapshot import table_from_arrays, table_to_arrays
from ps.store.table import Table
from ps.store.validation import check_counts, check_grads, check_ids, check_unique, check_worker_seq
from shark.quant.stored import StoredRows

# (table, ids (N,), grads (N, dim) float32, c_pos (N,), c_neg (N,)): one table's share of a push.
PushPart = tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


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
    def pull(self, table: str, ids: np.ndarray, create: bool = True) -> np.ndarray:
        """ids (N,) int -> (N, dim) float32 rows (duplicates allowed). Absent rows get their deterministic initial
        value; create=True also inserts them, create=False (evaluation) leaves the store unchanged."""
        return self.pull_many([(table, ids, create)])[0]

    def pull_many(self, parts: Sequence[tuple[str, np.ndarray, bool]]) -> list[np.ndarray]:
        """[(table, ids, create)] over distinct tables -> their rows, in order. Every part is validated before any
        row is created, so a bad part (unknown table, bad ids) changes nothing."""
        checked = [(t, check_ids(ids, t.cfg.capacity), bool(create))
                   for t, (_, ids, create) in zip(self._distinct_tables(parts, 3), parts)]
        # --- nothing above this line mutates the store ---
        out: list[np.ndarray | None] = [None] * len(checked)
        batch, inverses = [], []  # creating pulls: rows decoded together (batch_apply.read_many)
        for i, (t, ids, create) in enumerate(checked):
            if not create:
                out[i] = self._pull_one(t, ids, False)
                continue
            uniq, inverse = _unique(ids)
            batch.append((t, t.ensure(uniq)))
            inverses.append((i, inverse))
        for (i, inverse), rows in zip(inverses, read_many(batch)):
            out[i] = rows if inverse is None else rows[inverse]
        return out

    def pull_many_stored(self, parts: Sequence[tuple[str, np.ndarray, bool]]) -> list[StoredRows]:
        """As pull_many, with the rows in their stored precision (fp32/fp16/int8 + scales) for compressed pulls.
        ids must be unique (workers deduplicate); validated before any row is created."""
        checked = [(t, check_ids(ids, t.cfg.capacity), bool(create))
                   for t, (_, ids, create) in zip(self._distinct_tables(parts, 3), parts)]
        for _, ids, _ in checked:
            check_unique(ids, "ids of a stored-precision pull")
        # --- nothing above this line mutates the store ---
        return [t.read_stored(t.ensure(ids)) if create else t.peek_stored(ids) for t, ids, create in checked]

    @staticmethod
    def _pull_one(t: Table, ids: np.ndarray, create: bool) -> np.ndarray:
        fetch = (lambda u: t.read(t.ensure(u))) if create else t.peek
        uniq, inverse = _unique(ids)
        return fetch(uniq) if inverse is None else fetch(uniq)[inverse]

    def push(self, table: str, ids: np.ndarray, grads: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray,
             worker_id: int, seq: int) -> PushResult:
        """Apply one push at most once per (worker_id, seq). ids (N,), grads (N, dim) float32, c_pos/c_neg (N,)
        non-negative ints (the batch's positive/negative example counts per id occurrence)."""
        return self.push_many([(table, ids, grads, c_pos, c_neg)], worker_id, seq)

    def push_many(self, parts: Sequence[PushPart], worker_id: int, seq: int) -> PushResult:
        """Apply [(table, ids, grads, c_pos, c_neg)] over distinct tables under one (worker_id, seq). All parts are
        validated (shapes, NaN/Inf, ranges, seq window) before any is applied: one bad part rejects the whole call
        and changes nothing. Idempotency is per table: a part whose table already applied (worker_id, seq) is
        skipped. applied = some part applied; duplicate = none did."""
        check_worker_seq(worker_id, seq)  # also when there are no parts, so a bad call never looks fine
        todo = []
        for t, (_, ids, grads, c_pos, c_neg) in zip(self._distinct_tables(parts, 5), parts):
            ids = check_ids(ids, t.cfg.capacity)
            n = ids.shape[0]
            grads = check_grads(grads, n, t.cfg.dim)
            c_pos, c_neg = check_counts(c_pos, n, "c_pos"), check_counts(c_neg, n, "c_neg")
            if not t.seqs.check(worker_id, seq):  # raises SeqOutOfWindow before anything changes
                todo.append((t, ids, grads, c_pos, c_neg))
        # --- nothing above this line mutates the store ---
        groups: dict[tuple, list] = {}
        for part in todo:  # tables sharing an optimizer step and row width are applied in one batch
            key = batch_key(part[0])
            if key is None:
                _apply(*part)
            else:
                groups.setdefault(key, []).append(part)
        for group in groups.values():
            apply_group(group)
        for t, *_ in todo:
            t.seqs.mark(worker_id, seq)
        return PushResult(applied=bool(todo), duplicate=not todo)

    def assign(self, table: str, ids: np.ndarray, values: np.ndarray) -> None:
        """Set rows to values, creating absent ones, and restart their optimizer state (dense parameters' initial
        values, which only the worker's model knows). ids (N,) unique, values (N, dim) finite float32. Values are
        encoded into each row's tier with nearest rounding, so assigning twice gives the same bytes (idempotent)."""
        t = self._table(table)
        ids = check_ids(ids, t.cfg.capacity)
        check_unique(ids, "assign ids")
        values = check_grads(values, ids.shape[0], t.cfg.dim, "assign values")
        # --- nothing above this line mutates the store ---
        r = t.ensure(ids)
        t.write(r, values, None)
        t.reset_optimizer(r)

    def _distinct_tables(self, parts: Sequence[tuple], width: int) -> list[Table]:
        """The Table of each part (UnknownTable if absent); parts must be width-tuples naming distinct tables,
        because per-table idempotency and one-result-per-part both assume a table appears once."""
        if not isinstance(parts, Sequence) or any(not isinstance(p, tuple) or len(p) != width for p in parts):
            raise InvalidRequest(f"parts must be a sequence of {width}-tuples")
        names = [p[0] for p in parts]
        tables = [self._table(name) for name in names]
        if len(set(names)) != len(names):
            raise InvalidRequest("parts must name distinct tables")
        return tables

    # --- tiers ------------------------------------------------------------------------------------------------
    def set_tiers(self, table: str, ids: np.ndarray, tiers: np.ndarray) -> None:
        """Move present, unique rows to tiers (0 fp32, 1 fp16, 2 int8). Not for MPE tables (their cache decides)."""
        t = self._table(table)
        ids = check_ids(ids, t.cfg.capacity)
        tiers = np.asarray(tiers)
        if tiers.shape != ids.shape or tiers.dtype.kind not in "iu" or (tiers.size and int(tiers.max()) > 2):
            raise InvalidRequest("tiers must be an integer array like ids with values in {0, 1, 2}")
        check_unique(ids, "set_tiers ids")
        r = t.lookup(ids)
        if (r < 0).any():
            raise InvalidRequest("set_tiers ids must be present rows")
        if t.cfg.optimizer == "adam" and tiers.any():
            # Adam tables hold dense parameters: a handful of rows, updated every step, where precision matters.
            raise InvalidRequest("rows of an adam table stay fp32 (tier 0)")
        t.set_tiers(r, tiers.astype(np.uint8))

    def retier(self, table: str) -> dict[str, float]:
        """Re-tier an F-Q table now, or refresh an MPE table's fp32 cache (pushes do it every fq_retier_every); {}
        for other tables. Returns the thresholds used (under a budget, the effective ones) / the cache size."""
        return self._table(table).retier()

    def priorities(self, table: str, ids: np.ndarray) -> np.ndarray:
        """(N,) ids -> (N,) float32 F-Q priorities as of the table's current step (0 for absent rows)."""
        t = self._table(table)
        r = t.lookup(check_ids(ids, t.cfg.capacity))
        out = np.zeros(r.shape[0], dtype=np.float32)
        out[r >= 0] = t.priorities(r[r >= 0])
        return out

    def compact(self, table: str) -> None:
        """Pack the tier pools (after many moves) and drop growth slack; values are unchanged."""
        self._table(table).compact()

    def tiers(self, table: str, ids: np.ndarray) -> np.ndarray:
        """(N,) ids -> (N,) uint8 tier, 255 for absent rows."""
        t = self._table(table)
        r = t.lookup(check_ids(ids, t.cfg.capacity))
        out = np.full(r.shape[0], 255, dtype=np.uint8)
        out[r >= 0] = t.tier_slot(r[r >= 0])[0]
        return out

    # --- accounting and checkpoints ---------------------------------------------------------------------------
    def memory_bytes(self, table: str) -> dict[str, int]:
        return self._table(table).memory_bytes()

    def stats(self, table: str) -> dict[str, int]:
        return self._table(table).stats()

    def ledger(self, table: str) -> dict[int, dict[str, int]]:
        """The table's durable push ledger: per worker key, pushes applied, distinct seqs, highest seq."""
        return self._table(table).seqs.ledger()

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


def _unique(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(unique sorted ids, inverse or None when ids already are sorted unique -- workers dedup, so skip np.unique)."""
    if ids.shape[0] <= 1 or np.all(ids[1:] > ids[:-1]):
        return ids, None
    return np.unique(ids, return_inverse=True)


def _apply(t: Table, ids: np.ndarray, grads: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray) -> None:
    """One validated push into one table: segment-sum, one optimizer step per unique row in fp32, write back into
    each row's tier (F-Q: update the touched rows' priorities, re-tier every fq_retier_every pushes)."""
    cfg = t.cfg
    t.step += 1
    uniq, g, (cp, cn) = segment_sum(ids, grads, c_pos, c_neg)
    r = t.ensure(uniq)
    split = t.tier_groups(r)  # tier groups, shared by the read and the write-back
    w = t.read(r, split)
    if cfg.optimizer == "adagrad":
        w, acc = adagrad(w, t.rows["accum"][r], g, cfg.lr, cfg.eps)
        t.rows["accum"][r] = acc
    elif cfg.optimizer == "adam":
        w, m, v, steps = adam(w, t.rows["adam_m"][r], t.rows["adam_v"][r], t.rows["adam_t"][r], g, cfg.lr,
                              cfg.beta1, cfg.beta2, cfg.eps)
        t.rows["adam_m"][r], t.rows["adam_v"][r], t.rows["adam_t"][r] = m, v, steps
    else:
        w = sgd(w, g, cfg.lr)
    rng = None
    if cfg.rounding == "stochastic" and any(tier != 0 for tier, _, _ in split):
        rng = rounding_rng(cfg.seed, t.step)  # deterministic per (seed, push step), restorable
    t.write(r, w, rng, split)
    t.add_counts(r, cp, cn)  # under F-Q, the touched rows' priorities
    if t.retier_due():
        t.retier()
