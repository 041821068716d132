"""AUC-vs-fields-kept curve: drop order, column bookkeeping, area, and the model left untouched."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch

from shark.fperm import FieldScores, ScoringBatch, auc_vs_fields_kept
from shark.metrics import auc
from shark.model import DenseDLRM, DLRMConfig


def _setup() -> tuple[DenseDLRM, list[ScoringBatch]]:
    model = DenseDLRM(DLRMConfig(n_dense=3, table_names=("C1", "C2", "C3", "C4"), embedding_dim=4, bottom=(8,),
                                 top=(16,), seed=2))
    g = torch.Generator().manual_seed(0)
    batches = [ScoringBatch(torch.randn(200, 3, generator=g), torch.randn(200, 4, 4, generator=g),
                            torch.randint(0, 2, (200,), generator=g).float()) for _ in range(2)]
    return model, batches


@torch.no_grad()
def _auc_zeroed(model: DenseDLRM, batches: list[ScoringBatch], zero: list[int]) -> float:
    """AUC of the full model with some field vectors set to zero (what dropping them amounts to)."""
    probs = []
    for b in batches:
        v = model.field_vectors(b.dense, b.emb).clone()
        v[:, zero] = 0.0
        probs.append(torch.sigmoid(model.head(v)).numpy())
    return auc(np.concatenate([b.labels.numpy() for b in batches]), np.concatenate(probs))


def test_curve_drops_lowest_first_and_matches_zeroed_fields():
    model, batches = _setup()
    fields = tuple(model.fields)  # dense, C1..C4
    scores = FieldScores("t", fields, np.array([0.5, 0.1, 0.4, 0.05, 0.3]))  # order to drop: C3, C1, C4
    c = auc_vs_fields_kept(model, scores, batches)
    assert c.dropped == ("C3", "C1", "C4")
    assert c.fields_kept.tolist() == [5, 4, 3, 2]
    model.eval()
    expected = [_auc_zeroed(model, batches, z) for z in ([], [3], [3, 1], [3, 1, 4])]
    np.testing.assert_allclose(c.auc, expected, atol=1e-6)
    assert c.area == pytest.approx(float(np.mean([(a + b) / 2 for a, b in pairwise(expected)])))
    assert model.fields == list(fields)  # untouched
    assert c.to_json()["dropped"] == ["C3", "C1", "C4"]


def test_curve_can_drop_the_dense_field_and_validates():
    model, batches = _setup()
    scores = FieldScores("t", tuple(model.fields), np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    c = auc_vs_fields_kept(model, scores, batches, min_fields=3)
    assert c.dropped == ("dense", "C1")
    model.eval()
    np.testing.assert_allclose(c.auc[-1], _auc_zeroed(model, batches, [0, 1]), atol=1e-6)
    with pytest.raises(ValueError):
        auc_vs_fields_kept(model, scores, batches, min_fields=1)
    with pytest.raises(ValueError):
        auc_vs_fields_kept(model, FieldScores("t", ("a", "b"), np.zeros(2)), batches)
