"""The Permutation baseline: shuffle one field's vectors within the batch (other fields fixed), T times per field,
and measure the mean increase of the per-sample loss. Cost: F * T forward passes of the head per batch (the
lookups and the bottom MLP run once per batch and are shared)."""

from __future__ import annotations

from collections.abc import Iterable

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
                         generator: torch.Generator) -> torch.Tensor:
    """(F,) summed (over samples and repeats) loss increase when each field is shuffled within the batch."""
    base = _losses(model, vectors, labels).sum()
    work = vectors.clone()
    n_fields = vectors.shape[1]
    out = torch.zeros(n_fields, dtype=torch.float64)
    for f in range(n_fields):
        for _ in range(repeats):
            perm = torch.randperm(vectors.shape[0], generator=generator)
            work[:, f] = vectors[perm, f]
            out[f] += float(_losses(model, work, labels).sum() - base)
        work[:, f] = vectors[:, f]
    return out


def permutation_scores(model: DenseDLRM, batches: Iterable[ScoringBatch],
                       config: PermutationConfig = PermutationConfig()) -> FieldScores:
    """Mean per-sample loss increase per field (nats), averaged over the T repeats."""
    model.eval()
    gen = torch.Generator().manual_seed(config.seed)
    total = torch.zeros(len(model.fields), dtype=torch.float64)
    n = 0
    for b in batches:
        with torch.no_grad():
            vectors = model.field_vectors(b.dense, b.emb)
        total += permutation_increase(model, vectors, b.labels, config.repeats, gen)
        n += len(b)
    if n == 0:
        raise ValueError("no scoring data")
    return FieldScores(f"permutation-T{config.repeats}", tuple(model.fields),
                       (total / (n * config.repeats)).numpy().astype(np.float64))
