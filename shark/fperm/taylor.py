"""F-Permutation's first-order Taylor score (paper eq. 4), as an accumulator of plain partial sums.

For field f (the dense-feature vector is a field too), sample x, field vector e_f(x) and per-sample gradient
g_f(x) = dloss(x)/de_f(x):

    signed_f = mean_x g_f(x) . (mu_f - e_f(x)) = (mu_f . sum_x g_f(x) - sum_x g_f(x) . e_f(x)) / n
    abs_f    = mean_x |g_f(x) . (mu_f - e_f(x))|

with mu_f = sum_x e_f(x) / n the population mean of the field's vectors over the scoring data: replacing x's value
by every other value of the field weighted by its frequency (eq. 1) is, to first order, moving e_f(x) to mu_f.

Per-sample gradients cost one backward pass: the (B, F, d) field vectors are the autograd leaf and the loss is
summed (not averaged) over the batch; samples are independent, so row b of the gradient is dloss(b)/de(b).

The signed score needs only the additive sums (n, sum e, sum g, sum g.e), so each worker accumulates over its
share of the data and a coordinator adds the `FieldSums` and finishes. The absolute variant needs mu first:
pass 1 gathers sum e (or a signed pass does), the coordinator fixes mu = sum e / n, and pass 2 accumulates
sum |g.(mu - e)| with that mu on every worker. Sums are float64, so the merged result equals the single-process
one to float tolerance whatever the split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from shark.fperm.config import TaylorConfig
from shark.fperm.inputs import ScoringBatch
from shark.fperm.scores import FieldScores
from shark.model import DenseDLRM


def per_sample_gradients(model: DenseDLRM, vectors: torch.Tensor, labels: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, F, d) field vectors -> (per-sample losses (B,), per-sample gradients (B, F, d)): one forward, one
    backward. The model's parameters get no .grad."""
    v = vectors.detach().requires_grad_()
    logits = model.head(v)
    losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    (g,) = torch.autograd.grad(losses.sum(), v)
    return losses.detach(), g


