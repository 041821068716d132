"""Exact permutation importance (paper eq. 1-2) for small data: test-only sizes.

error(i, x) = sum over the distinct values v' of field i, weighted by their frequency p(v'), of loss(x with
field i set to v') - loss(x). Values are the distinct field vectors (a table's distinct rows; for the dense field,
the distinct bottom-MLP outputs). Cost: N * (distinct values) forward passes per field, vectorised over samples
and values in chunks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shark.fperm.scores import FieldScores
from shark.model import DenseDLRM

MAX_PAIRS = 20_000_000  # N * distinct values per field, above which this is not the tool


@torch.no_grad()
def exact_errors(model: DenseDLRM, vectors: torch.Tensor, labels: torch.Tensor, chunk_rows: int = 200_000
                 ) -> torch.Tensor:
    """(N, F, d) field vectors of the whole (small) data set -> (N, F) per-sample error(i, x) of eq. 1."""
    model.eval()
    n, n_fields, d = vectors.shape
    base = F.binary_cross_entropy_with_logits(model.head(vectors), labels, reduction="none")
    out = torch.zeros(n, n_fields, dtype=torch.float64)
    for i in range(n_fields):
        values, counts = torch.unique(vectors[:, i], dim=0, return_counts=True)
        k = values.shape[0]
        if n * k > MAX_PAIRS:
            raise ValueError(f"exact permutation of field {i} needs {n}x{k} forward rows (> {MAX_PAIRS}); "
                             "it is for small data only")
        p = counts.double() / n
        per = max(1, chunk_rows // n)  # values per chunk
        expected = torch.zeros(n, dtype=torch.float64)
        for lo in range(0, k, per):
            vals = values[lo:lo + per]  # (c, d)
            c = vals.shape[0]
            x = vectors.unsqueeze(0).expand(c, n, n_fields, d).clone()
            x[:, :, i] = vals.unsqueeze(1)
            losses = F.binary_cross_entropy_with_logits(model.head(x.reshape(c * n, n_fields, d)),
                                                        labels.repeat(c), reduction="none").reshape(c, n)
            expected += (p[lo:lo + per].unsqueeze(1) * losses.double()).sum(0)
        out[:, i] = expected - base.double()
    return out


def exact_permutation_scores(model: DenseDLRM, vectors: torch.Tensor, labels: torch.Tensor) -> FieldScores:
    """error(i) of eq. 2 for every field: the mean over samples of eq. 1."""
    return FieldScores("exact", tuple(model.fields), exact_errors(model, vectors, labels).mean(0).numpy())
