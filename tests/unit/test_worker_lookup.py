"""BatchRows and DenseChunks: the worker's pure per-batch bookkeeping."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shark.model import DenseDLRM, DLRMConfig
from worker.dense import DenseChunks
from worker.lookup import batch_rows


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 5), st.integers(1, 50), st.integers(0, 2**31 - 1))
def test_batch_rows_dedupes_per_table_and_inverts(b: int, t: int, cap: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    caps = tuple(int(c) for c in rng.integers(1, cap + 1, size=t))
    ids = np.stack([rng.integers(0, c, size=b) for c in caps], axis=1)
    labels = rng.integers(0, 2, size=b).astype(np.float32)
    tables = tuple(f"T{i}" for i in range(t))
    br = batch_rows(tables, ids, caps, labels)
    concat = np.concatenate([br.ids[n] for n in tables])
    offsets = np.concatenate([[0], np.cumsum([br.ids[n].size for n in tables])])
    for k, name in enumerate(tables):
        assert np.array_equal(br.ids[name], np.unique(ids[:, k]))
        # every occurrence maps back to its own id, inside its own table's segment
        inv = br.inverse[:, k]
        assert ((inv >= offsets[k]) & (inv < offsets[k + 1])).all()
        assert np.array_equal(concat[inv], ids[:, k])
        # click counts: per unique row, positives and negatives of the examples that hold it
        for j, row in enumerate(br.ids[name]):
            hit = ids[:, k] == row
            assert br.c_pos[name][j] == int(labels[hit].sum())
            assert br.c_neg[name][j] == int((1 - labels[hit]).sum())
    assert br.n_unique == concat.size
    split = br.split(np.arange(concat.size))
    assert [split[n].size for n in tables] == [br.ids[n].size for n in tables]


def test_dense_chunks_round_trip_and_grads() -> None:
    model = DenseDLRM(DLRMConfig(n_dense=3, table_names=("a", "b"), embedding_dim=4, bottom=(5,), top=(6,)))
    dense = DenseChunks(model, chunk=7)
    n = sum(p.numel() for p in model.parameters())
    assert dense.size == n and dense.n_rows == -(-n // 7)
    rows = dense.rows()
    assert rows.shape == (dense.n_rows, 7) and np.all(rows.reshape(-1)[n:] == 0)
    before = [p.detach().clone() for p in model.parameters()]
    dense.load(rows * 2)
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p.detach(), q * 2)
    out = model(torch.ones(2, 3), torch.ones(2, 2, 4)).sum()
    out.backward()
    flat = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
    assert np.array_equal(dense.grads().reshape(-1)[:n], flat)


def test_dense_chunks_keep_the_table_layout_when_a_field_is_dropped() -> None:
    cfg = DLRMConfig(n_dense=3, table_names=("a", "b", "c"), embedding_dim=4, bottom=(5,), top=(6,))
    model = DenseDLRM(cfg)
    dense = DenseChunks(model, chunk=7)
    table = dense.rows() * 1.0  # what the shard holds, in the original layout
    reference = DenseDLRM(cfg)  # the same weights, dropped the plain way
    reference.load_state_dict(model.state_dict())
    reference.drop_field("b")
    reference.drop_field("dense")
    smaller = dense.after_drop(model, lambda m: m.drop_field("b")).after_drop(model, lambda m: m.drop_field("dense"))
    assert smaller.n_rows == dense.n_rows and smaller.size < dense.size  # same table, fewer parameters
    for p in model.parameters():
        p.data.zero_()
    smaller.load(table)  # loading from the unchanged table gives exactly the surviving weights
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    # and the smaller model's rows land at the same places in the table
    assert np.array_equal(smaller.rows()[smaller.rows() != 0], table[smaller.rows() != 0])
