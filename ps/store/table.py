"""One table of a shard: id -> row indirection, per-row metadata, and three tier pools.

Layout (n = rows present, d = dim):
  index      (capacity,) int32   id -> row number + 1, 0 = absent. Direct-mapped: one gather per lookup, no
                                 hashing, no per-row Python. np.zeros maps untouched zero pages lazily, so a 2^31 id
                                 space costs RAM only for the 4 KiB pages that hold a present id.
  row columns (n,)               row_id int32, tier uint8 (0 fp32 / 1 fp16 / 2 int8), slot int32 into that tier's
                                 pool, accum float32 (row-wise Adagrad), c_pos/c_neg uint32 totals (saturating),
                                 last_step uint32 (push step of the last touch), priority float32 (F-Q eq. 7,
                                 as of last_step; decayed lazily, see shark.quant.priority).
  adam columns (Adam tables only) adam_m, adam_v (n, d) float32 moments, adam_t (n,) int64 updates applied to the
                                 row (its own bias-correction clock). Adam rows always stay fp32.
  pools                          fp32 (., d) float32 | fp16 (., d) float16 | int8 (., d) int8 + scale (.,) float32.
Two levels (id -> row -> slot) keep per-row metadata dense and make re-tiering a slot move, not a row renumbering.

Quantization (cfg.quant): new rows go into new_row_tier() (fp32 unless a uniform baseline or F-Q says otherwise);
under "fq" every push updates the touched rows' priorities and every fq_retier_every pushes retier() moves rows to
the tiers the policy gives (shark.quant.tiers), then packs the pools. Every decision depends only on the logical
state (rows, priorities, steps, slots; never on growth slack), so a restored snapshot continues bit-exactly.
"""

from __future__ import annotations

import mmap

import numpy as np

