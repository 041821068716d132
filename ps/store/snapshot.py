"""Table <-> dict of plain numpy arrays (for a checkpoint writer to store in a no-pickle format).

Pools are saved as they are (tiers, slots, free-lists, int8 scales), so a restore is bit-exact, not re-encoded.
Every table saves row_id, tier and slot per row (derived for untiered tables) so one validation covers all; the
id index is rebuilt from row_id. restore validates everything before building the table.
Format 2 (the slim layout): int8 scales as bfloat16 bits, F-Q priorities as float16 against priority_epoch, no
click counters or last steps. MPE tables add their access counts and cache rows (mpe_access, mpe_cached); their
tier/slot are the serving ones (fp32 for cached rows), and every row's low copy sits at slot = row.
Format 1 snapshots are converted on restore: priorities decayed to the snapshot's step, int8 rows whose float32
scale is not a bfloat16 value re-encoded (nearest).
"""

from __future__ import annotations

import numpy as np

from ps.store.config import TableConfig
from ps.store.errors import InvalidRequest
from ps.store.id_index import BUCKET, MAX_LOAD, IdIndex
from ps.store.idempotency import SeqTracker
from ps.store.table import ADAM_COLUMNS, Table
from shark.quant import TIER_INT8, TIER_NAMES, PriorityRule, int8_decode, int8_encode
from shark.quant.codecs import bf16_bits, bf16_value

FORMAT_VERSION = 2


def table_to_arrays(t: Table) -> dict[str, np.ndarray]:
    n = t.rows.n
    out = {"format_version": np.array(FORMAT_VERSION, dtype=np.int64), "step": np.array(t.step, dtype=np.int64),
           "dim": np.array(t.cfg.dim, dtype=np.int64), "capacity": np.array(t.cfg.capacity, dtype=np.int64)}
    tier, slot = t.tier_slot(np.arange(n, dtype=np.int64))
    out.update({"row_id": t.row_ids().astype(np.int32), "tier": tier, "slot": slot.astype(np.int32)})
    # Every table's snapshot carries accum (zeros without Adagrad): one file layout for all optimizers.
    out["accum"] = t.rows["accum"][:n].copy() if "accum" in t.rows.cols else np.zeros(n, np.float32)
    if "priority" in t.rows.cols:
        out["priority"] = t.rows["priority"][:n].copy()
        out["priority_epoch"] = np.array(t.prio_epoch, dtype=np.int64)
    if t.mpe:
        out["mpe_access"] = t.rows["access"][:n].copy()
        out["mpe_cached"] = t.cached.copy()
    if t.cfg.optimizer == "adam":  # other tables carry no Adam arrays
        out.update({k: t.rows[k][:n].copy() for k in ADAM_COLUMNS})
    for name, pool in zip(TIER_NAMES, t.pools):
        out[f"{name}_data"] = pool.data[: pool.top].copy()
        out[f"{name}_free"] = pool.free.copy()
    out["int8_scale"] = t.pools[TIER_INT8].scale[: t.pools[TIER_INT8].top].copy()
    # The index's size decides when it next grows (and, under an F-Q budget, when an early retier comes), so a
    # restored table keeps it; its layout is rebuilt from row_id.
    out["index_buckets"] = np.array(t.index.buckets, dtype=np.int64)
    out["index_grows_pending"] = np.array(int(t.index.grows != t.index_grows_seen), dtype=np.int64)
    out.update(t.seqs.to_arrays())
    return out


def _get(arrays: dict[str, np.ndarray], key: str, dtype: np.dtype, ndim: int) -> np.ndarray:
    if key not in arrays:
        raise InvalidRequest(f"snapshot lacks {key!r}")
    a = np.asarray(arrays[key])
    if a.dtype != np.dtype(dtype) or a.ndim != ndim:
        raise InvalidRequest(f"snapshot {key!r}: want {np.dtype(dtype)} with {ndim} dims, got {a.dtype} {a.shape}")
    return a


