"""PSTrainer (the worker's loop) on an in-process RowStore matches the single-process LocalTrainer.

Same data, same seed, synchronous pushes: the only differences are float rounding orders (Adagrad in numpy on the
shard vs torch locally; Adam on the shard vs torch.optim.Adam), so the two runs must agree closely.
"""

from __future__ import annotations

from concurrent.futures import Future

import numpy as np

from ps.store import RowStore, TableConfig
from shark.data.synthetic import SynthConfig, SyntheticCriteo
from shark.metrics import auc
from shark.train.config import TrainConfig
from shark.train.local import LocalTrainer
from worker.dense import DENSE_TABLE
from worker.trainer import PSTrainer


class InProcessClient:
    """The PSClient surface the trainer uses, applied straight to a RowStore (no wire, no threads)."""

    def __init__(self, store: RowStore) -> None:
        self.store, self.seq, self.pushes = store, 0, 0

    def pull_async(self, ids_by_table: dict[str, np.ndarray], read_only: bool = False) -> Future:
        out = self.store.pull_many([(t, ids, not read_only) for t, ids in ids_by_table.items()])
        fut: Future = Future()
        fut.set_result(dict(zip(ids_by_table, out)))
        return fut

    def push(self, parts: dict) -> None:
        self.seq += 1
        self.store.push_many([(t, *p) for t, p in parts.items()], worker_id=1, seq=self.seq)
        self.pushes += 1

    def flush(self) -> None:
        pass


def _ps_trainer(cfg: TrainConfig, n_dense: int, tables: list[str]) -> PSTrainer:
    store = RowStore()
    for t in tables:
        store.create_table(TableConfig(name=t, dim=cfg.embedding_dim, capacity=cfg.capacity_of(t), lr=cfg.lr_embedding,
                                       eps=1e-8, init_scale=cfg.init_scale, seed=cfg.seed))
    trainer = PSTrainer(cfg, n_dense, tables, InProcessClient(store))
    d = trainer.dense
    store.create_table(TableConfig(name=DENSE_TABLE, dim=d.chunk, capacity=d.n_rows, optimizer="adam",
                                   lr=cfg.lr_dense, init_scale=0.0, seed=cfg.seed))
    store.assign(DENSE_TABLE, d.ids, d.rows())
    return trainer


def test_ps_trainer_matches_local_trainer() -> None:
    gen = SyntheticCriteo(SynthConfig(seed=3))
    cfg = TrainConfig(capacity=1 << 12, threads=1, prefetch=0, batch_size=256)
    tables = [f"C{i}" for i in range(1, 27)]
    local = LocalTrainer(cfg, 13, tables)
    ps = _ps_trainer(cfg, 13, tables)
    log_l = local.fit(gen.batches(20_000, 256))
    log_p = ps.fit(gen.batches(20_000, 256))
    yl, pl = local.evaluate(gen.batches(5_000, 1000, split="test")).arrays()
    yp, pp = ps.evaluate(gen.batches(5_000, 1000, split="test")).arrays()
    assert np.array_equal(yl, yp)
    a_l, a_p = auc(yl, pl), auc(yp, pp)
    assert a_l > 0.70
    # Identical algorithm: the first batch's scores agree to float precision, and the end result closely.
    assert np.allclose(log_l.arrays()[1][:256], log_p.arrays()[1][:256], atol=1e-6)
    assert abs(a_l - a_p) < 2e-3 and np.abs(pl - pp).max() < 0.05
    assert ps.client.pushes == ps.times.steps == 20_000 // 256 + 1
    # evaluation created no rows: only the training ids are on the "shard"
    rows = sum(ps.client.store.stats(t)["rows"] for t in tables)
    assert rows == sum(np.unique(np.concatenate([ps.transform(b).ids[:, k] for b in gen.batches(20_000, 256)])).size
                       for k in range(26))
