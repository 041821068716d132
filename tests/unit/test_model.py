import pytest
import torch

from shark.model import DENSE_FIELD, DenseDLRM, DLRMConfig


def _model(tables=("a", "b", "c", "d"), n_dense=5, seed=0):
    return DenseDLRM(DLRMConfig(n_dense=n_dense, table_names=tables, embedding_dim=8, bottom=(16,),
                                top=(32, 16), seed=seed))


def _inputs(b=64, t=4, n_dense=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n_dense, generator=g), torch.randn(b, t, d, generator=g)


def test_forward_shape_and_input_width():
    m = _model()
    dense, emb = _inputs()
    assert m(dense, emb).shape == (64,)
    f = 5  # dense + 4 tables
    assert m.top[0].in_features == 8 + f * (f - 1) // 2


@pytest.mark.parametrize("field", ["a", "c", "d"])
def test_dropping_a_zero_table_leaves_every_prediction_unchanged(field):
    m = _model()
    dense, emb = _inputs()
    k = m.tables.index(field)
    emb[:, k, :] = 0.0
    with torch.no_grad():
        before = m(dense, emb)
        params_before = sum(p.numel() for p in m.parameters())
        m.drop_field(field)
        keep = [i for i in range(emb.shape[1]) if i != k]
        after = m(dense, emb[:, keep, :])
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    assert field not in m.fields and field not in m.tables
    # The model really shrank: the field's F-1 interaction columns left the top MLP's first layer.
    assert sum(p.numel() for p in m.parameters()) == params_before - 4 * m.top[0].out_features


def test_dropping_dense_field_removes_bottom_mlp_and_keeps_other_weights():
    m = _model()
    dense, emb = _inputs()
    pair_weights = m.top[0].weight.detach().clone()
    m.drop_field(DENSE_FIELD)
    assert m.bottom is None and DENSE_FIELD not in m.fields
    # Kept columns are the table-table pairs, in order: the dense vector (8) and the dense-table pairs go.
    f = 5
    rows, cols = torch.tril_indices(f, f, offset=-1)
    keep = torch.cat([torch.zeros(8, dtype=torch.bool), (rows != 0) & (cols != 0)])
    torch.testing.assert_close(m.top[0].weight, pair_weights[:, keep])
    assert m(dense, emb).shape == (64,)


def test_drop_then_train_step_works_and_unknown_field_is_a_clear_error():
    m = _model()
    m.drop_field("b")
    dense, emb = _inputs(t=3)
    loss = m(dense, emb.requires_grad_()).sum()
    loss.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    with pytest.raises(KeyError, match="no active field 'b'"):
        m.drop_field("b")
    with pytest.raises(ValueError, match="expected rows for 3 tables"):
        m(dense, torch.zeros(64, 4, 8))


def test_config_is_validated():
    with pytest.raises(ValueError):
        DLRMConfig(table_names=("a", "a"))
    with pytest.raises(ValueError):
        DLRMConfig(embedding_dim=0)
