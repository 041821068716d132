"""One table of a shard: id -> row indirection, per-row metadata, and three tier pools.

Layout (n = rows present, d = dim):
  index      (capacity,) int32   id -> row number + 1, 0 = absent. Direct-mapped: one gather per lookup, no
                                 hashing, no per-row Python. np.zeros maps untouched zero pages lazily, so a 2^31 id
                                 space costs RAM only for the 4 KiB pages that hold a present id.
  row columns (n,)               row_id int32, tier uint8 (0 fp32 / 1 fp16 / 2 int8), slot int32 into that tier's
                                 pool, accum float32 (row-wise Adagrad), c_pos/c_neg uint32 totals (saturating),
                                 last_step uint32 (push step of the last touch), priority float32 (F-Q, later).
  adam columns (Adam tables only) adam_m, adam_v (n, d) float32 moments, adam_t (n,) int64 updates applied to the
                                 row (its own bias-correction clock). Adam rows always stay fp32.
  pools                          fp32 (., d) float32 | fp16 (., d) float16 | int8 (., d) int8 + scale (.,) float32.
Two levels (id -> row -> slot) keep per-row metadata dense and make re-tiering a slot move, not a row renumbering.
"""

from __future__ import annotations

import mmap

import numpy as np

from ps.store.config import TableConfig
from ps.store.idempotency import SeqTracker
from ps.store.pools import Columns, Pool
from ps.store.quant import (
    TIER_FP16,
    TIER_FP32,
    TIER_INT8,
    TIER_NAMES,
    fp16_decode,
    fp16_encode,
    int8_decode,
    int8_encode,
)
from shark.row_init import initial_rows

ROW_COLUMNS = {"row_id": np.int32, "tier": np.uint8, "slot": np.int32, "accum": np.float32,
               "c_pos": np.uint32, "c_neg": np.uint32, "last_step": np.uint32, "priority": np.float32}
ADAM_COLUMNS = ("adam_m", "adam_v", "adam_t")
_U32_MAX = np.int64(2**32 - 1)


def adam_columns(dim: int) -> dict[str, tuple[np.dtype, int] | np.dtype]:
    return {"adam_m": (np.float32, dim), "adam_v": (np.float32, dim), "adam_t": np.int64}