def table_from_arrays(cfg: TableConfig, arrays: dict[str, np.ndarray], seq_window: int) -> Table:
    g = lambda k, dt, nd: _get(arrays, k, dt, nd)
    version = int(g("format_version", np.int64, 0))
    if version not in (1, FORMAT_VERSION):
        raise InvalidRequest(f"unsupported snapshot format_version {version}")
    if int(g("dim", np.int64, 0)) != cfg.dim or int(g("capacity", np.int64, 0)) != cfg.capacity:
        raise InvalidRequest("snapshot dim/capacity differ from the config")
    step = int(g("step", np.int64, 0))
    cols = {"row_id": g("row_id", np.int32, 1), "tier": g("tier", np.uint8, 1), "slot": g("slot", np.int32, 1)}
    cols["accum"] = g("accum", np.float32, 1)
    if version == 1:  # float32 priorities with a last step each
        cols["priority"], cols["last_step"] = g("priority", np.float32, 1), g("last_step", np.uint32, 1)
    elif cfg.quant == "fq":
        cols["priority"] = g("priority", np.float16, 1)
    n = cols["row_id"].shape[0]
    if any(c.shape[0] != n for c in cols.values()):
        raise InvalidRequest("snapshot row columns differ in length")
    rid = cols["row_id"]
    if n and (int(rid.min()) < 0 or int(rid.max()) >= cfg.capacity or np.unique(rid).shape[0] != n):
        raise InvalidRequest("snapshot row_id must be unique and within capacity")
    if n and int(cols["tier"].max()) > 2:
        raise InvalidRequest("snapshot tier must be 0, 1 or 2")
    mpe = cfg.quant == "mpe"
    if mpe:
        access, cached = g("mpe_access", np.uint32, 1), g("mpe_cached", np.int32, 1)
        _check_mpe(cfg, n, cols["tier"], cols["slot"], access, cached,
                   [arrays.get(f"{name}_data") for name in TIER_NAMES],
                   [arrays.get(f"{name}_free") for name in TIER_NAMES])
    datas, frees = [], []
    for t, (name, dt) in enumerate(zip(TIER_NAMES, (np.float32, np.float16, np.int8))):
        data, free = g(f"{name}_data", dt, 2), g(f"{name}_free", np.int32, 1)
        top = data.shape[0]
        if data.shape[1] != cfg.dim:
            raise InvalidRequest(f"snapshot {name}_data has the wrong dim")
        # MPE pools are checked by _check_mpe (the low pool holds every row, not only the uncached ones).
        used = np.arange(top) if mpe else np.concatenate([cols["slot"][cols["tier"] == t], free])
        # Every slot below top is either one row's or free, exactly once.
        if used.shape[0] != top or (top and (int(used.min()) < 0 or np.unique(used).shape[0] != top
                                             or int(used.max()) >= top)):
            raise InvalidRequest(f"snapshot {name} slots and free-list are inconsistent")
        if dt != np.int8 and not np.isfinite(data).all():
            raise InvalidRequest(f"snapshot {name}_data has NaN/Inf")
        datas.append(data)
        frees.append(free)
    if version == 1:
        scale32 = g("int8_scale", np.float32, 1)
        if not np.isfinite(scale32).all() or (scale32 < 0).any():
            raise InvalidRequest("snapshot int8_scale is inconsistent")
        datas[TIER_INT8], scale = _int8_to_bf16_scales(datas[TIER_INT8], scale32)
    else:
        scale = g("int8_scale", np.uint16, 1)
        if not np.isfinite(bf16_value(scale)).all() or (scale >= 0x8000).any():  # sign bit: negative
            raise InvalidRequest("snapshot int8_scale is inconsistent")
    if scale.shape[0] != datas[TIER_INT8].shape[0]:
        raise InvalidRequest("snapshot int8_scale is inconsistent")
    if any(not np.isfinite(cols[k]).all() for k in ("accum", "priority") if k in cols):
        raise InvalidRequest("snapshot optimizer state or priorities have NaN/Inf")
    epoch = step
    if cfg.quant == "fq":
        if version == 1:  # decay every priority to the snapshot's step, which becomes the epoch
            w = PriorityRule(cfg.fq_alpha, cfg.fq_beta).decayed(cols["priority"], cols["last_step"], step)
            cols["priority"] = np.minimum(w, 65504).astype(np.float16)
        else:
            epoch = int(g("priority_epoch", np.int64, 0))
            if not 0 <= step - epoch:
                raise InvalidRequest("snapshot priority_epoch is after its step")
    else:
        cols.pop("priority", None)
    cols.pop("last_step", None)
    if cfg.optimizer != "adagrad":
        cols.pop("accum", None)
    adam = {}
    if cfg.optimizer == "adam":
        adam = {"adam_m": g("adam_m", np.float32, 2), "adam_v": g("adam_v", np.float32, 2),
                "adam_t": g("adam_t", np.int64, 1)}
        if adam["adam_m"].shape != (n, cfg.dim) or adam["adam_v"].shape != (n, cfg.dim) or \
                adam["adam_t"].shape != (n,):
            raise InvalidRequest("snapshot adam state does not match the rows")
        if not np.isfinite(adam["adam_m"]).all() or not np.isfinite(adam["adam_v"]).all() or \
                (adam["adam_v"] < 0).any() or (adam["adam_t"] < 0).any():
            raise InvalidRequest("snapshot adam state has NaN/Inf or negative entries")
        if n and int(cols["tier"].max()) != 0:
            raise InvalidRequest("snapshot of an adam table has non-fp32 rows")
    elif any(k in arrays for k in ADAM_COLUMNS):
        raise InvalidRequest(f"snapshot has adam state but the table's optimizer is {cfg.optimizer!r}")
    seq = {"seq_workers": g("seq_workers", np.int64, 1), "seq_hw": g("seq_hw", np.int64, 1),
           "seq_above": g("seq_above", np.int64, 2)}
    if "seq_count" in arrays:  # absent in snapshots from before the durable ledger
        seq["seq_count"] = g("seq_count", np.int64, 1)
        if seq["seq_count"].shape != seq["seq_workers"].shape or (seq["seq_count"] < 0).any():
            raise InvalidRequest("snapshot seq_count does not match seq_workers")
    if seq["seq_hw"].shape != seq["seq_workers"].shape or seq["seq_above"].shape[1:] != (2,):
        raise InvalidRequest("snapshot seq arrays are inconsistent")

    buckets = int(g("index_buckets", np.int64, 0)) if "index_buckets" in arrays else 0
    if not (buckets == 0 or n <= MAX_LOAD * BUCKET * buckets <= 2**31):
        raise InvalidRequest("snapshot index_buckets cannot hold its rows")
    pending = int(g("index_grows_pending", np.int64, 0)) if "index_grows_pending" in arrays else 0

    # --- validated: build ---
    table = Table(cfg, seq_window)
    table.step, table.prio_epoch = step, epoch
    rn = table.rows.extend(n)
    tier, slot = cols.pop("tier"), cols.pop("slot")
    for k, c in {**cols, **adam}.items():
        if k != "row_id":
            table.rows[k][rn] = c
    if mpe:
        table.rows["access"][rn] = access
        table.cached = cached.copy()
    elif table.tiered or (tier != table.base_tier).any() or not np.array_equal(slot, rn):
        table._make_tiered()
        table._set_loc(rn, tier, slot)
    table.index = IdIndex(n, buckets=buckets)
    table.index.insert(rid, rn)
    table.index_grows_seen = table.index.grows - (1 if pending else 0)
    for pool, data, free in zip(table.pools, datas, frees):
        pool.data, pool.free, pool.top = data.copy(), free.copy(), data.shape[0]
    table.pools[TIER_INT8].scale = scale.copy()
    table.seqs = SeqTracker.from_arrays(seq, seq_window)
    return table


