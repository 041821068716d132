"""Which precision each row is stored in: fixed thresholds (paper eq. 8) or thresholds derived from a byte budget.

Tiers: 0 fp32, 1 fp16, 2 int8 (the order of "less precision, fewer bytes").
TierPolicy (eq. 8): w < t8 -> int8, t8 <= w < t16 -> fp16, w >= t16 -> fp32.
BudgetPolicy: the paper leaves t8/t16 to manual search; here they follow from a number of bytes. A rate-distortion
view (minimise sum_r w_r * err(tier_r) subject to the bytes) gives exactly eq. 8 with t16 / t8 fixed by the row
width (default_t16_over_t8); the budget then fixes t8, found by sorting the priorities. So the most important rows
are the ones kept at the highest precision, and a hot row goes to fp32 only when its priority is worth the 2d bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TIER_FP32, TIER_FP16, TIER_INT8 = 0, 1, 2
TIER_NAMES = ("fp32", "fp16", "int8")
INT8_SCALE_BYTES = 2  # one bfloat16 scale per int8 row (shark.quant.codecs.int8_encode(bf16_scale=True))


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class TierPolicy:
    """Eq. 8 with fixed thresholds t8 <= t16."""

    t8: float
    t16: float

    def __post_init__(self) -> None:
        if not _finite(self.t8) or not _finite(self.t16) or self.t8 > self.t16:
            raise ValueError(f"need finite thresholds with t8 <= t16, got t8={self.t8!r} t16={self.t16!r}")

    def tiers(self, priority: np.ndarray) -> np.ndarray:
        """(N,) priorities -> (N,) uint8 tiers."""
        w = np.asarray(priority)
        return np.where(w < self.t8, TIER_INT8, np.where(w < self.t16, TIER_FP16, TIER_FP32)).astype(np.uint8)


@dataclass(frozen=True)
class RowBytes:
    """What one row costs in each tier: payload (4d, 2d, d bytes), the int8 scale, and `header`, the per-row bytes
    every tier pays (tier tag, slot, row id, optimizer state, counters, priority, its share of the index...)."""

    dim: int
    header: int

    def __post_init__(self) -> None:
        for field in ("dim", "header"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if field == "dim" else 0):
                raise ValueError(f"RowBytes.{field} must be a non-negative int (dim >= 1), got {v!r}")

    def per_tier(self) -> tuple[int, int, int]:
        d, h = self.dim, self.header
        return 4 * d + h, 2 * d + h, d + INT8_SCALE_BYTES + h


def default_t16_over_t8(dim: int) -> float:
    """t16 / t8 from a rate-distortion model: a row's cost in a tier is w * err(tier) + lam * bytes(tier), with err
    the RMS rounding error per element relative to the row's range (int8: a step of 2/254, fp16: a relative step of
    2^-10, fp32: 2^-23; RMS = step / sqrt(12), a common factor). Minimising over tiers gives eq. 8 with
    t8 = lam / k1 and t16 = lam / k2 (k1 = error removed per byte int8 -> fp16, k2 = the same fp16 -> fp32), so
    t16 / t8 = k1 / k2 whatever the budget (about 15 at dim 64, 16 at dim 16). At dim 2 or less, fp16 is no
    dearer than int8 + scale and int8 is never worth it (ratio inf: t8 is then unused)."""
    e8, e16, e32 = 2.0 / 254.0, 2.0**-10, 2.0**-23
    b32, b16, b8 = 4 * dim, 2 * dim, dim + INT8_SCALE_BYTES
    if b16 <= b8:
        return math.inf
    return ((e8 - e16) / (b16 - b8)) / ((e16 - e32) / (b32 - b16))


@dataclass(frozen=True)
class BudgetPolicy:
    """Eq. 8 thresholds derived from a byte budget: t16 = ratio * t8 (ratio >= 1, see default_t16_over_t8), and t8
    the smallest value whose tiers keep fixed_bytes + the rows' bytes within budget_bytes. Found by sorting the
    priorities once and evaluating every breakpoint (each w and w / ratio) with searchsorted: O(n log n), no loops.
    Rows of equal priority always share a tier. If even all-int8 does not fit, t8 = inf (every row int8: best
    effort, over budget by the metadata floor)."""

    budget_bytes: int
    ratio: float

    def __post_init__(self) -> None:
        if isinstance(self.budget_bytes, bool) or not isinstance(self.budget_bytes, int) or self.budget_bytes < 0:
            raise ValueError(f"budget_bytes must be a non-negative int, got {self.budget_bytes!r}")
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) or not self.ratio >= 1:
            raise ValueError(f"ratio must be a number >= 1 (inf allowed), got {self.ratio!r}")

    def thresholds(self, priority: np.ndarray, fixed_bytes: int, row: RowBytes) -> tuple[float, float]:
        """(N,) priorities -> (t8, t16) for TierPolicy-style assignment (w < t8 int8, w < t16 fp16, else fp32)."""
        ws = np.sort(np.asarray(priority, dtype=np.float64))
        n = ws.shape[0]
        b32, b16, b8 = row.per_tier()
        c = float(self.ratio)
        if math.isinf(c):  # no fp16 tier worth having below int8: choose between fp16 (t8 = -inf) and fp32
            cand16 = np.concatenate((ws, [np.inf]))
            n32 = n - np.searchsorted(ws, cand16, side="left")
            total = fixed_bytes + n32 * b32 + (n - n32) * b16
            ok = np.flatnonzero(total <= self.budget_bytes)
            t16 = float(cand16[ok].min()) if ok.size else math.inf
            return -math.inf, t16
        cand = np.unique(np.concatenate((ws, ws / c, [np.inf])))  # every t8 where some row changes tier
        n8 = np.searchsorted(ws, cand, side="left")  # rows with w < t8
        n32 = n - np.minimum(np.searchsorted(ws, cand * c, side="left"), n)  # rows with w >= t16 = c * t8
        n32 = np.where(np.isinf(cand), 0, n32)
        total = fixed_bytes + n8 * b8 + n32 * b32 + (n - n8 - n32) * b16
        ok = np.flatnonzero(total <= self.budget_bytes)  # total is non-increasing in t8
        t8 = float(cand[ok[0]]) if ok.size else math.inf
        return t8, t8 * c

    def assign(self, priority: np.ndarray, fixed_bytes: int, row: RowBytes) -> tuple[np.ndarray, float, float]:
        """(N,) priorities -> ((N,) uint8 tiers, t8, t16)."""
        t8, t16 = self.thresholds(priority, fixed_bytes, row)
        w = np.asarray(priority, dtype=np.float64)
        tiers = np.where(w < t8, TIER_INT8, np.where(w < t16, TIER_FP16, TIER_FP32)).astype(np.uint8)
        return tiers, t8, t16
