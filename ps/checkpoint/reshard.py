"""Restore a checkpoint written by S_old shards onto a cluster of S_new shards ("save with 4, restore with 3").

`read_resharded(directory, tag, old_shards, new_index, new_shards)` reads every old shard's checkpoint through
read_shard_checkpoint (manifest, sizes and sha256 verified, safetensors only, never pickle) and keeps, per table,
exactly the rows ShardRouter(new_shards) routes to `new_index` (worker.client.routing: the rule every client of the
new cluster will use; the dense table `__dense__` is routed the same way by its row index). Every new shard gets
every table of the checkpoint (possibly with no rows), so table creation stays a no-op as in a same-size restore.

Per row everything table_to_arrays carries goes along unchanged: the value in its stored tier (fp32 row, fp16 row,
int8 row + bfloat16 scale bits, bit-for-bit, never re-encoded), Adagrad accum, Adam m/v and step count, F-Q
priority. Pools are repacked (slots renumbered per tier, no free slots). Table-level clocks are merged:
  step        the largest of the old shards' (each old shard counted only the pushes it received; the new table's
              clock must not run behind any of its rows' sources). It only seeds stochastic rounding and the
              retier cadence, neither of which can replay the old layout's pushes anyway.
  F-Q epoch   = that step. Each old shard's priorities are first re-referenced to its own step (its rows' current
              eq. 7 values, renormalised as a retier does); a shard whose epoch already was its step keeps its
              float16 priorities bit-for-bit.
  id index    sized for the merged rows (no grow pending).
MPE tables: every row's low-precision copy (int8 + scale, or fp16), its access count and whether it is cached go
along; a cached row's fp32 copy too. The merged cache is the kept cached rows (a shard's next refresh re-ranks it
for its own budget); the low pool holds every row at slot = row, the fp32 pool the cached rows in row order.
Idempotency windows (per-worker seq high-water marks) are NOT carried over: a resharded restore starts a new cluster
whose clients push under new worker ids from seq 0 (a same-size rollback does the same), and an old window would
be wrong anyway, since it recorded which of a worker's pushes reached one OLD shard, not the rows a new shard holds.

Vectorised: numpy masks over whole tables; the only Python loops are over old shards, tables and the 3 tiers.
Importing this module loads worker.client (and so grpc): it is not exported from ps.checkpoint, whose import stays
free of grpc.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ps.checkpoint.manifest import CheckpointError
from ps.checkpoint.reader import read_shard_checkpoint
from ps.store.config import TableConfig
from ps.store.errors import InvalidRequest
from ps.store.row_store import RowStore
from ps.store.snapshot import FORMAT_VERSION
from ps.store.table import ADAM_COLUMNS
from shark.quant import TIER_FP32, TIER_INT8, TIER_NAMES, PriorityRule
from shark.quant.mpe import cache_tier_slot, low_tier
from shark.quant.priority import EpochPriorities
from worker.client.routing import ShardRouter

# Per-row arrays of a (format 2) table snapshot; everything else is a pool, a free-list or a table-level value.
_ROW_KEYS = ("row_id", "tier", "slot", "accum", "priority", *ADAM_COLUMNS)
# Everything else a snapshot may hold; a key outside both (a table layout added later, e.g. a new quant mode's
# per-table state) is refused rather than silently dropped.
_MPE_KEYS = ("mpe_access", "mpe_cached")
_TABLE_KEYS = {*_MPE_KEYS, "format_version", "step", "dim", "capacity", "priority_epoch", "int8_scale", "index_buckets",
               "index_grows_pending", "seq_workers", "seq_hw", "seq_above", "seq_count",
               *(f"{name}_{part}" for name in TIER_NAMES for part in ("data", "free"))}
_SEQ_EMPTY = {"seq_workers": np.zeros(0, np.int64), "seq_hw": np.zeros(0, np.int64),
              "seq_above": np.zeros((0, 2), np.int64), "seq_count": np.zeros(0, np.int64)}


def shard_name(i: int) -> str:
    """An old shard's folder in the checkpoint (as ps.actor.shard_name)."""
    return f"shard-{i}"


@dataclass(frozen=True)
class _Part:
    """One old shard's rows of one table that the new shard keeps: per-row arrays, per-tier payload rows in row
    order (int8 with their scales), and the old table's clock."""
    rows: dict[str, np.ndarray]
    payload: tuple[np.ndarray, np.ndarray, np.ndarray]
    int8_scale: np.ndarray
    step: int


