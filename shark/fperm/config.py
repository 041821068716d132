"""Scoring settings: frozen and validated at construction."""

from __future__ import annotations

from dataclasses import dataclass

VARIANTS = ("signed", "abs")


@dataclass(frozen=True)
class TaylorConfig:
    """F-Permutation's first-order score (paper eq. 4).

    variant: "signed" is eq. 4 as written, mean_x g_f(x) . (mu_f - e_f(x)); it decomposes into plain sums, so it
    needs one data pass. "abs" is mean_x |g_f(x) . (mu_f - e_f(x))|; it needs mu_f first (a forward-only pass over
    the field vectors), then one forward + backward pass. At a well-trained model the signed first-order term
    averages out towards 0 (the gradient of each embedding row sums to ~0 over its samples), so the absolute
    value is the one that ranks well; measured in tests/integration/test_fperm.py.
    """

    variant: str = "abs"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")


@dataclass(frozen=True)
class PermutationConfig:
    """The Permutation baseline: shuffle one field's vectors within the batch, `repeats` times per field."""

    repeats: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
