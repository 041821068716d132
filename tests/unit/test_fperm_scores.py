"""F-Permutation scores: per-sample gradients, split-and-merge = one pass, Taylor vs exact, the baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shark.fperm import (FieldScoreAccumulator, FieldScores, FieldSums, PermutationConfig, ScoringBatch, TaylorConfig,
                         exact_errors, exact_permutation_scores, field_means, per_sample_gradients, permutation_scores,
                         shuffles, taylor_scores, taylor_terms)
from shark.model import DenseDLRM, DLRMConfig


def _model(tables: int = 5, n_dense: int = 3, dim: int = 4) -> DenseDLRM:
    return DenseDLRM(DLRMConfig(n_dense=n_dense, table_names=tuple(f"C{i}" for i in range(1, tables + 1)),
                                embedding_dim=dim, bottom=(8,), top=(16, 8), seed=1))


def _batches(model: DenseDLRM, n_batches: int = 4, b: int = 64, seed: int = 0) -> list[ScoringBatch]:
    g = torch.Generator().manual_seed(seed)
    c = model.config
    return [ScoringBatch(torch.randn(b, c.n_dense, generator=g),
                         0.5 * torch.randn(b, len(c.table_names), c.embedding_dim, generator=g),
                         torch.randint(0, 2, (b,), generator=g).float()) for _ in range(n_batches)]


def test_per_sample_gradients_match_one_sample_at_a_time():
    model = _model()
    b = _batches(model, 1, 16)[0]
    vectors = model.field_vectors(b.dense, b.emb).detach()
    _, g = per_sample_gradients(model, vectors, b.labels)
    for i in (0, 7, 15):
        _, gi = per_sample_gradients(model, vectors[i:i + 1], b.labels[i:i + 1])
        torch.testing.assert_close(g[i], gi[0], rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("variant", ["signed", "abs", "abs-mean"])
def test_split_and_merge_equals_one_pass(variant):
    model = _model()
    batches = _batches(model, 6)
    one = taylor_scores(model, batches, TaylorConfig(variant))
    mean = field_means(model, batches) if variant == "abs-mean" else None
    # three "workers" with uneven shares; partial sums travel as plain dicts
    parts = []
    for share in (batches[:1], batches[1:4], batches[4:]):
        acc = FieldScoreAccumulator(model.fields, model.config.embedding_dim, mean=mean)
        for b in share:
            acc.add(model, b.dense, b.emb, b.labels)
        parts.append(FieldSums.from_dict(acc.partial().to_dict()))
    merged = parts[0] + parts[1] + parts[2]
    np.testing.assert_allclose(merged.finish(variant).scores, one.scores, rtol=1e-9, atol=1e-12)
    coord = FieldScoreAccumulator(model.fields, model.config.embedding_dim, mean=mean)
    for p in parts:
        coord.merge(p)
    np.testing.assert_allclose(coord.finish(variant).scores, one.scores, rtol=1e-9, atol=1e-12)


def test_signed_pass_gives_the_means_for_the_abs_pass():
    model = _model()
    batches = _batches(model, 3)
    acc = FieldScoreAccumulator(model.fields, model.config.embedding_dim)
    for b in batches:
        acc.add(model, b.dense, b.emb, b.labels)
    np.testing.assert_allclose(acc.partial().means(), field_means(model, batches), rtol=1e-6, atol=1e-8)


def test_signed_score_is_mean_of_per_sample_terms():
    model = _model()
    batches = _batches(model, 3)
    mean = torch.from_numpy(field_means(model, batches)).float()
    terms = torch.cat([taylor_terms(model, model.field_vectors(b.dense, b.emb).detach(), b.labels, mean)
                       for b in batches])
    signed = taylor_scores(model, batches, TaylorConfig("signed"))
    absolute = taylor_scores(model, batches, TaylorConfig("abs-mean"))
    np.testing.assert_allclose(signed.scores, terms.double().mean(0).numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(absolute.scores, terms.abs().double().mean(0).numpy(), rtol=1e-4, atol=1e-7)
    assert signed.method == "fperm-signed" and absolute.fields == tuple(model.fields)


def test_taylor_is_first_order_of_exact_permutation():
    """Per sample, eq. 4 is the first-order term of eq. 1: shrinking the spread of a field's values by eps
    shrinks the gap between the two by eps^2 while the terms themselves shrink by eps."""
    model = _model(tables=3, n_dense=0)
    g = torch.Generator().manual_seed(3)
    n, d = 40, model.config.embedding_dim
    centre = torch.randn(1, 3, d, generator=g)
    spread = torch.randn(n, 3, d, generator=g)
    labels = torch.randint(0, 2, (n,), generator=g).float()
    gaps, sizes = [], []
    for eps in (1e-1, 1e-2):
        v = centre + eps * spread
        exact = exact_errors(model, v, labels)
        taylor = taylor_terms(model, v, labels, v.mean(0)).double()
        gaps.append(float((exact - taylor).abs().max()))
        sizes.append(float(taylor.abs().max()))
    assert sizes[1] / sizes[0] == pytest.approx(0.1, rel=0.2)
    assert gaps[1] / gaps[0] < 0.02


def test_exact_and_permutation_agree_on_many_repeats():
    model = _model(tables=3, n_dense=2)
    g = torch.Generator().manual_seed(5)
    n = 30
    emb = 0.8 * torch.randn(n, 3, model.config.embedding_dim, generator=g)
    batch = ScoringBatch(torch.randn(n, 2, generator=g), emb, torch.randint(0, 2, (n,), generator=g).float())
    vectors = model.field_vectors(batch.dense, batch.emb).detach()
    exact = exact_permutation_scores(model, vectors, batch.labels)
    perm = permutation_scores(model, [batch], PermutationConfig(repeats=400, seed=0))
    np.testing.assert_allclose(perm.scores, exact.scores, atol=0.15 * np.abs(exact.scores).max())
    assert perm.method == "permutation-T400"


def test_permutation_is_seeded_and_a_constant_field_scores_zero():
    model = _model()
    batches = _batches(model, 2)
    for b in batches:
        b.emb[:, 2] = 0.3  # C3 takes a single value: shuffling it changes nothing
    a = permutation_scores(model, batches, PermutationConfig(repeats=2, seed=7))
    b = permutation_scores(model, batches, PermutationConfig(repeats=2, seed=7))
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.as_dict()["C3"] == pytest.approx(0.0, abs=1e-7)
    fp = taylor_scores(model, batches, TaylorConfig("abs"))
    assert fp.as_dict()["C3"] == pytest.approx(0.0, abs=1e-7)
    assert fp.ranking()[-1] == "C3"


def test_configs_and_sums_are_validated():
    with pytest.raises(ValueError):
        TaylorConfig("squared")
    with pytest.raises(ValueError):
        PermutationConfig(repeats=0)
    model = _model()
    acc = FieldScoreAccumulator(model.fields, model.config.embedding_dim)
    with pytest.raises(ValueError, match="no samples"):
        acc.finish()
    b = _batches(model, 1)[0]
    acc.add(model, b.dense, b.emb, b.labels)
    with pytest.raises(ValueError, match="abs-mean"):
        acc.finish("abs-mean")
    other = FieldScoreAccumulator(["a", "b"], model.config.embedding_dim)
    with pytest.raises(ValueError, match="different fields"):
        acc.merge(other)
    with pytest.raises(ValueError, match="twice"):
        taylor_scores(model, iter(_batches(model, 1)), TaylorConfig("abs-mean"))
    for bad in ({"draws": 0}, {"draws": 65}, {"seed": -1}):
        with pytest.raises(ValueError):
            TaylorConfig("abs", **bad)
    four, one = FieldScoreAccumulator(model.fields, model.config.embedding_dim), \
        FieldScoreAccumulator(model.fields, model.config.embedding_dim, draws=1)
    with pytest.raises(ValueError, match="shuffles"):
        four.merge(one)
    with pytest.raises(ValueError):
        FieldScores("x", ("a", "b"), np.zeros(3))


def test_abs_is_the_mean_of_first_order_changes_over_in_batch_shuffles():
    """'abs' = mean over samples and the K seeded in-batch shuffles of |g(x) . (e(partner) - e(x))|, computed
    here one draw and one field at a time."""
    model = _model()
    batches = _batches(model, 3, b=50)
    cfg = TaylorConfig("abs", draws=3, seed=4)
    got = taylor_scores(model, batches, cfg)
    total = torch.zeros(len(model.fields), dtype=torch.float64)
    for b in batches:
        v = model.field_vectors(b.dense, b.emb).detach()
        _, g = per_sample_gradients(model, v, b.labels)
        for perm in shuffles(len(b), cfg.draws, cfg.seed):
            for f in range(len(model.fields)):
                total[f] += (g[:, f] * (v[perm, f] - v[:, f])).sum(1).abs().sum().double()
    np.testing.assert_allclose(got.scores, (total / (150 * 3)).numpy(), rtol=1e-5)
    assert got.method == "fperm-abs"


def test_shuffles_depend_only_on_seed_and_batch_size():
    a, b = shuffles(64, 4, 0), shuffles(64, 4, 0)
    assert torch.equal(a, b) and a.shape == (4, 64)
    assert all(torch.equal(torch.sort(p).values, torch.arange(64)) for p in a)  # permutations
    assert not torch.equal(a, shuffles(64, 4, 1)) and not torch.equal(a[0], a[1])


def test_abs_scores_a_constant_field_zero_and_do_not_depend_on_batch_order():
    """A field with one value cannot change under a shuffle: 'abs' gives it exactly 0. The shuffles depend on
    (seed, batch size) only, so reordering the batches (as a split over workers does) changes nothing."""
    model = _model(tables=4, n_dense=0)
    batches = _batches(model, 4, b=128)
    for b in batches:
        b.emb[:, 3] = 0.7  # C4 constant
    fp = taylor_scores(model, batches, TaylorConfig("abs", draws=2))
    assert fp.as_dict()["C4"] == pytest.approx(0.0, abs=1e-12) and fp.ranking()[-1] == "C4"
    assert (fp.scores[:3] > 0).all()
    again = taylor_scores(model, batches[::-1], TaylorConfig("abs", draws=2))
    np.testing.assert_allclose(again.scores, fp.scores, rtol=1e-9)


def test_permutation_scores_only_the_fields_asked_for():
    model = _model()
    one = _batches(model, 1, 64)
    full = permutation_scores(model, one, PermutationConfig(repeats=2, seed=3))
    first = permutation_scores(model, one, PermutationConfig(repeats=2, seed=3), fields=model.fields[:3])
    # one batch: the first fields draw the same shuffles in either run
    assert first.fields == tuple(model.fields[:3])
    np.testing.assert_allclose(first.scores, full.scores[:3], rtol=1e-6)
    picked = permutation_scores(model, one, PermutationConfig(repeats=1), fields=("C4", "dense"))
    assert picked.fields == ("C4", "dense") and picked.scores.shape == (2,)
    for bad in (("C9",), (), ("C1", "C1")):
        with pytest.raises(ValueError, match="distinct active fields"):
            permutation_scores(model, one, PermutationConfig(), fields=bad)