def _check_mpe(cfg: TableConfig, n: int, tier: np.ndarray, slot: np.ndarray, access: np.ndarray,
               cached: np.ndarray, datas: list, frees: list) -> None:
    """An MPE snapshot: cached rows sorted, unique and present; the low pool holds exactly the n rows, the fp32
    pool exactly the cached ones, the third pool nothing, no free slots; tier/slot the serving ones they imply."""
    from shark.quant.mpe import cache_tier_slot, low_tier

    low = low_tier(cfg.mpe_low)
    if access.shape[0] != n:
        raise InvalidRequest("snapshot mpe_access differs in length from the rows")
    k = cached.shape[0]
    if k and (int(cached[0]) < 0 or int(cached[-1]) >= n or (k > 1 and not (np.diff(cached) > 0).all())):
        raise InvalidRequest("snapshot mpe_cached must be sorted unique rows")
    want = {0: k, low: n, 3 - low: 0}  # the pools are 0 fp32, 1 fp16, 2 int8
    for t, want_rows in want.items():
        d, f = datas[t], frees[t]
        if d is None or f is None or np.asarray(d).ndim != 2 or np.asarray(d).shape[0] != want_rows \
                or np.asarray(f).shape != (0,):
            raise InvalidRequest(f"snapshot {TIER_NAMES[t]} pool does not match an mpe table's layout")
    t2, s2 = cache_tier_slot(cached, np.arange(n), low)
    if not (np.array_equal(t2, tier) and np.array_equal(s2, slot)):
        raise InvalidRequest("snapshot tier/slot disagree with mpe_cached")


def _int8_to_bf16_scales(data: np.ndarray, scale32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Format 1's float32 int8 scales as bfloat16 bits; rows whose scale is not a bfloat16 value are re-encoded
    (nearest, from their float32 decoding)."""
    bits = bf16_bits(scale32)
    redo = bf16_value(bits) != scale32
    if redo.any():
        data = data.copy()
        q, s = int8_encode(int8_decode(data[redo], scale32[redo]), bf16_scale=True)
        data[redo], bits[redo] = q, bf16_bits(s)
    return data, bits
