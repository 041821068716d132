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


def test_curve_from_predictions_gathered_over_shares_is_the_single_process_curve():
    """What `shark compress` does across workers: each predicts its share of the rows along the drop order; the
    coordinator stacks them and takes the AUCs."""
    from shark.fperm import drop_order, drop_predictions, kept_curve

    model, batches = _setup()
    scores = FieldScores("t", tuple(model.fields), np.array([0.5, 0.1, 0.4, 0.05, 0.3]))
    whole = auc_vs_fields_kept(model, scores, batches)
    order = drop_order(scores)
    parts = [drop_predictions(model, order, [b]) for b in batches]  # one batch per "worker"
    assert all(p.shape == (4, 200) and p.dtype == np.float32 for p in parts)
    labels = np.concatenate([b.labels.numpy() for b in batches])
    gathered = kept_curve("t", order, len(model.fields), labels, np.concatenate(parts, axis=1))
    np.testing.assert_array_equal(gathered.auc, whole.auc)
    assert gathered.area == whole.area and gathered.dropped == whole.dropped
    with pytest.raises(ValueError, match="probabilities"):
        kept_curve("t", order, len(model.fields), labels, parts[0])
    with pytest.raises(ValueError, match="drop order"):
        drop_predictions(model, ("C1", "C9"), batches)
    with pytest.raises(ValueError, match="drop order"):
        drop_predictions(model, ("C1", "C2", "C3", "C4"), batches)  # would leave one field


def test_permutation_totals_over_shares_add_up():
    from shark.fperm import PermutationConfig, permutation_scores, permutation_totals
    from shark.fperm.permutation import permutation_increase

    model, batches = _setup()
    names, total, n = permutation_totals(model, batches, PermutationConfig(repeats=2, seed=1))
    assert names == tuple(model.fields) and n == 400 and total.shape == (5,)
    np.testing.assert_allclose(total / (n * 2), permutation_scores(model, batches,
                                                                  PermutationConfig(repeats=2, seed=1)).scores)
    # a share of the rows is a sum of its own; shares drawing the same shuffles add up to the whole
    one = [permutation_totals(model, [b], PermutationConfig(repeats=2, seed=1)) for b in batches]
    assert sum(p[2] for p in one) == n
    gen = torch.Generator().manual_seed(1)
    by_batch = [permutation_increase(model, model.field_vectors(b.dense, b.emb).detach(), b.labels, 2, gen)
                for b in batches]
    np.testing.assert_allclose(by_batch[0].numpy(), one[0][1])
    np.testing.assert_allclose((by_batch[0] + by_batch[1]).numpy(), total)
