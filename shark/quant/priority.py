"""F-Quantization row priorities (paper eq. 7), with exact lazy decay.

Eager form, once per batch (= per push the table receives), for every row r:
    w_r <- (1 - beta) * w_r + beta * (alpha * c_pos_r + c_neg_r)
where c_pos_r / c_neg_r count the batch's positive / negative examples containing r (both 0 if r is absent).
Lazy form: keep (w_r, last_step_r), the value right after the push that last touched r. A row absent from pushes
last_step+1 .. t-1 only decays, so at step t
    w_r(t) = w_r * (1 - beta) ** (t - last_step_r) + beta * (alpha * c_pos_r + c_neg_r)   (touched at t)
    w_r(t) = w_r * (1 - beta) ** (t - last_step_r)                                         (read at t, untouched)
which is the eager result exactly (up to float rounding): only touched rows are written, in one vectorised pass.
Steps are stored as uint32 (step mod 2^32), so the gap is taken mod 2^32: exact for gaps below 2^32 pushes.
The arithmetic runs in float64 and stores float32; a gap long enough underflows the factor to 0, as eager would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_STEP_MOD = np.int64(1) << np.int64(32)


@dataclass(frozen=True)
class PriorityRule:
    """alpha: weight of a positive example relative to a negative one; beta: eq. 7's rate (the weight of the
    newest batch; each push keeps a factor 1 - beta of the old priority)."""

    alpha: float = 2.0
    beta: float = 0.01

    def __post_init__(self) -> None:
        for field, ok in (("alpha", lambda v: 0 <= v), ("beta", lambda v: 0 < v <= 1)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
                raise ValueError(f"priority {field} out of range: {v!r}")

    def decay_factor(self, last_step: np.ndarray, step: int) -> np.ndarray:
        """(1 - beta) ** (step - last_step) in float64; last_step (N,) uint32 = a step mod 2^32."""
        gap = (np.int64(step) - np.asarray(last_step).astype(np.int64)) % _STEP_MOD
        return np.power(1.0 - float(self.beta), gap.astype(np.float64))

    def decayed(self, w: np.ndarray, last_step: np.ndarray, step: int) -> np.ndarray:
        """Priorities as of `step` for rows not touched since last_step (N,) float32."""
        return (np.asarray(w, dtype=np.float64) * self.decay_factor(last_step, step)).astype(np.float32)

    def touched(self, w: np.ndarray, last_step: np.ndarray, step: int, c_pos: np.ndarray,
                c_neg: np.ndarray) -> np.ndarray:
        """Priorities right after the push at `step` for the rows it touched (c_pos/c_neg (N,) its counts)."""
        old = np.asarray(w, dtype=np.float64) * self.decay_factor(last_step, step)  # includes step's own decay
        x = float(self.alpha) * np.asarray(c_pos, dtype=np.float64) + np.asarray(c_neg, dtype=np.float64)
        return (old + float(self.beta) * x).astype(np.float32)


@dataclass(frozen=True)
class EpochPriorities:
    """Eq. 7 with one shared clock instead of a per-row last step (saves 4 bytes a row): each row keeps
    s_r = w_r(t) / (1 - beta) ** (t - epoch), which an untouched row keeps unchanged as t grows, so
        w_r(t) = s_r * (1 - beta) ** (t - epoch)                                  (any row, any t >= epoch)
        touched at t: s_r += beta * (alpha * c_pos + c_neg) / (1 - beta) ** (t - epoch)
    is eq. 7 exactly (up to rounding). s is stored as float16 (2 bytes); the growth factor (1 - beta) ** -(t - epoch)
    is kept at most MAX_GROWTH by renormalising every row (s *= (1 - beta) ** (t - epoch), epoch = t) before a touch
    would pass it, and at every re-tiering. fp16 keeps 11 significant bits; priorities beyond its range saturate
    at 65504 (the hottest rows tie, all fp32) and far-decayed ones reach 0 (the coldest tie, all int8)."""

    rule: PriorityRule
    MAX_GROWTH = 16.0

    def max_lag(self) -> int:
        """Steps after the epoch a touch may come before a renormalisation is due."""
        b = float(self.rule.beta)
        if b >= 1.0:
            return 0
        return math.floor(math.log(self.MAX_GROWTH) / -math.log1p(-b))

    def decay(self, gap: int) -> float:
        return (1.0 - float(self.rule.beta)) ** gap

    def values(self, s: np.ndarray, gap: int) -> np.ndarray:
        """Stored (N,) float16 -> priorities (N,) float32 at epoch + gap."""
        return (s.astype(np.float64) * self.decay(gap)).astype(np.float32)

    def renormalised(self, s: np.ndarray, gap: int) -> np.ndarray:
        """Stored values re-referenced to the step epoch + gap."""
        return _to_fp16(s.astype(np.float64) * self.decay(gap))

    def weight(self, gap: int) -> float:
        """What one unit of alpha * c_pos + c_neg adds to a stored value at epoch + gap: beta / (1-beta)^gap."""
        return float(self.rule.beta) * (1.0 / self.decay(gap) if gap else 1.0)

    def touched(self, s: np.ndarray, gap: int, c_pos: np.ndarray, c_neg: np.ndarray) -> np.ndarray:
        """New stored values of the rows a push at epoch + gap touched (gap <= max_lag())."""
        return touched_values(s, float(self.rule.alpha), self.weight(gap), c_pos, c_neg)


def touched_values(s: np.ndarray, alpha: float | np.ndarray, weight: float | np.ndarray, c_pos: np.ndarray,
                   c_neg: np.ndarray) -> np.ndarray:
    """s + weight * (alpha * c_pos + c_neg) as float16, with alpha / weight scalars or per-row arrays (the rows of
    many tables updated in one pass give exactly what each table's own update gives)."""
    x = alpha * np.asarray(c_pos, dtype=np.float64) + np.asarray(c_neg, dtype=np.float64)
    return _to_fp16(s.astype(np.float64) + weight * x)


def _to_fp16(v: np.ndarray) -> np.ndarray:
    return np.minimum(v, 65504.0).astype(np.float16)
