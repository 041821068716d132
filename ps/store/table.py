"""One table of a shard: id -> row indirection, per-row metadata, and three tier pools.

Layout (n = rows present, d = dim); every per-row byte is one the table's method needs, nothing more:
  index      IdIndex (ps.store.id_index): id -> row number, a hash map of int32 keys and rows (8 B a slot, load
             <= 0.8), compact whatever the id space. The row -> id direction is derived from it (snapshots).
  row columns (n,)  accum float32 (row-wise Adagrad tables only)
                    loc uint32 (tiered tables only: F-Q, or after set_tiers moved a row): tier << 30 | slot in that
                              tier's pool (0 fp32 / 1 fp16 / 2 int8). Untiered tables (fp32, uniform fp16/int8)
                              keep every row in one pool at slot = row number, so they store no tier and no slot.
                    priority float16 (F-Q only): eq. 7 against a shared epoch (shark.quant.priority.EpochPriorities;
                              no per-row last step).
                    access uint32 (MPE only): pushes that touched the row (LFU count, saturating).
  mpe cache  (MPE only) cached (K,) int32 sorted row numbers with an fp32 copy at fp32-pool slot = position;
             every row's low-precision copy sits at slot = row number of the fp16 or int8 pool (shark.quant.mpe).
  adam columns (Adam tables only) adam_m, adam_v (n, d) float32 moments, adam_t (n,) int64 updates applied to the
                                 row (its own bias-correction clock). Adam rows always stay fp32.
  pools      fp32 (., d) float32 | fp16 (., d) float16 | int8 (., d) int8 + scale (.,) uint16 bfloat16 bits.
Two levels (id -> row -> slot) keep per-row metadata dense and make re-tiering a slot move, not a row renumbering.

Quantization (cfg.quant): new rows go into new_row_tier() (fp32 unless a uniform baseline or F-Q says otherwise);
under "fq" every push updates the touched rows' priorities and every fq_retier_every pushes retier() moves rows to
the tiers the policy gives (shark.quant.tiers), then packs the pools. Under "mpe" every push counts the touched
rows and every fq_retier_every pushes retier() refreshes the fp32 cache (mpe_refresh). Every decision depends only
on the logical state (rows, priorities, access counts, steps, epoch, slots; never on growth slack), so a restored
snapshot continues bit-exactly.
"""

from __future__ import annotations

import numpy as np

from ps.store.config import TableConfig
from ps.store.errors import InvalidRequest
from ps.store.id_index import IdIndex
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
from shark.quant.codecs import bf16_bits, bf16_value
from shark.quant.mpe import CACHE_INDEX_BYTES, cache_rows_for_budget, cache_tier_slot, hottest_rows, low_tier
from shark.quant.priority import EpochPriorities
from shark.quant.stored import StoredRows
from shark.row_init import initial_rows

ADAM_COLUMNS = ("adam_m", "adam_v", "adam_t")
LOC_SHIFT = 30  # loc = tier << 30 | slot
SLOT_MASK = (1 << LOC_SHIFT) - 1
ACCESS_MAX = np.iinfo(np.uint32).max
_EVICT_SALT = 0x9E3779B97F4A7C15  # MPE write-backs draw from another stream than the push of the same step


def rounding_rng(seed: int, step: int) -> np.random.Generator:
    """The stochastic-rounding stream of one table's push: deterministic per (seed, push step), so a restored
    table continues bit-exactly. Philox keyed directly (counter-based): ~5x cheaper to set up than default_rng's
    SeedSequence, which cost more than the rounding itself with one stream per table and push."""
    return np.random.Generator(np.random.Philox(key=(seed << 64) | (step & 0xFFFFFFFFFFFFFFFF)))


def adam_columns(dim: int) -> dict[str, tuple[np.dtype, int] | np.dtype]:
    return {"adam_m": (np.float32, dim), "adam_v": (np.float32, dim), "adam_t": np.int64}


