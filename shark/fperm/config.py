"""Scoring settings: frozen and validated at construction."""

from __future__ import annotations

from dataclasses import dataclass

VARIANTS = ("signed", "abs", "abs-mean")


@dataclass(frozen=True)
class TaylorConfig:
    """F-Permutation's first-order score (paper eq. 4). Eq. 1 replaces field f's vector e_f(x) by every value v'
    of the field, weighted by its frequency p(v'); to first order each replacement changes the loss by
    g_f(x) . (e_f(v') - e_f(x)), g_f(x) = dloss(x)/de_f(x).

    variant:
    - "signed": eq. 4 as written, mean_x g_f(x) . (mu_f - e_f(x)) with mu_f = E(v') (the average over v' of the
      first-order change). Plain sums, one pass. At a trained model it averages towards 0 (each row's gradient
      sums to ~0 over its samples), so it ranks poorly.
    - "abs" (the default): mean_x E_v' |g_f(x) . (e_f(v') - e_f(x))|, the expected size of one replacement's
      first-order change, with v' drawn from p(v') the way Permutation draws it: `draws` seeded shuffles of the
      field's vectors within each batch, inside the same forward/backward pass (only the vector difference
      changes). One pass, plain sums.
    - "abs-mean": mean_x |g_f(x) . (mu_f - e_f(x))|, the size of the move to the field's mean. Needs mu_f first
      (two passes); measured below "abs" (the mean of a categorical field is no value it takes, and the move to
      it is shorter than a move to a typical other value).
    Measured in tests/integration/test_fperm.py.
    draws, seed: the number of in-batch shuffles per batch for "abs" and their seed (a shuffle depends only on
    the seed and the batch size, so a split of the batches over workers gives the single-process result).
    """

    variant: str = "abs"
    draws: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not 1 <= self.draws <= 64:
            raise ValueError(f"draws must be in [1, 64], got {self.draws}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class PermutationConfig:
    """The Permutation baseline: shuffle one field's vectors within the batch, `repeats` times per field."""

    repeats: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
