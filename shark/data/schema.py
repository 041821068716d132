"""Which input columns are the label, the dense features and the categorical features."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Schema:
    label: str
    dense: tuple[str, ...]
    categorical: tuple[str, ...]

    def __post_init__(self) -> None:
        # Accept lists from config files, but store tuples so the schema stays hashable and immutable.
        object.__setattr__(self, "dense", tuple(self.dense))
        object.__setattr__(self, "categorical", tuple(self.categorical))
        names = self.columns
        blank = [repr(n) for n in names if not isinstance(n, str) or not n.strip()]
        if blank:
            raise ValueError(f"schema column names must be non-empty strings, got {', '.join(blank)}")
        dups = sorted(n for n, k in Counter(self.dense + self.categorical).items() if k > 1)
        if dups:
            raise ValueError(f"schema lists feature column(s) more than once: {', '.join(dups)}")
        if self.label in self.dense or self.label in self.categorical:
            raise ValueError(f"schema label column {self.label!r} is also listed as a feature")
        if not self.categorical:
            raise ValueError("schema needs at least one categorical column")

    @property
    def columns(self) -> tuple[str, ...]:
        """All columns in output order: label, dense..., categorical..."""
        return (self.label, *self.dense, *self.categorical)

    @property
    def n_dense(self) -> int:
        return len(self.dense)

    @property
    def n_categorical(self) -> int:
        return len(self.categorical)


# The Criteo Kaggle / Terabyte layout: label, 13 integer counts, 26 hashed categorical values.
CRITEO_SCHEMA = Schema(
    label="label",
    dense=tuple(f"I{i}" for i in range(1, 14)),
    categorical=tuple(f"C{i}" for i in range(1, 27)),
)