def row_columns(cfg: TableConfig) -> dict[str, tuple[np.dtype, int] | np.dtype]:
    """The per-row columns a table of this config starts with (loc may be added later by set_tiers)."""
    cols: dict[str, tuple[np.dtype, int] | np.dtype] = {}
    if cfg.optimizer == "adagrad":
        cols["accum"] = np.float32
    if cfg.optimizer == "adam":
        cols.update(adam_columns(cfg.dim))
    if cfg.quant == "fq":
        cols["loc"] = np.uint32
        cols["priority"] = np.float16
    if cfg.quant == "mpe":
        cols["access"] = np.uint32
    return cols


def fp32_row_bytes(cfg: TableConfig) -> int:
    """What one row costs the fp32 method's store (quant "none", same optimizer) outside the index: payload and
    optimizer state only."""
    extra = {"adagrad": 4, "sgd": 0, "adam": 8 * cfg.dim + 8}[cfg.optimizer]
    return 4 * cfg.dim + extra


class Table:
    def __init__(self, cfg: TableConfig, seq_window: int = 4096) -> None:
        self.cfg = cfg
        self.index = IdIndex()
        # Adam state lives in the same Columns as the row metadata so it grows, shrinks and compacts with it.
        self.rows = Columns(row_columns(cfg))
        self.pools = [Pool(cfg.dim, np.float32, False), Pool(cfg.dim, np.float16, False),
                      Pool(cfg.dim, np.int8, True)]
        self.step = 0  # pushes applied to this table (the F-Q "batch" clock)
        self.seqs = SeqTracker(seq_window)
        self.priority_rule = PriorityRule(cfg.fq_alpha, cfg.fq_beta) if cfg.quant == "fq" else None
        self.epoch_rule = EpochPriorities(self.priority_rule) if self.priority_rule is not None else None
        self.prio_epoch = 0  # the step stored priorities refer to (F-Q)
        self.tier_policy = TierPolicy(cfg.fq_t8, cfg.fq_t16) if cfg.quant == "fq" else None
        self.index_grows_seen = 0  # index.grows at the last retier
        self.mpe = cfg.quant == "mpe"
        self.cached = np.zeros(0, dtype=np.int32)  # MPE: sorted rows with an fp32 copy (fp32 slot = position)
        self.base_tier = self.new_row_tier()  # the one tier of an untiered table

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
        if q == "mpe":  # every row's stored copy; the fp32 cache is extra
            return low_tier(self.cfg.mpe_low)
        return TIER_FP32

    @property
    def tiered(self) -> bool:
        return "loc" in self.rows.cols

    def tier_slot(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,) row numbers -> ((N,) uint8 tiers, (N,) int64 slots). MPE: the tier that serves the row (fp32 when
        cached)."""
        if self.mpe:
            return cache_tier_slot(self.cached, r, self.base_tier)
        if not self.tiered:
            return np.full(r.shape[0], self.base_tier, dtype=np.uint8), np.asarray(r, dtype=np.int64)
        loc = self.rows["loc"][r]
        return (loc >> np.uint32(LOC_SHIFT)).astype(np.uint8), (loc & np.uint32(SLOT_MASK)).astype(np.int64)

    def _set_loc(self, r: np.ndarray, tiers: np.ndarray, slots: np.ndarray) -> None:
        self.rows["loc"][r] = (tiers.astype(np.uint32) << np.uint32(LOC_SHIFT)) | slots.astype(np.uint32)

    def _make_tiered(self) -> None:
        """An untiered table starts storing each row's tier and slot (its rows are about to move)."""
        if not self.tiered:
            n = self.rows.n
            self.rows.add("loc", np.uint32, (np.uint32(self.base_tier) << np.uint32(LOC_SHIFT))
                          | np.arange(n, dtype=np.uint32))

    def tier_groups(self, r: np.ndarray) -> list[tuple[int, np.ndarray | None, np.ndarray]]:
        """Rows r grouped by tier: [(tier, positions in r or None for all of them, slots)], one group per tier
        present, computed once per request and shared by its read and write."""
        tier, slot = self.tier_slot(r)
        if not self.tiered and not self.mpe:
            return [(self.base_tier, None, slot)]
        counts = np.bincount(tier, minlength=3)
        if counts.max() == r.shape[0]:
            return [(int(np.argmax(counts)), None, slot)]
        out = []
        for t in range(3):
            if counts[t]:
                pos = np.flatnonzero(tier == t)
                out.append((t, pos, slot[pos]))
        return out

    def _initial(self, ids: np.ndarray) -> np.ndarray:
        """Initial values of new rows as stored: the deterministic init, rounded (nearest) to the new-row tier."""
        c = self.cfg
        v = initial_rows(c.name, ids, c.dim, c.init_scale, c.seed)
        t = self.new_row_tier()
        if t == TIER_FP16:
            return fp16_decode(fp16_encode(v))
        if t == TIER_INT8:
            return int8_decode(*int8_encode(v, bf16_scale=True))
        return v

    # --- rows -------------------------------------------------------------------------------------------------
    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """(N,) valid ids -> (N,) int64 row numbers, -1 where absent."""
        return self.index.lookup(ids)

    def row_ids(self) -> np.ndarray:
        """(n,) int64: the id of each row (from the index)."""
        keys, rows = self.index.items()
        out = np.zeros(self.rows.n, dtype=np.int64)
        out[rows] = keys
        return out

    def ensure(self, uniq: np.ndarray) -> np.ndarray:
        """(U,) unique valid ids -> (U,) row numbers, creating absent rows in new_row_tier() with the deterministic
        init (rounded to nearest there)."""
        r = self.lookup(uniq)
        new = r < 0
        k = int(np.count_nonzero(new))
        if k:
            ids = uniq[new]
            tier = self.new_row_tier() if self.tiered else self.base_tier
            if self.pools[tier].top + k > SLOT_MASK + 1:
                raise InvalidRequest(f"table {self.cfg.name!r}: more than 2^30 rows in one tier")
            rn = self.rows.extend(k)
            slots = self.pools[tier].alloc(k)
            if self.tiered:
                self._set_loc(rn, np.full(k, tier, np.uint8), slots)
            self.index.insert(ids, rn)
            r[new] = rn
            c = self.cfg
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
        if "accum" in self.rows.cols:
            self.rows["accum"][r] = 0
        if self.cfg.optimizer == "adam":
            for k in ADAM_COLUMNS:
                self.rows[k][r] = 0

    def read(self, r: np.ndarray, split: list | None = None) -> np.ndarray:
        """(N,) row numbers -> (N, d) float32 values, decoded from each row's tier (split: tier_groups(r), if known)."""
        split = self.tier_groups(r) if split is None else split
        if len(split) == 1 and split[0][0] == TIER_FP32:  # all fp32: the common case while F-Q is off
            return self.pools[TIER_FP32].data[split[0][2]]
        out = np.empty((r.shape[0], self.cfg.dim), dtype=np.float32)
        for t, pos, s in split:  # at most 3 tiers, not rows
            pool = self.pools[t]
            if t == TIER_FP32:
                v = pool.data[s]
            elif t == TIER_FP16:
                v = fp16_decode(pool.data[s])
            else:
                v = int8_decode(pool.data[s], bf16_value(pool.scale[s]))
            if pos is None:
                return v
            out[pos] = v
        return out

    def read_stored(self, r: np.ndarray) -> StoredRows:
        """(N,) row numbers -> the rows in their stored precision (for compressed pulls); decode_stored of the
        result equals read(r) exactly."""
        tier, slot = self.tier_slot(r)
        if not tier.any():
            return StoredRows.all_fp32(self.pools[TIER_FP32].data[slot])
        s16, s8 = slot[tier == TIER_FP16], slot[tier == TIER_INT8]
        i8 = self.pools[TIER_INT8]
        return StoredRows(tier.astype(np.uint8), self.pools[TIER_FP32].data[slot[tier == TIER_FP32]],
                          self.pools[TIER_FP16].data[s16], i8.data[s8], bf16_value(i8.scale[s8]))

    def peek_stored(self, uniq: np.ndarray) -> StoredRows:
        """As peek(), in stored precision: absent rows travel as fp32 initial values (the same floats) with the
        wire tier TIER_ABSENT, so a reader can tell them from stored rows."""
        r = self.lookup(uniq)
        absent = r < 0
        if not absent.any():
            return self.read_stored(r)
        return StoredRows.with_absent(self.read_stored(r[~absent]), absent, self.peek(uniq[absent]))

    def write(self, r: np.ndarray, values: np.ndarray, rng: np.random.Generator | None,
              split: list | None = None) -> None:
        """Store (N, d) float32 values into rows r, encoded into each row's current tier (rng None = nearest)."""
        split = self.tier_groups(r) if split is None else split
        for t, pos, s in split:
            pool = self.pools[t]
            v = values if pos is None else values[pos]
            if t == TIER_FP32:
                pool.data[s] = v
            elif t == TIER_FP16:
                pool.data[s] = fp16_encode(v, rng)
            else:
                q, scale = int8_encode(v, rng, bf16_scale=True)
                pool.data[s], pool.scale[s] = q, bf16_bits(scale)

    def set_tiers(self, r: np.ndarray, tiers: np.ndarray) -> None:
        """Move unique rows r to tiers (uint8): decode, free the old slots, allocate in the new pools, re-encode
        with nearest rounding (so an int8 move errs by at most scale/2)."""
        if self.mpe:
            raise InvalidRequest(f"table {self.cfg.name!r}: an mpe table manages its fp32 cache itself")
        old_tier, old_slot = self.tier_slot(r)
        move = old_tier != tiers
        if not move.any():
            return
        self._make_tiered()
        r, tiers, old_tier, old_slot = r[move], tiers[move], old_tier[move], old_slot[move]
        values = self.read(r)
        for t, pool in enumerate(self.pools):
            pool.release(old_slot[old_tier == t])
        slots = np.empty(r.shape[0], dtype=np.int64)
        for t, pool in enumerate(self.pools):
            m = tiers == t
            if m.any():
                slots[m] = pool.alloc(int(np.count_nonzero(m)))
        self._set_loc(r, tiers, slots)
        self.write(r, values, None)

    def compact(self, fit_index: bool = True) -> None:
        """Release freed slots and growth slack (pools only ever grow between compactions), and pack the id index
        (unless fit_index is False: re-tiering leaves it be, its next growth is only 25% more rows away)."""
        n = self.rows.n
        if self.mpe:  # every row keeps its low copy at slot = row; the cache at slot = position
            self.pools[self.base_tier].compact(np.arange(n))
            self.pools[TIER_FP32].compact(np.arange(self.cached.shape[0]))
            self.rows.shrink()
            if fit_index:
                self.index.fit()
            return
        tier, slot = self.tier_slot(np.arange(n, dtype=np.int64))
        for t, pool in enumerate(self.pools):
            rows_t = np.flatnonzero(tier == t)
            pool.compact(slot[rows_t])
            if self.tiered:
                self._set_loc(rows_t, np.full(rows_t.shape[0], t, np.uint8), np.arange(rows_t.shape[0]))
        self.rows.shrink()
        if fit_index:
            self.index.fit()

    def add_counts(self, r: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray) -> None:
        """Under F-Q, the eq. 7 priority update of the unique rows r the push at self.step touched (c_pos/c_neg
        their summed counts in it); under MPE one more access each (labels unused); other tables keep no counts."""
        if self.mpe:
            a = self.rows["access"]
            a[r] = np.minimum(a[r], ACCESS_MAX - 1) + 1
            return
        if self.epoch_rule is None:
            return
        if self.step - self.prio_epoch > self.epoch_rule.max_lag():
            self.renormalise()
        self.rows["priority"][r] = self.epoch_rule.touched(self.rows["priority"][r], self.step - self.prio_epoch,
                                                           c_pos, c_neg)

    def renormalise(self) -> None:
        """Re-reference every stored priority to the current step (the new epoch)."""
        n = self.rows.n
        p = self.rows["priority"]
        p[:n] = self.epoch_rule.renormalised(p[:n], self.step - self.prio_epoch)
        self.prio_epoch = self.step

    # --- F-Quantization -------------------------------------------------------------------------------------------
    def priorities(self, r: np.ndarray) -> np.ndarray:
        """(N,) row numbers -> their eq. 7 priorities as of the current step (0 for non-F-Q tables)."""
        if self.epoch_rule is None:
            return np.zeros(r.shape[0], dtype=np.float32)
        return self.epoch_rule.values(self.rows["priority"][r], self.step - self.prio_epoch)

    def row_header_bytes(self) -> int:
        """Bytes every row holds outside its payload, whatever its tier: all row columns (tier and slot,
        optimizer state, priority)."""
        return int(sum(a.itemsize * (a.shape[1] if a.ndim == 2 else 1) for a in self.rows.cols.values()))

    def fp32_equivalent_bytes(self) -> int:
        """What the present rows would take in the fp32 method's store: payload and optimizer state per row (no
        tier, slot or priority: it needs none), packed, plus the same id index."""
        return self.index.nbytes + self.rows.n * fp32_row_bytes(self.cfg)

    def retier_due(self) -> bool:
        """Every fq_retier_every pushes; under a budget also when the id index grew past it (its new capacity is
        bytes the last retier did not plan for; the index grows once per 25% more rows)."""
        c = self.cfg
        if c.quant not in ("fq", "mpe"):
            return False
        if self.step % c.fq_retier_every == 0:
            return True
        if c.budget_mode and self.index.grows != self.index_grows_seen:
            self.index_grows_seen = self.index.grows
            return self.memory_bytes()["total"] > self.budget_bytes()
        return False

    def budget_bytes(self) -> int:
        """The F-Q / MPE byte budget for the present rows (0 = threshold mode / a fixed cache share)."""
        c = self.cfg
        if c.fq_budget_bytes > 0:
            return c.fq_budget_bytes
        return int(c.fq_budget_fraction * self.fp32_equivalent_bytes())

    def retier(self) -> dict[str, float]:
        """Move every row to the tier the F-Q policy gives its current priority (vectorised), then pack the pools
        when slots were freed (always under a budget, so the bytes really are within it; in threshold mode once
        free slots pass 1/8 of the rows).
        Returns the thresholds used (effective ones under a budget)."""
        n = self.rows.n
        c = self.cfg
        self.index_grows_seen = self.index.grows
        if self.mpe:
            return self.mpe_refresh()
        if c.quant != "fq" or n == 0:
            return {}
        self.renormalise()  # priorities now refer to this step
        r = np.arange(n, dtype=np.int64)
        w = self.priorities(r)
        if c.fq_budget_mode:
            # The index as it is (its bytes depend only on the ids present and its bucket count, which a snapshot
            # keeps): exactly what memory_bytes() reports.
            budget = self.budget_bytes()
            ratio = c.fq_t16_ratio if c.fq_t16_ratio > 0 else default_t16_over_t8(c.dim)
            fixed = self.index.nbytes
            tiers, t8, t16 = BudgetPolicy(budget, ratio).assign(w, fixed, RowBytes(c.dim, self.row_header_bytes()))
        else:
            tiers, t8, t16 = self.tier_policy.tiers(w), c.fq_t8, c.fq_t16
        self.set_tiers(r, tiers)
        free = sum(p.free.shape[0] for p in self.pools)
        if free and (c.fq_budget_mode or 8 * free > n):
            self.compact(fit_index=False)
        return {"t8": float(t8), "t16": float(t16)}

    # --- MPE ----------------------------------------------------------------------------------------------------
    def mpe_cache_size(self) -> int:
        """How many rows the fp32 cache holds after a refresh: mpe_cache_fraction of the rows, or under a budget
        the most that fit. Budget arithmetic (every byte memory_bytes() counts, after the refresh, which leaves no
        free slot): total = index + n * (low payload [+ int8 scale] + row columns [accum 4, access 4])
        + k * (4 * dim fp32 payload + 4 cache index), so k = floor((budget - the first two) / (4 * dim + 4))."""
        n, c = self.rows.n, self.cfg
        if not c.budget_mode:
            return int(c.mpe_cache_fraction * n)
        low = self.pools[self.base_tier]
        low_row = c.dim * low.data.itemsize + (low.scale.itemsize if low.scale is not None else 0)
        fixed = self.index.nbytes + n * (low_row + self.row_header_bytes())
        return cache_rows_for_budget(self.budget_bytes(), fixed, n, 4 * c.dim + CACHE_INDEX_BYTES)

    def mpe_refresh(self) -> dict[str, float]:
        """Re-rank the rows by access count and make the cache hold the top mpe_cache_size() (vectorised): evicted
        rows' fp32 values are written back into their low copy (cfg.rounding, a stream of its own per step),
        admitted rows start from their low copy decoded, staying rows keep their fp32 value. The fp32 pool is
        rebuilt packed (no free slots). Returns the cache size."""
        n = self.rows.n
        k = self.mpe_cache_size()
        new = hottest_rows(self.rows["access"][:n], k)
        old = self.cached.astype(np.int64)
        fp32 = self.pools[TIER_FP32]
        stays = np.isin(old, new, assume_unique=True)
        evict = old[~stays]
        if evict.shape[0]:
            rng = None
            if self.cfg.rounding == "stochastic":
                rng = rounding_rng(self.cfg.seed ^ _EVICT_SALT, self.step)
            self.write(evict, fp32.data[np.flatnonzero(~stays)], rng, [(self.base_tier, None, evict)])
        data = np.empty((new.shape[0], self.cfg.dim), dtype=np.float32)
        tier, pos = cache_tier_slot(self.cached, new, self.base_tier)  # rows already cached: fp32 at their position
        was = tier == TIER_FP32
        data[was] = fp32.data[pos[was]]
        admit = new[~was]
        data[~was] = self.read(admit, [(self.base_tier, None, admit)])
        fp32.data, fp32.free, fp32.top = data, np.zeros(0, dtype=np.int32), data.shape[0]
        self.cached = new.astype(np.int32)
        return {"cache_rows": float(new.shape[0])}

    # --- accounting -------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        n = self.rows.n
        tier, _ = self.tier_slot(np.arange(n, dtype=np.int64))
        counts = np.bincount(tier, minlength=3)
        out = {"rows": n, **{f"rows_{name}": int(counts[t]) for t, name in enumerate(TIER_NAMES)}, "step": self.step}
        if self.mpe:  # rows_fp32 are the cached rows (served in fp32; they keep their low copy too)
            out["rows_cached"] = int(self.cached.shape[0])
        return out

    def memory_bytes(self) -> dict[str, int]:
        """Every byte this table uses, from the arrays: pool slots handed out (free ones included), row columns and
        the id index. Growth slack (capacity beyond that) is left out of "total" -- it is zero pages numpy's
        calloc never touched, so it is not resident -- and reported as "allocated_total" (every byte reserved)."""
        cols = self.rows.cols
        n, d = self.rows.n, self.cfg.dim

        def col_bytes(name: str) -> int:
            a = cols.get(name)
            return 0 if a is None else n * a.itemsize * (a.shape[1] if a.ndim == 2 else 1)

        out = {f"payload_{name}": pool.top * d * pool.data.itemsize for name, pool in zip(TIER_NAMES, self.pools)}
        out.update({
            "int8_scales": self.pools[TIER_INT8].top * self.pools[TIER_INT8].scale.itemsize,
            "free_lists": sum(p.free.nbytes for p in self.pools),
            "slots": col_bytes("loc"),  # tier and slot, packed in one uint32
            "index": self.index.nbytes,
            "optimizer_state": sum(col_bytes(k) for k in ("accum",) + ADAM_COLUMNS),
            "priorities": col_bytes("priority"),
            "access_counts": col_bytes("access"),  # MPE
            "cache_index": self.cached.nbytes,  # MPE
        })
        out["total"] = sum(out.values())
        out["allocated_total"] = (sum(a.nbytes for p in self.pools for a in p.arrays().values())
                                  + sum(a.nbytes for a in cols.values()) + self.index.nbytes + self.cached.nbytes)
        # The paper's view: the live rows' values only, and the same rows all in fp32.
        out["payload_bytes"] = sum(p.live * d * p.data.itemsize for p in self.pools)
        out["payload_bytes_fp32"] = n * d * 4
        # The same rows in the fp32 method's store, packed, every byte it needs counted: a memory fraction's
        # denominator.
        out["fp32_equivalent_total"] = self.fp32_equivalent_bytes()
        return out
