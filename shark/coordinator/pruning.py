"""Algorithm 1's decisions (paper section 3.1), as a small pure policy: what to delete next, whether a round's
result is kept, and when to stop. The coordinator does the work (score, delete, fine-tune, evaluate); this only
decides, so it is unit-tested with synthetic numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CompressConfig:
    memory_target: float = 0.6  # stop once embedding memory <= this share of the unpruned model's
    auc_floor: float = 0.0015  # the largest relative held-out AUC drop accepted (the paper's 0.15%)
    fields_per_round: int = 1  # f: fields deleted per round
    finetune_rows: int = 100_000  # rows of the training data each round fine-tunes on (the support set)
    score_rows: int = 50_000  # held-out rows F-Permutation scores on
    max_rounds: int = 40
    # the paper's Figure 2 on the unpruned model: AUC against fields kept when fields are dropped (no fine-tuning)
    # in F-P's order, Permutation's (T=1) and random_orders random orders, on curve_rows held-out rows (0: none)
    curve_rows: int = 30_000
    random_orders: int = 3
    # Fine-tuning shows the pruned model fresh rows the unpruned one never saw, so its AUC gain is partly data.
    # control: afterwards, fine-tune the unpruned model on the same rows and report the pruned one against that too.
    control: bool = True

    def __post_init__(self) -> None:
        checks = {"memory_target": 0.0 < self.memory_target <= 1.0, "auc_floor": 0.0 <= self.auc_floor < 1.0,
                  "fields_per_round": self.fields_per_round >= 1, "finetune_rows": self.finetune_rows >= 0,
                  "score_rows": self.score_rows >= 1, "max_rounds": self.max_rounds >= 1,
                  "curve_rows": self.curve_rows >= 0, "random_orders": 0 <= self.random_orders <= 20}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid compression setting(s): {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PruningPolicy:
    MIN_FIELDS = 2  # DenseDLRM needs two fields for a pairwise interaction

    def __init__(self, config: CompressConfig, base_auc: float, base_memory: int) -> None:
        self.config, self.base_auc, self.base_memory = config, base_auc, base_memory
        self.rounds = 0

    @property
    def auc_floor(self) -> float:
        return self.base_auc * (1.0 - self.config.auc_floor)

    def stop_reason(self, memory: int, n_fields: int) -> str | None:
        """Why no further round should start (None: go on)."""
        if memory <= self.config.memory_target * self.base_memory:
            return f"memory target reached ({memory / self.base_memory:.1%} of the unpruned embedding memory)"
        if n_fields - self.config.fields_per_round < self.MIN_FIELDS:
            return "no field left to delete (a DLRM needs two)"
        if self.rounds >= self.config.max_rounds:
            return f"{self.rounds} rounds (max_rounds)"
        return None

    def victims(self, ranking: list[str]) -> list[str]:
        """The f least important fields of a ranking (most important first)."""
        self.rounds += 1
        return ranking[::-1][: self.config.fields_per_round]

    def accept(self, auc: float) -> bool:
        return auc >= self.auc_floor
