"""Per-table configuration, validated once at construction so the hot path can trust it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ps.store.errors import InvalidRequest
from ps.store.validation import check_scales

MAX_CAPACITY = 2**31  # ids fit int32; the direct-mapped index is int32 too
OPTIMIZERS = ("adagrad", "sgd", "adam")
QUANT_MODES = ("none", "fq", "fp16", "int8", "mpe")
MPE_LOW = ("int8", "fp16")
# Fields added after the first checkpoints were written: a manifest may lack them (they take their defaults).
LATER_FIELDS = frozenset({"beta1", "beta2", "quant", "fq_alpha", "fq_beta", "fq_t8", "fq_t16", "fq_budget_bytes",
                          "fq_budget_fraction", "fq_retier_every", "fq_t16_ratio", "mpe_low",
                          "mpe_cache_fraction"})


@dataclass(frozen=True)
class TableConfig:
    name: str
    dim: int
    capacity: int  # id space: valid ids are [0, capacity)
    # "adagrad" (row-wise, as shark.model.embedding) | "sgd" | "adam" (element-wise, as torch.optim.Adam with
    # amsgrad=False and no weight decay; for dense parameters chunked into rows, which always stay fp32)
    optimizer: str = "adagrad"
    lr: float = 0.05
    eps: float = 1e-8  # Adagrad: inside the sqrt (as EmbeddingStore); Adam: added to the sqrt (as torch)
    init_scale: float = 0.05
    seed: int = 0
    rounding: str = "stochastic"  # write-back into fp16/int8 rows: "stochastic" (unbiased) | "nearest"
    beta1: float = 0.9  # Adam only (ignored otherwise): decay of the first and second moment estimates
    beta2: float = 0.999
    # Row precision. "none": every row fp32. "fp16" / "int8": uniform baselines, every row in that tier from its
    # creation (updates written back with `rounding`). "fq": F-Quantization (DESIGN section 5): each push updates
    # the touched rows' priority w <- (1-fq_beta) w + fq_beta (fq_alpha c_pos + c_neg) (eq. 7, lazily decayed), and
    # every fq_retier_every pushes the table re-tiers by eq. 8 (w < t8 int8, < t16 fp16, else fp32): with fixed
    # fq_t8 <= fq_t16, or under a budget (fq_budget_bytes, or fq_budget_fraction of what the same rows would take
    # all fp32, every byte counted) with t16 = fq_t16_ratio * t8 and the smallest t8 that fits.
    # New rows start in the tier priority 0 gets: eq. 8's for thresholds, int8 under a budget. Not for adam tables.
    quant: str = "none"
    fq_alpha: float = 2.0  # weight of a positive example (the paper's alpha)
    fq_beta: float = 0.01  # eq. 7's rate: weight of the newest push; the paper's 0.99 forgets within a few pushes
    fq_t8: float = 0.1  # eq. 8 thresholds (threshold mode only)
    fq_t16: float = 1.0
    fq_budget_bytes: int = 0  # > 0: budget mode with this many bytes for the table
    fq_budget_fraction: float = 0.0  # in (0, 1]: budget mode with this share of the all-fp32 bytes (exclusive)
    fq_retier_every: int = 100  # pushes between re-tierings
    fq_t16_ratio: float = 0.0  # budget mode: t16 / t8 (>= 1); 0 = from the row width (shark.quant.tiers)
    # "mpe": the MPE baseline (Yang et al. 2020; shark.quant.mpe). Every row is stored in mpe_low ("int8" or
    # "fp16"); the most pushed rows (LFU: a push count per row, no labels, no decay) also keep an fp32 copy that
    # serves their pulls and takes their updates. Every fq_retier_every pushes the cache is refreshed: it holds the
    # top mpe_cache_fraction of the rows by count, or under a budget (fq_budget_bytes / fq_budget_fraction, as
    # F-Q's, every byte counted) as many as fit; evicted rows' fp32 values are written back into their low copy
    # with `rounding`. Exactly one of mpe_cache_fraction and a budget is set.
    mpe_low: str = "int8"
    mpe_cache_fraction: float = 0.0  # in (0, 1]: share of the rows cached in fp32 (0 = from the budget)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidRequest("table name must be a non-empty str")
        for field, lo, hi in (("dim", 1, 1 << 16), ("capacity", 1, MAX_CAPACITY)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise InvalidRequest(f"{field} must be an int in [{lo}, {hi}], got {v!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InvalidRequest(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.rounding not in ("stochastic", "nearest"):
            raise InvalidRequest(f"rounding must be 'stochastic' or 'nearest', got {self.rounding!r}")
        for field in ("lr", "eps", "init_scale"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InvalidRequest(f"{field} must be a finite number >= 0, got {v!r}")
        check_scales(self.lr, self.init_scale)  # larger ones write Inf rows in float32
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise InvalidRequest(f"seed must be an int in [0, 2^64), got {self.seed!r}")
        for field in ("beta1", "beta2"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:  # NaN fails too
                raise InvalidRequest(f"{field} must be a number in [0, 1), got {v!r}")
        self._check_quant()

    def _check_quant(self) -> None:
        def num(field: str) -> float:
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidRequest(f"{field} must be a finite number, got {v!r}")
            return v

        if self.quant not in QUANT_MODES:
            raise InvalidRequest(f"quant must be one of {QUANT_MODES}, got {self.quant!r}")
        if self.quant != "none" and self.optimizer == "adam":
            raise InvalidRequest("adam tables (dense parameters) stay fp32: quant must be 'none'")
        if num("fq_alpha") < 0:
            raise InvalidRequest(f"fq_alpha must be >= 0, got {self.fq_alpha!r}")
        if not 0 < num("fq_beta") <= 1:
            raise InvalidRequest(f"fq_beta must be in (0, 1], got {self.fq_beta!r}")
        if num("fq_t8") > num("fq_t16"):
            raise InvalidRequest(f"fq_t8 must be <= fq_t16, got {self.fq_t8!r} > {self.fq_t16!r}")
        b = self.fq_budget_bytes
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < 2**63:
            raise InvalidRequest(f"fq_budget_bytes must be an int >= 0 (0 = off), got {b!r}")
        if not 0 <= num("fq_budget_fraction") <= 1:
            raise InvalidRequest(f"fq_budget_fraction must be in [0, 1] (0 = off), got {self.fq_budget_fraction!r}")
        if b > 0 and self.fq_budget_fraction > 0:
            raise InvalidRequest("set at most one of fq_budget_bytes and fq_budget_fraction")
        if self.mpe_low not in MPE_LOW:
            raise InvalidRequest(f"mpe_low must be one of {MPE_LOW}, got {self.mpe_low!r}")
        if not 0 <= num("mpe_cache_fraction") <= 1:
            raise InvalidRequest(f"mpe_cache_fraction must be in [0, 1] (0 = off), got {self.mpe_cache_fraction!r}")
        budget = b > 0 or self.fq_budget_fraction > 0
        if self.quant == "mpe" and budget == (self.mpe_cache_fraction > 0):
            raise InvalidRequest("quant 'mpe' needs exactly one of mpe_cache_fraction and a budget "
                                 "(fq_budget_bytes / fq_budget_fraction)")
        if self.quant != "mpe" and self.mpe_cache_fraction > 0:
            raise InvalidRequest("mpe_cache_fraction needs quant 'mpe'")
        if not (num("fq_t16_ratio") == 0 or self.fq_t16_ratio >= 1):
            raise InvalidRequest(f"fq_t16_ratio must be 0 (derived) or >= 1, got {self.fq_t16_ratio!r}")
        r = self.fq_retier_every
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= 2**31:
            raise InvalidRequest(f"fq_retier_every must be an int in [1, 2^31], got {r!r}")

    @property
    def fq_budget_mode(self) -> bool:
        return self.quant == "fq" and self.budget_mode

    @property
    def budget_mode(self) -> bool:
        """F-Q or MPE sized by a byte budget."""
        return self.quant in ("fq", "mpe") and (self.fq_budget_bytes > 0 or self.fq_budget_fraction > 0)
