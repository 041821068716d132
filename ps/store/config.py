"""Per-table configuration, validated once at construction so the hot path can trust it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ps.store.errors import InvalidRequest

MAX_CAPACITY = 2**31  # ids fit int32; the direct-mapped index is int32 too
OPTIMIZERS = ("adagrad", "sgd", "adam")


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
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise InvalidRequest(f"seed must be an int in [0, 2^64), got {self.seed!r}")
        for field in ("beta1", "beta2"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:  # NaN fails too
                raise InvalidRequest(f"{field} must be a number in [0, 1), got {v!r}")