def _check_count(value: object, what: str, lo: int, end: int | None = None) -> int:
    """value as an int in [lo, end) (end None: unbounded), else ValueError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or \
            (end is not None and value >= end):
        raise ValueError(f"{what} must be an int in [{lo}, {end if end is not None else 'inf'}), got {value!r}")
    return int(value)


def read_resharded(directory: str | Path, tag: str, old_shards: int, new_index: int, new_shards: int,
                   seq_window: int | None = None) -> RowStore:
    """A new RowStore with the rows of checkpoint `tag` (written by `old_shards` shards, shard-0 .. shard-{S-1})
    that ShardRouter(new_shards) routes to shard `new_index`. seq_window: the old manifests' unless given.
    Any unreadable or inconsistent old shard raises CheckpointError (naming it) and nothing is returned."""
    old_shards = _check_count(old_shards, "old_shards", 1)
    new_shards = _check_count(new_shards, "new_shards", 1)
    new_index = _check_count(new_index, "new_index", 0, new_shards)
    router = ShardRouter(new_shards)
    configs: dict[str, TableConfig] = {}
    parts: dict[str, list[_Part]] = {}
    window = seq_window
    for i in range(old_shards):
        old = read_shard_checkpoint(directory, shard_name(i), tag=tag)  # verified, all-or-nothing
        if window is None:
            window = old.seq_window
        for name in old.table_names():
            cfg = old.config(name)
            if configs.setdefault(name, cfg) != cfg:
                raise CheckpointError(f"{directory}/{tag}/{shard_name(i)}: table {name!r} has another "
                                      "configuration than in the lower-numbered shards")
            arrays = old.snapshot(name)
            unknown = sorted(set(arrays) - _TABLE_KEYS - set(_ROW_KEYS))
            if unknown:
                raise CheckpointError(f"{directory}/{tag}/{shard_name(i)}: table {name!r} (quant {cfg.quant!r}) "
                                      f"has state resharding does not know how to split: {unknown}")
            parts.setdefault(name, []).append(_keep(cfg, arrays, router, new_index))
        del old  # one old shard in memory at a time
    store = RowStore(seq_window=window)
    for name, cfg in configs.items():
        try:
            store.restore_table(cfg, _merge(cfg, parts[name]))
        except InvalidRequest as exc:  # cannot happen for verified inputs; name the checkpoint if it does
            raise CheckpointError(f"{directory}/{tag}: table {name!r} cannot be resharded: {exc}") from None
    return store


def _keep(cfg: TableConfig, a: dict[str, np.ndarray], router: ShardRouter, new_index: int) -> _Part:
    """The rows of one old shard's snapshot `a` (format 2, as snapshot() writes) that route to new_index."""
    keep = router.route(cfg.name, a["row_id"]) == new_index
    if cfg.quant == "mpe":
        return _keep_mpe(cfg, a, keep)
    rows = {k: a[k][keep] for k in _ROW_KEYS if k in a}
    step = int(a["step"])
    if "priority" in rows:
        gap = step - int(a["priority_epoch"])
        if gap:  # re-reference to this shard's own step: the merged table's epoch is "now" for every row
            rule = EpochPriorities(PriorityRule(cfg.fq_alpha, cfg.fq_beta))
            rows["priority"] = rule.renormalised(rows["priority"], gap)
    tier, slot = rows["tier"], rows["slot"]
    payload = tuple(a[f"{name}_data"][slot[tier == t]] for t, name in enumerate(TIER_NAMES))
    scale = a["int8_scale"][slot[tier == TIER_INT8]]
    return _Part(rows, payload, scale, step)  # type: ignore[arg-type]


def _keep_mpe(cfg: TableConfig, a: dict[str, np.ndarray], keep: np.ndarray) -> _Part:
    """An MPE table's kept rows: per row its low copy (at slot = row in the old table), access count and cache
    flag (rows["cached"], bool); payload[0] holds the cached rows' fp32 copies in row order, payload[low] every
    kept row's low copy."""
    low = low_tier(cfg.mpe_low)
    kept = np.flatnonzero(keep)
    cached = a["mpe_cached"].astype(np.int64)
    is_cached = np.isin(kept, cached, assume_unique=True)
    fp32 = a["fp32_data"][np.searchsorted(cached, kept[is_cached])]  # cache position = fp32 slot
    payload = [np.zeros((0, cfg.dim), dt) for dt in (np.float32, np.float16, np.int8)]
    payload[TIER_FP32], payload[low] = fp32, a[f"{TIER_NAMES[low]}_data"][kept]
    scale = a["int8_scale"][kept] if low == TIER_INT8 else np.zeros(0, np.uint16)
    rows = {"row_id": a["row_id"][kept], "accum": a["accum"][kept], "mpe_access": a["mpe_access"][kept],
            "cached": is_cached}
    return _Part(rows, tuple(payload), scale, int(a["step"]))  # type: ignore[arg-type]


def _merge(cfg: TableConfig, parts: list[_Part]) -> dict[str, np.ndarray]:
    """One format-2 snapshot of the kept rows of every old shard, in (old shard, old row) order, pools packed."""
    out: dict[str, np.ndarray] = {k: np.concatenate([p.rows[k] for p in parts]) for k in parts[0].rows}
    step = max(p.step for p in parts)
    for t, name in enumerate(TIER_NAMES):
        out[f"{name}_data"] = np.concatenate([p.payload[t] for p in parts])
        out[f"{name}_free"] = np.zeros(0, np.int32)
    out["int8_scale"] = np.concatenate([p.int8_scale for p in parts])
    if cfg.quant == "mpe":  # the serving tier/slot: fp32 at the cache position for cached rows, else the low copy
        cached = np.flatnonzero(out.pop("cached")).astype(np.int32)
        out["mpe_cached"] = cached
        out["tier"], slot = cache_tier_slot(cached, np.arange(out["row_id"].shape[0]),
                                                    low_tier(cfg.mpe_low))
        out["slot"] = slot.astype(np.int32)
    else:
        tier = out["tier"]
        slot = np.empty(tier.shape[0], np.int32)
        for t in range(len(TIER_NAMES)):
            at = np.flatnonzero(tier == t)
            slot[at] = np.arange(at.shape[0], dtype=np.int32)  # the rows of tier t, in merged order = pool order
        out["slot"] = slot
    out.update({"format_version": np.array(FORMAT_VERSION, np.int64), "step": np.array(step, np.int64),
                "dim": np.array(cfg.dim, np.int64), "capacity": np.array(cfg.capacity, np.int64)})
    if "priority" in out:
        out["priority_epoch"] = np.array(step, np.int64)
    out.update({k: v.copy() for k, v in _SEQ_EMPTY.items()})
    return out
