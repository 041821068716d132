"""The Permutation baseline: shuffle one field's vectors within the batch (other fields fixed), T times per field,
and measure the mean increase of the per-sample loss. Cost: F * T forward passes of the head per batch (the
lookups and the bottom MLP run once per batch and are shared)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from shark.fperm.config import PermutationConfig
from shark.fperm.inputs import ScoringBatch
from shark.fperm.scores import FieldScores
from shark.model import DenseDLRM


def _losses(model: DenseDLRM, vectors: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(model.head(vectors), labels, reduction="none")


@torch.no_grad()
def permutation_increase(model: DenseDLRM, vectors: torch.Tensor, labels: torch.Tensor, repeats: int,
                         generator: torch.Generator, columns: Sequence[int] | None = None) -> torch.Tensor:
    """(len(columns),) summed (over samples and repeats) loss increase when each of the field columns (default:
    all) is shuffled within the batch: one head forward per column and repeat."""
    base = _losses(model, vectors, labels).sum()
    work = vectors.clone()
    cols = range(vectors.shape[1]) if columns is None else columns
    out = torch.zeros(len(cols), dtype=torch.float64)
    for i, f in enumerate(cols):
        for _ in range(repeats):
            perm = torch.randperm(vectors.shape[0], generator=generator)
            work[:, f] = vectors[perm, f]
            out[i] += float(_losses(model, work, labels).sum() - base)
        work[:, f] = vectors[:, f]
    return out


def permutation_totals(model: DenseDLRM, batches: Iterable[ScoringBatch],
                       config: PermutationConfig = PermutationConfig(),
                       fields: Sequence[str] | None = None) -> tuple[tuple[str, ...], np.ndarray, int]:
    """(the fields scored, (F,) float64 loss increases summed over samples and the T repeats, samples): plain
    sums, so several workers' totals over their shares of the rows add up (Permutation's scores are the sum over
    n * T). Scores the named fields only (default: every field), at T forwards per field and batch."""
    names = tuple(model.fields) if fields is None else tuple(fields)
    unknown = [f for f in names if f not in model.fields]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"fields to score must be distinct active fields, got {list(names)}; "
                         f"active: {list(model.fields)}")
    columns = [model.fields.index(f) for f in names]
    model.eval()
    gen = torch.Generator().manual_seed(config.seed)
    total = torch.zeros(len(names), dtype=torch.float64)
    n = 0
    for b in batches:
        with torch.no_grad():
            vectors = model.field_vectors(b.dense, b.emb)
        total += permutation_increase(model, vectors, b.labels, config.repeats, gen, columns)
        n += len(b)
    return names, total.numpy(), n


def permutation_scores(model: DenseDLRM, batches: Iterable[ScoringBatch],
                       config: PermutationConfig = PermutationConfig(),
                       fields: Sequence[str] | None = None) -> FieldScores:
    """Mean per-sample loss increase per field (nats), averaged over the T repeats; of the named fields only
    (default: every field), at T forwards per field and batch."""
    names, total, n = permutation_totals(model, batches, config, fields)
    if n == 0:
        raise ValueError("no scoring data")
    return FieldScores(f"permutation-T{config.repeats}", names, (total / (n * config.repeats)).astype(np.float64))
