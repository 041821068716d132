import numpy as np
import torch

from shark.model import EmbeddingStore


def test_pull_dedups_and_initialises_deterministically():
    s1 = EmbeddingStore(["a", "b"], [100, 50], dim=4, seed=3)
    s2 = EmbeddingStore(["a", "b"], [100, 50], dim=4, seed=3)
    ids = np.array([[1, 2], [1, 3], [7, 2]])
    rows, inv, emb = s1.pull(ids)
    assert rows.tolist() == sorted({1, 7, 100 + 2, 100 + 3})
    full = emb[inv]  # (3, 2, 4)
    torch.testing.assert_close(full[0, 0], full[1, 0])  # row 1 of table a, looked up twice
    torch.testing.assert_close(full[0, 1], full[2, 1])  # row 2 of table b
    assert not torch.equal(full[0, 0], full[0, 1])
    _, _, emb2 = s2.pull(ids)
    torch.testing.assert_close(emb, emb2)
    assert emb.abs().max() <= 0.05 and emb.abs().max() > 0


def test_read_only_pull_does_not_store_rows():
    s = EmbeddingStore(["a"], [1000], dim=4)
    _, _, emb = s.pull(np.array([[5]]), create=False)
    assert s.memory_bytes()["rows_used"] == 0
    _, _, emb2 = s.pull(np.array([[5]]))
    torch.testing.assert_close(emb, emb2)
    assert s.memory_bytes()["rows_used"] == 1


def test_push_is_rowwise_adagrad_on_touched_rows_only():
    s = EmbeddingStore(["a"], [10], dim=2, lr=0.1)
    rows, _, emb = s.pull(np.array([[3], [4]]))
    before = s.weight.clone()
    g = torch.tensor([[1.0, -1.0], [0.5, 0.5]])
    s.push(rows, g)
    state = g.pow(2).mean(1)
    expect = before[rows] - 0.1 * g / state.sqrt().unsqueeze(1)
    torch.testing.assert_close(s.weight[rows], expect)
    untouched = [i for i in range(10) if i not in (3, 4)]
    torch.testing.assert_close(s.weight[untouched], before[untouched])


def test_drop_table_keeps_other_tables_rows():
    s = EmbeddingStore(["a", "b", "c"], [5, 6, 7], dim=3)
    s.pull(np.array([[0, 1, 2]]))
    b, c = s.table_rows("b").clone(), s.table_rows("c").clone()
    s.drop_table("a")
    assert s.names == ["b", "c"] and s.weight.shape == (13, 3)
    torch.testing.assert_close(s.table_rows("b"), b)
    torch.testing.assert_close(s.table_rows("c"), c)
    assert s.memory_bytes()["rows_used"] == 2
