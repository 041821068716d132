import numpy as np
import pytest

from shark.data.batch import RawBatch
from shark.metrics import auc
from shark.train.config import TrainConfig
from shark.train.local import LocalTrainer

TABLES = ["a", "b", "c"]


def _stream(n: int, seed: int, bs: int = 256, truth: list | None = None):
    """Label = a clear function of table a's value and the first dense feature; true p appended to `truth`."""
    rng = np.random.default_rng(seed)
    for s in range(0, n, bs):
        b = min(bs, n - s)
        keys = rng.integers(0, 50, size=(b, 3)).astype(np.uint64)
        dense = rng.exponential(3.0, size=(b, 2)).astype(np.float32)
        logit = np.where(keys[:, 0] % 2 == 0, 1.5, -1.5) + 0.3 * np.log1p(dense[:, 0]) - 0.5
        p = 1 / (1 + np.exp(-logit))
        y = (rng.random(b) < p).astype(np.float32)
        if truth is not None:
            truth.append(p)
        yield RawBatch(y, dense, keys, np.arange(s, s + b) + 1)


def _trainer(**kw) -> LocalTrainer:
    cfg = TrainConfig(capacity=4096, batch_size=256, embedding_dim=8, bottom=(8,), top=(16,), prefetch=0, **kw)
    return LocalTrainer(cfg, n_dense=2, table_names=TABLES)


def test_learns_a_simple_signal_close_to_its_ceiling():
    t = _trainer()
    for _ in range(2):
        log = t.fit(_stream(20_000, seed=1))
    assert log.count == 20_000
    truth: list = []
    held = t.evaluate(_stream(5_000, seed=2, truth=truth))
    y, _ = held.arrays()
    ceiling = auc(y, np.concatenate(truth))
    assert held.summary()["auc"] > ceiling - 0.03  # a broken update lands far below (about 0.5-0.7)


def test_same_seed_same_model_to_the_last_bit():
    """Runs are reproducible with 2 torch threads too (checkpoint round trips will compare to the digit)."""
    a, b = _trainer(seed=7, threads=2), _trainer(seed=7, threads=2)
    a.fit(_stream(4_000, seed=1))
    b.fit(_stream(4_000, seed=1))
    pa = a.evaluate(_stream(500, seed=2)).arrays()[1]
    pb = b.evaluate(_stream(500, seed=2)).arrays()[1]
    np.testing.assert_array_equal(pa, pb)


def test_drop_field_shrinks_model_and_store_and_training_goes_on():
    t = _trainer()
    t.fit(_stream(2_000, seed=1))
    rows_before = t.store.memory_bytes()["rows_used"]
    t.drop_field("b")
    assert t.model.tables == ["a", "c"] and t.store.names == ["a", "c"]
    assert t.store.memory_bytes()["rows_used"] < rows_before
    log = t.fit(_stream(2_000, seed=4))  # data still carries column b; it is ignored
    assert np.isfinite(log.summary()["logloss"])
    t.drop_field("dense")
    assert t.model.fields == ["a", "c"]
    assert np.isfinite(t.evaluate(_stream(500, seed=2)).summary()["logloss"])


def test_evaluation_does_not_grow_the_store():
    t = _trainer()
    t.fit(_stream(1_000, seed=1))
    used = t.store.memory_bytes()["rows_used"]
    rng_keys_unseen = RawBatch(np.zeros(4, np.float32), np.zeros((4, 2), np.float32),
                               np.full((4, 3), 10**9, dtype=np.uint64), np.arange(1, 5))
    t.evaluate([rng_keys_unseen])
    assert t.store.memory_bytes()["rows_used"] == used


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(lr_dense=0.0), dict(capacity=0), dict(threads=0)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)
