"""Table <-> dict of plain numpy arrays (for a checkpoint writer to store in a no-pickle format).

Pools are saved as they are (tiers, slots, free-lists, int8 scales), so a restore is bit-exact, not re-encoded.
The id index is rebuilt from row_id. restore validates everything before building the table.
"""

from __future__ import annotations

import numpy as np

from ps.store.config import TableConfig
from ps.store.errors import InvalidRequest
from ps.store.idempotency import SeqTracker
from ps.store.table import ADAM_COLUMNS, ROW_COLUMNS, Table
from shark.quant import TIER_INT8, TIER_NAMES

FORMAT_VERSION = 1


def table_to_arrays(t: Table) -> dict[str, np.ndarray]:
    n = t.rows.n
    out = {"format_version": np.array(FORMAT_VERSION, dtype=np.int64), "step": np.array(t.step, dtype=np.int64),
           "dim": np.array(t.cfg.dim, dtype=np.int64), "capacity": np.array(t.cfg.capacity, dtype=np.int64)}
    out.update({k: t.rows[k][:n].copy() for k in ROW_COLUMNS})
    if t.cfg.optimizer == "adam":  # other tables carry no Adam arrays, so their snapshots are as before
        out.update({k: t.rows[k][:n].copy() for k in ADAM_COLUMNS})
    for name, pool in zip(TIER_NAMES, t.pools):
        out[f"{name}_data"] = pool.data[: pool.top].copy()
        out[f"{name}_free"] = pool.free.copy()
    out["int8_scale"] = t.pools[TIER_INT8].scale[: t.pools[TIER_INT8].top].copy()
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
    if int(g("format_version", np.int64, 0)) != FORMAT_VERSION:
        raise InvalidRequest("unsupported snapshot format_version")
    if int(g("dim", np.int64, 0)) != cfg.dim or int(g("capacity", np.int64, 0)) != cfg.capacity:
        raise InvalidRequest("snapshot dim/capacity differ from the config")
    cols = {k: g(k, dt, 1) for k, dt in ROW_COLUMNS.items()}
    n = cols["row_id"].shape[0]
    if any(c.shape[0] != n for c in cols.values()):
        raise InvalidRequest("snapshot row columns differ in length")
    rid = cols["row_id"]
    if n and (int(rid.min()) < 0 or int(rid.max()) >= cfg.capacity or np.unique(rid).shape[0] != n):
        raise InvalidRequest("snapshot row_id must be unique and within capacity")
    if n and int(cols["tier"].max()) > 2:
        raise InvalidRequest("snapshot tier must be 0, 1 or 2")
    datas, frees = [], []
    for t, (name, dt) in enumerate(zip(TIER_NAMES, (np.float32, np.float16, np.int8))):
        data, free = g(f"{name}_data", dt, 2), g(f"{name}_free", np.int32, 1)
        top = data.shape[0]
        if data.shape[1] != cfg.dim:
            raise InvalidRequest(f"snapshot {name}_data has the wrong dim")
        used = np.concatenate([cols["slot"][cols["tier"] == t], free])
        # Every slot below top is either one row's or free, exactly once.
        if used.shape[0] != top or (top and (int(used.min()) < 0 or np.unique(used).shape[0] != top
                                             or int(used.max()) >= top)):
            raise InvalidRequest(f"snapshot {name} slots and free-list are inconsistent")
        if dt != np.int8 and not np.isfinite(data).all():
            raise InvalidRequest(f"snapshot {name}_data has NaN/Inf")
        datas.append(data)
        frees.append(free)
    scale = g("int8_scale", np.float32, 1)
    if scale.shape[0] != datas[TIER_INT8].shape[0] or not np.isfinite(scale).all() or (scale < 0).any():
        raise InvalidRequest("snapshot int8_scale is inconsistent")
    if not np.isfinite(cols["accum"]).all() or not np.isfinite(cols["priority"]).all():
        raise InvalidRequest("snapshot optimizer state or priorities have NaN/Inf")
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
    if seq["seq_hw"].shape != seq["seq_workers"].shape or seq["seq_above"].shape[1:] != (2,):
        raise InvalidRequest("snapshot seq arrays are inconsistent")
    step = int(g("step", np.int64, 0))

    # --- validated: build ---
    table = Table(cfg, seq_window)
    table.step = step
    rn = table.rows.extend(n)
    for k, c in {**cols, **adam}.items():
        table.rows[k][rn] = c
    table.index[rid] = (rn + 1).astype(np.int32)
    for pool, data, free in zip(table.pools, datas, frees):
        pool.data, pool.free, pool.top = data.copy(), free.copy(), data.shape[0]
    table.pools[TIER_INT8].scale = scale.copy()
    table.seqs = SeqTracker.from_arrays(seq, seq_window)
    return table