class Table:
    def __init__(self, cfg: TableConfig, seq_window: int = 4096) -> None:
        self.cfg = cfg
        self.index = np.zeros(cfg.capacity, dtype=np.int32)
        # Adam state lives in the same Columns as the row metadata so it grows, shrinks and compacts with it.
        self.rows = Columns({**ROW_COLUMNS, **(adam_columns(cfg.dim) if cfg.optimizer == "adam" else {})})
        self.pools = [Pool(cfg.dim, np.float32, False), Pool(cfg.dim, np.float16, False),
                      Pool(cfg.dim, np.int8, True)]
        self.step = 0  # pushes applied to this table (the F-Q "batch" clock)
        self.seqs = SeqTracker(seq_window)

    # --- rows -------------------------------------------------------------------------------------------------
    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """(N,) valid ids -> (N,) int64 row numbers, -1 where absent."""
        return self.index[ids].astype(np.int64) - 1

    def ensure(self, uniq: np.ndarray) -> np.ndarray:
        """(U,) unique valid ids -> (U,) row numbers, creating absent rows in fp32 with the deterministic init."""
        r = self.lookup(uniq)
        new = r < 0
        k = int(np.count_nonzero(new))
        if k:
            ids = uniq[new]
            rn = self.rows.extend(k)
            slots = self.pools[TIER_FP32].alloc(k)
            c = self.cfg
            self.pools[TIER_FP32].data[slots] = initial_rows(c.name, ids, c.dim, c.init_scale, c.seed)
            self.rows["row_id"][rn] = ids
            self.rows["tier"][rn] = TIER_FP32
            self.rows["slot"][rn] = slots
            self.index[ids] = (rn + 1).astype(np.int32)
            r[new] = rn
        return r

    def peek(self, uniq: np.ndarray) -> np.ndarray:
        """(U,) unique valid ids -> (U, d) float32 values without creating rows: absent ids get the initial value
        that ensure() would give them, so a read-only pull sees exactly what a creating pull would."""
        r = self.lookup(uniq)
        absent = r < 0
        if not absent.any():
            return self.read(r)
        out = np.empty((uniq.shape[0], self.cfg.dim), dtype=np.float32)
        out[~absent] = self.read(r[~absent])
        c = self.cfg
        out[absent] = initial_rows(c.name, uniq[absent], c.dim, c.init_scale, c.seed)
        return out

    def reset_optimizer(self, r: np.ndarray) -> None:
        """Rows r start their optimizer afresh (Adagrad accumulator 0; Adam moments 0 and step count 0)."""
        self.rows["accum"][r] = 0
        if self.cfg.optimizer == "adam":
            for k in ADAM_COLUMNS:
                self.rows[k][r] = 0

    def read(self, r: np.ndarray) -> np.ndarray:
        """(N,) row numbers -> (N, d) float32 values, decoded from each row's tier."""
        tier, slot = self.rows["tier"][r], self.rows["slot"][r]
        if not tier.any():  # all fp32: the common case while F-Q is off
            return self.pools[TIER_FP32].data[slot]
        out = np.empty((r.shape[0], self.cfg.dim), dtype=np.float32)
        for t, pool in enumerate(self.pools):  # 3 tiers, not rows
            m = tier == t
            if m.any():
                s = slot[m]
                if t == TIER_FP32:
                    out[m] = pool.data[s]
                elif t == TIER_FP16:
                    out[m] = fp16_decode(pool.data[s])
                else:
                    out[m] = int8_decode(pool.data[s], pool.scale[s])
        return out

    def write(self, r: np.ndarray, values: np.ndarray, rng: np.random.Generator | None) -> None:
        """Store (N, d) float32 values into rows r, encoded into each row's current tier (rng None = nearest)."""
        tier, slot = self.rows["tier"][r], self.rows["slot"][r]
        if not tier.any():  # all fp32
            self.pools[TIER_FP32].data[slot] = values
            return
        for t, pool in enumerate(self.pools):
            m = tier == t
            if not m.any():
                continue
            s, v = slot[m], values[m]
            if t == TIER_FP32:
                pool.data[s] = v
            elif t == TIER_FP16:
                pool.data[s] = fp16_encode(v, rng)
            else:
                pool.data[s], pool.scale[s] = int8_encode(v, rng)

    def set_tiers(self, r: np.ndarray, tiers: np.ndarray) -> None:
        """Move unique rows r to tiers (uint8): decode, free the old slots, allocate in the new pools, re-encode
        with nearest rounding (so an int8 move errs by at most scale/2)."""
        move = self.rows["tier"][r] != tiers
        r, tiers = r[move], tiers[move]
        if r.shape[0] == 0:
            return
        values = self.read(r)
        old_tier, old_slot = self.rows["tier"][r], self.rows["slot"][r]
        for t, pool in enumerate(self.pools):
            pool.release(old_slot[old_tier == t])
        for t, pool in enumerate(self.pools):
            m = tiers == t
            if m.any():
                self.rows["slot"][r[m]] = pool.alloc(int(np.count_nonzero(m)))
        self.rows["tier"][r] = tiers
        self.write(r, values, None)

    def compact(self) -> None:
        """Release freed slots and growth slack (pools only ever grow between compactions)."""
        n = self.rows.n
        tier, slot = self.rows["tier"][:n], self.rows["slot"][:n]
        for t, pool in enumerate(self.pools):
            rows_t = np.flatnonzero(tier == t)
            pool.compact(slot[rows_t])
            slot[rows_t] = np.arange(rows_t.shape[0], dtype=np.int32)
        self.rows.shrink()

    def add_counts(self, r: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray) -> None:
        """Saturating uint32 totals; last_step = this push's step."""
        for name, add in (("c_pos", c_pos), ("c_neg", c_neg)):
            col = self.rows[name]
            col[r] = np.minimum(col[r].astype(np.int64) + add.astype(np.int64), _U32_MAX).astype(np.uint32)
        self.rows["last_step"][r] = np.uint32(self.step & 0xFFFFFFFF)

    # --- accounting -------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        n = self.rows.n
        counts = np.bincount(self.rows["tier"][:n], minlength=3)
        return {"rows": n, **{f"rows_{name}": int(counts[t]) for t, name in enumerate(TIER_NAMES)},
                "step": self.step}

    def memory_bytes(self) -> dict[str, int]:
        """Every byte this table holds, from the arrays (allocated capacity, growth slack included)."""
        cols = self.rows.cols
        n, d = self.rows.n, self.cfg.dim
        # The index is mostly untouched zero pages: count the pages that hold a present id (resident) and
        # report the virtual size separately.
        page = mmap.PAGESIZE
        ids = self.rows["row_id"][:n].astype(np.int64)
        index_resident = min(self.index.nbytes, int(np.unique(ids * self.index.itemsize // page).shape[0]) * page)
        out = {f"payload_{name}": pool.data.nbytes for name, pool in zip(TIER_NAMES, self.pools)}
        out.update({
            "int8_scales": self.pools[TIER_INT8].scale.nbytes,
            "free_lists": sum(p.free.nbytes for p in self.pools),
            "tier_tags": cols["tier"].nbytes,
            "slots": cols["slot"].nbytes + cols["row_id"].nbytes,
            "index": index_resident,
            "optimizer_state": cols["accum"].nbytes + sum(cols[k].nbytes for k in ADAM_COLUMNS if k in cols),
            "counters": cols["c_pos"].nbytes + cols["c_neg"].nbytes + cols["last_step"].nbytes,
            "priorities": cols["priority"].nbytes,
        })
        out["total"] = sum(out.values())
        out["index_virtual"] = self.index.nbytes
        # The paper's view: the live rows' values only, and the same rows all in fp32.
        out["payload_bytes"] = sum(p.live * d * p.data.itemsize for p in self.pools)
        out["payload_bytes_fp32"] = n * d * 4
        return out
