"""FieldScores: one number per field (larger = more important) and the method that produced it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FieldScores:
    method: str  # e.g. "fperm-abs", "fperm-signed", "permutation-T1", "exact", "random"
    fields: tuple[str, ...]
    scores: np.ndarray  # (F,) float64

    def __post_init__(self) -> None:
        s = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if s.shape[0] != len(self.fields):
            raise ValueError(f"{len(self.fields)} fields but {s.shape[0]} scores")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"field names must be unique: {self.fields}")
        object.__setattr__(self, "scores", s)

    def ranking(self) -> list[str]:
        """Fields, most important first (ties keep field order)."""
        order = np.argsort(-self.scores, kind="stable")
        return [self.fields[i] for i in order]

    def as_dict(self) -> dict[str, float]:
        return {f: float(s) for f, s in zip(self.fields, self.scores)}

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "ranking": self.ranking(), "scores": self.as_dict()}
