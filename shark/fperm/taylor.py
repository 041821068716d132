"""F-Permutation's first-order Taylor score (paper eq. 4), as an accumulator of plain partial sums.

For field f (the dense-feature vector is a field too), sample x, field vector e_f(x) and per-sample gradient
g_f(x) = dloss(x)/de_f(x), replacing e_f(x) by another value v' of the field changes the loss, to first order,
by g_f(x) . (e_f(v') - e_f(x)). Eq. 1 averages over v' ~ p(v'); the scores (see TaylorConfig):

    signed_f   = mean_x g_f(x) . (mu_f - e_f(x)) = (mu_f . sum_x g_f(x) - sum_x g_f(x) . e_f(x)) / n   (eq. 4)
    abs_f      = mean_x mean_k |g_f(x) . (e_f(x_k) - e_f(x))|   x_k: x's partner in the k-th in-batch shuffle
    abs-mean_f = mean_x |g_f(x) . (mu_f - e_f(x))|

with mu_f = sum_x e_f(x) / n the field's mean vector over the scoring data.

Per-sample gradients cost one backward pass: the (B, F, d) field vectors are the autograd leaf and the loss is
summed (not averaged) over the batch; samples are independent, so row b of the gradient is dloss(b)/de(b). The
shuffled partners reuse that gradient, so "abs" costs K extra (B, F, d) dot products, no extra pass.

"signed" and "abs" need only additive sums (n, sum e, sum g, sum g.e, sum of the shuffled terms), so each worker
accumulates over its share of the data in one pass and a coordinator adds the `FieldSums` and finishes. A shuffle
depends only on (seed, batch size), so the merged result equals the single-process one on the same batches.
"abs-mean" needs mu first: pass 1 gathers sum e, the coordinator fixes mu = sum e / n, and pass 2 accumulates
sum |g.(mu - e)| with that mu on every worker. Sums are float64, so merging is exact to float tolerance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from shark.fperm.config import VARIANTS, TaylorConfig
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

    n: samples; sum_e, sum_g: (F, d); sum_ge: (F,) sum of g.e; sum_draws: (F,) sum over samples and the `draws`
    in-batch shuffles of |g.(e_partner - e)|; sum_abs: (F,) sum of |g.(mean - e)| for the given `mean` (F, d), or
    None when no mean was fixed."""

    fields: tuple[str, ...]
    n: int
    sum_e: np.ndarray
    sum_g: np.ndarray
    sum_ge: np.ndarray
    sum_draws: np.ndarray
    draws: int
    sum_abs: np.ndarray | None = None
    mean: np.ndarray | None = None

    def __post_init__(self) -> None:
        f = len(self.fields)
        if (self.n < 0 or self.sum_e.shape[0] != f or self.sum_g.shape != self.sum_e.shape
                or self.sum_ge.shape != (f,) or self.sum_draws.shape != (f,) or self.draws < 1):
            raise ValueError("inconsistent partial sums")
        if (self.sum_abs is None) != (self.mean is None):
            raise ValueError("sum_abs and mean go together")

    @staticmethod
    def zeros(fields: Sequence[str], dim: int, mean: np.ndarray | None = None, draws: int = 4) -> FieldSums:
        f = len(fields)
        m = None if mean is None else np.asarray(mean, dtype=np.float64).reshape(f, dim)
        return FieldSums(tuple(fields), 0, np.zeros((f, dim)), np.zeros((f, dim)), np.zeros(f), np.zeros(f), draws,
                         None if m is None else np.zeros(f), m)

    def __add__(self, other: FieldSums) -> FieldSums:
        if self.fields != other.fields or self.sum_e.shape != other.sum_e.shape:
            raise ValueError(f"cannot merge sums over different fields: {self.fields} vs {other.fields}")
        if self.draws != other.draws:
            raise ValueError(f"cannot merge sums taken with {self.draws} and {other.draws} shuffles per batch")
        if (self.mean is None) != (other.mean is None) or (
                self.mean is not None and not np.array_equal(self.mean, other.mean)):
            raise ValueError("cannot merge absolute-value sums taken with different means")
        return FieldSums(self.fields, self.n + other.n, self.sum_e + other.sum_e, self.sum_g + other.sum_g,
                         self.sum_ge + other.sum_ge, self.sum_draws + other.sum_draws, self.draws,
                         None if self.sum_abs is None else self.sum_abs + other.sum_abs, self.mean)

    def means(self) -> np.ndarray:
        """(F, d) population mean of each field's vectors over the samples summed so far."""
        if self.n == 0:
            raise ValueError("no samples accumulated")
        return self.sum_e / self.n

    def finish(self, variant: str) -> FieldScores:
        """The scores (see TaylorConfig) over all samples summed so far."""
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if self.n == 0:
            raise ValueError("no samples accumulated")
        if variant == "signed":
            s = (np.einsum("fd,fd->f", self.means(), self.sum_g) - self.sum_ge) / self.n
        elif variant == "abs":
            s = self.sum_draws / (self.n * self.draws)
        else:
            if self.sum_abs is None:
                raise ValueError("the 'abs-mean' variant needs a pass with the field means fixed (mean=...)")
            s = self.sum_abs / self.n
        return FieldScores(f"fperm-{variant}", self.fields, s)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (for a wire or JSON); `from_dict` inverts it exactly (float64 round-trips)."""
        return {"fields": list(self.fields), "n": self.n, "sum_e": self.sum_e.tolist(), "sum_g": self.sum_g.tolist(),
                "sum_ge": self.sum_ge.tolist(), "sum_draws": self.sum_draws.tolist(), "draws": self.draws,
                "sum_abs": None if self.sum_abs is None else self.sum_abs.tolist(),
                "mean": None if self.mean is None else self.mean.tolist()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> FieldSums:
        def arr(x: Any) -> np.ndarray | None:
            return None if x is None else np.asarray(x, dtype=np.float64)

        return FieldSums(tuple(d["fields"]), int(d["n"]), arr(d["sum_e"]), arr(d["sum_g"]), arr(d["sum_ge"]),
                         arr(d["sum_draws"]), int(d["draws"]), arr(d["sum_abs"]), arr(d["mean"]))


def shuffles(batch_size: int, draws: int, seed: int) -> torch.Tensor:
    """(draws, B) in-batch partner indices: seeded by (seed, B) only, so they do not depend on which worker or
    which position in the stream a batch has."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + batch_size)
    return torch.stack([torch.randperm(batch_size, generator=g) for _ in range(draws)])


