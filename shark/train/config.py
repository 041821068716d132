"""Run configuration: frozen, validated at construction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from shark.data.transforms import FeatureTransform


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 512  # the paper's setting; 1024 trains ~25% faster at equal AUC on 1M rows, worse on 10k
    epochs: int = 1
    embedding_dim: int = 16
    bottom: tuple[int, ...] = (64,)
    top: tuple[int, ...] = (256, 128)
    lr_dense: float = 1e-3  # Adam on the MLPs
    lr_embedding: float = 0.05  # row-wise Adagrad on the tables
    init_scale: float = 0.05  # embedding rows start uniform in [-init_scale, init_scale]
    capacity: int = 1 << 18  # default rows per table (hashing trick)
    capacities: tuple[tuple[str, int], ...] = ()  # per-table overrides, e.g. (("C3", 1 << 20),)
    seed: int = 0
    threads: int = 2
    eval_batch_size: int = 8192
    prefetch: int = 4  # batches parsed ahead in a background thread (0 = off)
    # F-Quantization (Ray engine: the shards keep the rows): "none" (fp32), "fq" (priority tiers, the paper's),
    # the uniform baselines "fp16" / "int8", or "mpe" (the MPE baseline: every row in mpe_low plus an fp32 cache of
    # the most pushed rows, sized by mpe_cache or memory_budget).
    quant: str = "none"
    memory_budget: float = 0.0  # fq/mpe: share of the table's all-fp32 bytes to keep it within (fq: 0 = thresholds)
    mpe_cache: float = 0.0  # mpe without a budget: share of the rows cached in fp32
    mpe_low: str = "int8"  # mpe: every row's stored precision, "int8" or "fp16"
    t8: float = 0.1  # fq threshold mode: priority < t8 -> int8, < t16 -> fp16, else fp32 (eq. 8)
    t16: float = 1.0
    fq_alpha: float = 2.0  # eq. 7: weight of a positive example
    fq_beta: float = 0.01  # eq. 7: rate of the priority's moving average
    retier_every: int = 100  # pushes between re-tierings (fq) / cache refreshes (mpe) of a table
    rounding: str = "stochastic"  # how fp32 updates are written back into fp16/int8 rows

    def __post_init__(self) -> None:
        checks = {
            "batch_size": self.batch_size >= 1,
            "epochs": self.epochs >= 1,
            "embedding_dim": self.embedding_dim >= 1,
            "lr_dense": self.lr_dense > 0,
            "lr_embedding": self.lr_embedding > 0,
            "init_scale": self.init_scale >= 0,
            "capacity": 1 <= self.capacity <= 2**40,
            "threads": self.threads >= 1,
            "eval_batch_size": self.eval_batch_size >= 1,
            "prefetch": self.prefetch >= 0,
            "quant": self.quant in ("none", "fq", "fp16", "int8", "mpe"),
            "memory_budget": 0.0 <= self.memory_budget <= 1.0,
            "mpe_cache": 0.0 <= self.mpe_cache <= 1.0,
            "mpe_low": self.mpe_low in ("int8", "fp16"),
            "t8": 0.0 <= self.t8 <= self.t16,
            "fq_beta": 0.0 < self.fq_beta <= 1.0,
            "fq_alpha": self.fq_alpha >= 0,
            "retier_every": self.retier_every >= 1,
            "rounding": self.rounding in ("stochastic", "nearest"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if not bad and self.memory_budget and self.quant not in ("fq", "mpe"):
            raise ValueError("a memory budget needs --quant fq or --quant mpe")
        if not bad and self.mpe_cache and self.quant != "mpe":
            raise ValueError("--mpe-cache needs --quant mpe")
        if not bad and self.quant == "mpe" and bool(self.memory_budget) == bool(self.mpe_cache):
            raise ValueError("--quant mpe needs exactly one of --memory-budget (share of the fp32 bytes) and "
                             "--mpe-cache (share of the rows cached in fp32)")
        if bad:
            raise ValueError(f"invalid training setting(s): {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")
        for name, cap in self.capacities:
            if not 1 <= int(cap) <= 2**40:
                raise ValueError(f"invalid capacity {cap!r} for table {name!r}")

    def capacity_of(self, table: str) -> int:
        return dict(self.capacities).get(table, self.capacity)

    def feature_transform(self, table_names: Sequence[str]) -> FeatureTransform:
        """The raw key -> row id mapping of these tables (hashing trick at each table's capacity, this run's seed):
        the one every trainer, worker and coordinator report uses, so their row ids agree."""
        return FeatureTransform(tuple(self.capacity_of(t) for t in table_names), seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["capacities"] = dict(self.capacities)
        return d


def train_config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Inverse of TrainConfig.to_dict (JSON turns tuples into lists and capacities into a dict)."""
    d = dict(d)
    d["bottom"], d["top"] = tuple(d["bottom"]), tuple(d["top"])
    d["capacities"] = tuple(sorted((str(k), int(v)) for k, v in dict(d.get("capacities", {})).items()))
    return TrainConfig(**d)