from ps.store.config import TableConfig
from ps.store.idempotency import SeqTracker
from ps.store.pools import Columns, Pool
from shark.quant import (
    TIER_FP16,
    TIER_FP32,
    TIER_INT8,
    TIER_NAMES,
    BudgetPolicy,
    PriorityRule,
    RowBytes,
    TierPolicy,
    default_t16_over_t8,
    fp16_decode,
    fp16_encode,
    int8_decode,
    int8_encode,
)
from shark.quant.stored import StoredRows
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
        self.priority_rule = PriorityRule(cfg.fq_alpha, cfg.fq_beta) if cfg.quant == "fq" else None
        self.tier_policy = TierPolicy(cfg.fq_t8, cfg.fq_t16) if cfg.quant == "fq" else None

    def new_row_tier(self) -> int:
        """The tier a new row (priority 0) starts in: the baseline's for "fp16"/"int8"; under "fq" eq. 8's for
        priority 0 with thresholds, int8 under a budget (the lowest: a row earns precision by being pushed, and
        moves up at the next retier)."""
        q = self.cfg.quant
        if q == "fp16":
            return TIER_FP16
        if q == "int8":
            return TIER_INT8
        if q == "fq":
            return TIER_INT8 if self.cfg.fq_budget_mode else int(self.tier_policy.tiers(np.zeros(1))[0])
        return TIER_FP32

    def _initial(self, ids: np.ndarray) -> np.ndarray:
        """Initial values of new rows as stored: the deterministic init, rounded (nearest) to the new-row tier."""
        c = self.cfg
        v = initial_rows(c.name, ids, c.dim, c.init_scale, c.seed)
        t = self.new_row_tier()
        if t == TIER_FP16:
            return fp16_decode(fp16_encode(v))
        if t == TIER_INT8:
            return int8_decode(*int8_encode(v))
        return v

    # --- rows -------------------------------------------------------------------------------------------------
    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """(N,) valid ids -> (N,) int64 row numbers, -1 where absent."""
        return self.index[ids].astype(np.int64) - 1

    def ensure(self, uniq: np.ndarray) -> np.ndarray:
        """(U,) unique valid ids -> (U,) row numbers, creating absent rows in new_row_tier() with the deterministic
        init (rounded to nearest there)."""
        r = self.lookup(uniq)
        new = r < 0
        k = int(np.count_nonzero(new))
        if k:
            ids = uniq[new]
            rn = self.rows.extend(k)
            tier = self.new_row_tier()
            slots = self.pools[tier].alloc(k)
            c = self.cfg
            self.rows["row_id"][rn] = ids
            self.rows["tier"][rn] = tier
            self.rows["slot"][rn] = slots
            self.index[ids] = (rn + 1).astype(np.int32)
            r[new] = rn
            self.write(rn, initial_rows(c.name, ids, c.dim, c.init_scale, c.seed), None)
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
        out[absent] = self._initial(uniq[absent])
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

    def read_stored(self, r: np.ndarray) -> StoredRows:
        """(N,) row numbers -> the rows in their stored precision (for compressed pulls); decode_stored of the
        result equals read(r) exactly."""
        tier, slot = self.rows["tier"][r], self.rows["slot"][r]
        if not tier.any():
            return StoredRows.all_fp32(self.pools[TIER_FP32].data[slot])
        s16, s8 = slot[tier == TIER_FP16], slot[tier == TIER_INT8]
        i8 = self.pools[TIER_INT8]
        return StoredRows(tier.astype(np.uint8), self.pools[TIER_FP32].data[slot[tier == TIER_FP32]],
                          self.pools[TIER_FP16].data[s16], i8.data[s8], i8.scale[s8])

    def peek_stored(self, uniq: np.ndarray) -> StoredRows:
        """As peek(), in stored precision: absent rows travel as fp32 initial values (the same floats)."""
        r = self.lookup(uniq)
        if not (r < 0).any():
            return self.read_stored(r)
        return StoredRows.all_fp32(self.peek(uniq))

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

    def trim(self) -> None:
        """Drop growth slack only (pools keep their slots, so the logical state is unchanged)."""
        for pool in self.pools:
            pool.trim()
        self.rows.shrink()

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
        """Saturating uint32 totals; under F-Q the eq. 7 priority update; last_step = this push's step.
        r unique rows touched by the push at self.step, c_pos/c_neg their summed counts in it."""
        if self.priority_rule is not None:
            self.rows["priority"][r] = self.priority_rule.touched(self.rows["priority"][r],
                                                                  self.rows["last_step"][r], self.step, c_pos, c_neg)
        for name, add in (("c_pos", c_pos), ("c_neg", c_neg)):
            col = self.rows[name]
            col[r] = np.minimum(col[r].astype(np.int64) + add.astype(np.int64), _U32_MAX).astype(np.uint32)
        self.rows["last_step"][r] = np.uint32(self.step & 0xFFFFFFFF)

    # --- F-Quantization -------------------------------------------------------------------------------------------
    def priorities(self, r: np.ndarray) -> np.ndarray:
        """(N,) row numbers -> their eq. 7 priorities as of the current step (lazy decay applied; not stored)."""
        if self.priority_rule is None:
            return self.rows["priority"][r].copy()
        return self.priority_rule.decayed(self.rows["priority"][r], self.rows["last_step"][r], self.step)

    def row_header_bytes(self) -> int:
        """Bytes every row holds outside its payload, whatever its tier: all row columns (tier tag, slot, row id,
        optimizer state, counters, last step, priority)."""
        return int(sum(a.itemsize * (a.shape[1] if a.ndim == 2 else 1) for a in self.rows.cols.values()))

    def _index_resident(self) -> int:
        page = mmap.PAGESIZE
        ids = self.rows["row_id"][: self.rows.n].astype(np.int64)
        return min(self.index.nbytes, int(np.unique(ids * self.index.itemsize // page).shape[0]) * page)

    def fp32_equivalent_bytes(self) -> int:
        """What the present rows would take all in fp32, packed (no free slots, no growth slack), index included."""
        n = self.rows.n
        return self._index_resident() + n * (self.row_header_bytes() + 4 * self.cfg.dim)

    def budget_bytes(self) -> int:
        """The F-Q byte budget for the present rows (0 = threshold mode)."""
        c = self.cfg
        if c.fq_budget_bytes > 0:
            return c.fq_budget_bytes
        return int(c.fq_budget_fraction * self.fp32_equivalent_bytes())

    def retier(self) -> dict[str, float]:
        """Move every row to the tier the F-Q policy gives its current priority (vectorised), then pack the pools
        when slots were freed (always under a budget, so the bytes really are within it; in threshold mode once
        free slots pass 1/8 of the rows) and drop growth slack if a budget is still exceeded.
        Returns the thresholds used (effective ones under a budget)."""
        n = self.rows.n
        c = self.cfg
        if c.quant != "fq" or n == 0:
            return {}
        r = np.arange(n, dtype=np.int64)
        w = self.priorities(r)
        if c.fq_budget_mode:
            budget = self.budget_bytes()
            ratio = c.fq_t16_ratio if c.fq_t16_ratio > 0 else default_t16_over_t8(c.dim)
            tiers, t8, t16 = BudgetPolicy(budget, ratio).assign(
                w, self._index_resident(), RowBytes(c.dim, self.row_header_bytes()))
        else:
            tiers, t8, t16 = self.tier_policy.tiers(w), c.fq_t8, c.fq_t16
        self.set_tiers(r, tiers)
        free = sum(p.free.shape[0] for p in self.pools)
        if free and (c.fq_budget_mode or 8 * free > n):
            self.compact()
        if c.fq_budget_mode and self.memory_bytes()["total"] > budget:
            self.trim()  # growth slack of the row columns (a logical no-op)
        return {"t8": float(t8), "t16": float(t16)}

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
        index_resident = self._index_resident()
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
        # The same rows all fp32, packed, every per-row byte counted: the denominator of a memory fraction.
        out["fp32_equivalent_total"] = self.fp32_equivalent_bytes()
        return out