class FieldScoreAccumulator:
    """Accumulates the partial sums over batches; `finish` gives the scores.

        acc = FieldScoreAccumulator(model.fields, dim)            # one pass: "signed", "abs" and the means
        for b in batches: acc.add(model, b.dense, b.emb, b.labels)
        mean = acc.partial().means()
        acc2 = FieldScoreAccumulator(model.fields, dim, mean=mean)  # a second pass, only for "abs-mean"

    Distributed: each worker runs its own accumulator and returns `partial()`; the coordinator sums the
    FieldSums (or calls `merge`) and finishes. Sums are kept as float64 tensors between batches (no per-batch
    numpy round trip) and turned into a FieldSums on `partial()`.
    """

    def __init__(self, fields: Sequence[str], dim: int, mean: np.ndarray | None = None, draws: int = 4,
                 seed: int = 0) -> None:
        if not fields or dim < 1:
            raise ValueError("need at least one field and dim >= 1")
        TaylorConfig("abs", draws, seed)  # validates draws and seed
        self.fields = tuple(fields)
        self.dim = dim
        self.draws, self.seed = draws, seed
        zero = FieldSums.zeros(self.fields, dim, mean, draws)
        self._mean = zero.mean
        self._mean_t = None if mean is None else torch.from_numpy(zero.mean).float()
        self._n = 0
        f = len(self.fields)
        self._t = {k: torch.zeros(shape, dtype=torch.float64)
                   for k, shape in (("e", (f, dim)), ("g", (f, dim)), ("ge", (f,)), ("draws", (f,)), ("abs", (f,)))}
        self._perms: dict[int, torch.Tensor] = {}
        self._base: FieldSums | None = None  # sums merged in from elsewhere

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
        b = int(v.shape[0])
        with torch.no_grad():
            # (B, F) dot products as multiply + sum over d: about 2x faster here than einsum's batched matmuls
            ge = (g * v).sum(-1)  # g(x) . e(x)
            perms = self._perms.get(b)
            if perms is None:
                perms = self._perms[b] = shuffles(b, self.draws, self.seed)
            t = self._t
            for perm in perms:  # K draws (not fields): |g(x) . e(partner) - g(x) . e(x)|
                t["draws"] += ((v.index_select(0, perm) * g).sum(-1) - ge).abs().sum(0).double()
            t["e"] += v.sum(0).double()
            t["g"] += g.sum(0).double()
            t["ge"] += ge.sum(0).double()
            if self._mean_t is not None:
                t["abs"] += (torch.einsum("bfd,fd->bf", g, self._mean_t) - ge).abs().sum(0).double()
        self._n += b

    def partial(self) -> FieldSums:
        t = self._t
        own = FieldSums(self.fields, self._n, t["e"].numpy().copy(), t["g"].numpy().copy(), t["ge"].numpy().copy(),
                        t["draws"].numpy().copy(), self.draws,
                        None if self._mean is None else t["abs"].numpy().copy(), self._mean)
        return own if self._base is None else self._base + own

    def merge(self, other: FieldScoreAccumulator | FieldSums) -> None:
        part = other.partial() if isinstance(other, FieldScoreAccumulator) else other
        self.partial() + part  # validates compatibility before anything changes
        self._base = part if self._base is None else self._base + part

    def finish(self, variant: str = "abs") -> FieldScores:
        return self.partial().finish(variant)


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
    """F-Permutation scores of every field over the batches, single process. 'signed' and 'abs' read the data
    once; 'abs-mean' reads it twice (means, then gradients), so `batches` must then be re-iterable (a list)."""
    dim = model.config.embedding_dim
    mean = None
    if config.variant == "abs-mean":
        if iter(batches) is batches:
            raise ValueError("the 'abs-mean' variant reads the data twice: pass a list, not a one-shot iterator")
        mean = field_means(model, batches)
    acc = FieldScoreAccumulator(model.fields, dim, mean=mean, draws=config.draws, seed=config.seed)
    for b in batches:
        acc.add(model, b.dense, b.emb, b.labels)
    return acc.finish(config.variant)