def taylor_terms(model: DenseDLRM, vectors: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """(B, F) per-sample first-order terms g_f(x) . (mu_f - e_f(x)) of eq. 4; mean is (F, d)."""
    _, g = per_sample_gradients(model, vectors, labels)
    return torch.einsum("bfd,bfd->bf", g, mean.to(vectors.dtype).unsqueeze(0) - vectors.detach())


@dataclass(frozen=True)
class FieldSums:
    """Additive partial sums over some samples (what a worker sends). All arrays float64.

    n: samples; sum_e, sum_g: (F, d); sum_ge: (F,) sum of g.e; sum_abs: (F,) sum of |g.(mean - e)| for the given
    `mean` (F, d), or None when no mean was fixed (signed-only pass)."""

    fields: tuple[str, ...]
    n: int
    sum_e: np.ndarray
    sum_g: np.ndarray
    sum_ge: np.ndarray
    sum_abs: np.ndarray | None = None
    mean: np.ndarray | None = None

    def __post_init__(self) -> None:
        f = len(self.fields)
        if self.n < 0 or self.sum_e.shape[0] != f or self.sum_g.shape != self.sum_e.shape or self.sum_ge.shape != (f,):
            raise ValueError("inconsistent partial sums")
        if (self.sum_abs is None) != (self.mean is None):
            raise ValueError("sum_abs and mean go together")

    @staticmethod
    def zeros(fields: Sequence[str], dim: int, mean: np.ndarray | None = None) -> FieldSums:
        f = len(fields)
        m = None if mean is None else np.asarray(mean, dtype=np.float64).reshape(f, dim)
        return FieldSums(tuple(fields), 0, np.zeros((f, dim)), np.zeros((f, dim)), np.zeros(f),
                         None if m is None else np.zeros(f), m)

    def __add__(self, other: FieldSums) -> FieldSums:
        if self.fields != other.fields or self.sum_e.shape != other.sum_e.shape:
            raise ValueError(f"cannot merge sums over different fields: {self.fields} vs {other.fields}")
        if (self.mean is None) != (other.mean is None) or (
                self.mean is not None and not np.array_equal(self.mean, other.mean)):
            raise ValueError("cannot merge absolute-value sums taken with different means")
        return FieldSums(self.fields, self.n + other.n, self.sum_e + other.sum_e, self.sum_g + other.sum_g,
                         self.sum_ge + other.sum_ge,
                         None if self.sum_abs is None else self.sum_abs + other.sum_abs, self.mean)

    def means(self) -> np.ndarray:
        """(F, d) population mean of each field's vectors over the samples summed so far."""
        if self.n == 0:
            raise ValueError("no samples accumulated")
        return self.sum_e / self.n

    def finish(self, variant: str) -> FieldScores:
        """The scores of eq. 4 over all samples summed so far."""
        TaylorConfig(variant)
        if self.n == 0:
            raise ValueError("no samples accumulated")
        if variant == "signed":
            s = (np.einsum("fd,fd->f", self.means(), self.sum_g) - self.sum_ge) / self.n
        else:
            if self.sum_abs is None:
                raise ValueError("the 'abs' variant needs a pass with the field means fixed (mean=...)")
            s = self.sum_abs / self.n
        return FieldScores(f"fperm-{variant}", self.fields, s)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (for a wire or JSON); `from_dict` inverts it exactly (float64 round-trips)."""
        return {"fields": list(self.fields), "n": self.n, "sum_e": self.sum_e.tolist(), "sum_g": self.sum_g.tolist(),
                "sum_ge": self.sum_ge.tolist(), "sum_abs": None if self.sum_abs is None else self.sum_abs.tolist(),
                "mean": None if self.mean is None else self.mean.tolist()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> FieldSums:
        def arr(x: Any) -> np.ndarray | None:
            return None if x is None else np.asarray(x, dtype=np.float64)

        return FieldSums(tuple(d["fields"]), int(d["n"]), arr(d["sum_e"]), arr(d["sum_g"]), arr(d["sum_ge"]),
                         arr(d["sum_abs"]), arr(d["mean"]))


class FieldScoreAccumulator:
    """Accumulates eq. 4's partial sums over batches; `finish` gives the scores.

        acc = FieldScoreAccumulator(model.fields, dim)            # pass 1 (signed, and the means)
        for b in batches: acc.add(model, b.dense, b.emb, b.labels)
        mean = acc.partial().means()
        acc2 = FieldScoreAccumulator(model.fields, dim, mean=mean)  # pass 2 (abs)

    Distributed: each worker runs its own accumulator and returns `partial()`; the coordinator sums the
    FieldSums (or calls `merge`) and finishes.
    """

    def __init__(self, fields: Sequence[str], dim: int, mean: np.ndarray | None = None) -> None:
        if not fields or dim < 1:
            raise ValueError("need at least one field and dim >= 1")
        self.fields = tuple(fields)
        self.dim = dim
        self._sums = FieldSums.zeros(self.fields, dim, mean)
        self._mean_t = None if mean is None else torch.from_numpy(self._sums.mean).float()

    def add(self, model: DenseDLRM, dense: torch.Tensor, emb: torch.Tensor, labels: torch.Tensor) -> None:
        """One batch: field vectors (no grad), then one forward and one backward of the head."""
        if tuple(model.fields) != self.fields:
            raise ValueError(f"model fields {model.fields} differ from the accumulator's {self.fields}")
        model.eval()
        with torch.no_grad():
            vectors = model.field_vectors(dense, emb)
        self.add_vectors(model, vectors, labels)

    def add_vectors(self, model: DenseDLRM, vectors: torch.Tensor, labels: torch.Tensor) -> None:
        """One batch of precomputed (B, F, d) field vectors."""
        if vectors.shape[1:] != (len(self.fields), self.dim):
            raise ValueError(f"expected (B, {len(self.fields)}, {self.dim}) vectors, got {tuple(vectors.shape)}")
        _, g = per_sample_gradients(model, vectors, labels)
        v = vectors.detach()
        s = self._sums
        sum_abs = None
        if self._mean_t is not None:
            terms = torch.einsum("bfd,bfd->bf", g, self._mean_t.unsqueeze(0) - v)
            sum_abs = s.sum_abs + terms.abs().sum(0).double().numpy()
        self._sums = FieldSums(s.fields, s.n + int(v.shape[0]), s.sum_e + v.sum(0).double().numpy(),
                               s.sum_g + g.sum(0).double().numpy(),
                               s.sum_ge + torch.einsum("bfd,bfd->f", g, v).double().numpy(), sum_abs, s.mean)

    def partial(self) -> FieldSums:
        return self._sums

    def merge(self, other: FieldScoreAccumulator | FieldSums) -> None:
        self._sums = self._sums + (other.partial() if isinstance(other, FieldScoreAccumulator) else other)

    def finish(self, variant: str = "signed") -> FieldScores:
        return self._sums.finish(variant)


def field_means(model: DenseDLRM, batches: Iterable[ScoringBatch]) -> np.ndarray:
    """(F, d) mean field vector over the data: a forward-only pass through the lookups and the bottom MLP."""
    model.eval()
    total, n = None, 0
    with torch.no_grad():
        for b in batches:
            s = model.field_vectors(b.dense, b.emb).sum(0).double()
            total = s if total is None else total + s
            n += len(b)
    if total is None:
        raise ValueError("no scoring data")
    return (total / n).numpy()


def taylor_scores(model: DenseDLRM, batches: Iterable[ScoringBatch], config: TaylorConfig = TaylorConfig()
                  ) -> FieldScores:
    """F-Permutation scores of every field over the batches, single process. 'signed' reads the data once;
    'abs' reads it twice (means, then gradients), so `batches` must then be re-iterable (e.g. a list)."""
    dim = model.config.embedding_dim
    mean = None
    if config.variant == "abs":
        if iter(batches) is batches:
            raise ValueError("the 'abs' variant reads the data twice: pass a list, not a one-shot iterator")
        mean = field_means(model, batches)
    acc = FieldScoreAccumulator(model.fields, dim, mean=mean)
    for b in batches:
        acc.add(model, b.dense, b.emb, b.labels)
    return acc.finish(config.variant)
