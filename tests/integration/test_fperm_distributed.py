"""F-Permutation across workers: partial sums from two workers (each scoring its share of the data on rows pulled
from the shards) add up to the single-process scores on the same data, to float tolerance. The "abs" variant's
in-batch shuffles depend only on (seed, batch size), so they are the same draws whichever worker holds a batch."""

from __future__ import annotations

import numpy as np
import torch

from ps.server import start_server, stop_server
from ps.store import RowStore, TableConfig
from shark.data.synthetic import SynthConfig, SyntheticCriteo
from shark.fperm import FieldSums, taylor_scores
from shark.fperm.config import TaylorConfig
from shark.fperm.inputs import ScoringBatch
from shark.train.config import TrainConfig
from worker.client import PSClient
from worker.dense import DENSE_TABLE
from worker.trainer import PSTrainer

TABLES = [f"C{i}" for i in range(1, 27)]


def _trainer(addrs: list[str], cfg: TrainConfig, name: str) -> PSTrainer:
    return PSTrainer(cfg, 13, TABLES, PSClient(addrs, name, staleness=1))


def test_worker_partial_sums_merge_into_the_single_pass_scores() -> None:
    servers = [start_server(RowStore()) for _ in range(2)]
    addrs = [f"127.0.0.1:{port}" for _, port in servers]
    cfg = TrainConfig(capacity=1 << 12, threads=1, prefetch=0, batch_size=512)
    try:
        a = _trainer(addrs, cfg, "a")
        a.client.create_tables([TableConfig(t, 16, cfg.capacity, lr=cfg.lr_embedding, seed=cfg.seed) for t in TABLES])
        d = a.dense
        a.client.create_tables([TableConfig(DENSE_TABLE, d.chunk, d.n_rows, optimizer="adam", lr=cfg.lr_dense,
                                            init_scale=0.0)])
        a.client.assign(DENSE_TABLE, d.ids, d.rows())
        gen = SyntheticCriteo(SynthConfig(seed=2))
        a.fit(gen.batches(30_000, 512))  # a trained model on the shards
        b = _trainer(addrs, cfg, "b")  # a second worker: its own model replica, the same shards
        share = [list(gen.batches(4_000, 1000, split="test", start=k * 4_000)) for k in range(2)]

        # one pass on both workers gives "signed" and "abs" (what the coordinator runs); the coordinator could
        # then fix the field means for a second pass, which only the "abs-mean" variant needs
        first = a.field_sums(share[0]) + b.field_sums(share[1])
        mean = first.sum_e / first.n
        second = a.field_sums(share[0], mean) + b.field_sums(share[1], mean)
        merged = {"signed": first.finish("signed"), "abs": first.finish("abs"), "abs-mean": second.finish("abs-mean")}

        # the single-process computation on the same data, rows and weights
        whole = [ScoringBatch(torch.from_numpy(bt.dense), emb, torch.from_numpy(bt.labels))
                 for bt, emb in a.looked_up(share[0] + share[1])]
        for variant, dist in merged.items():
            single = taylor_scores(a.model, whole, TaylorConfig(variant=variant))
            assert dist.fields == single.fields
            np.testing.assert_allclose(dist.scores, single.scores, rtol=1e-6, atol=1e-9)
        assert isinstance(FieldSums.from_dict(first.to_dict()), FieldSums)  # what crosses the actor boundary
        for t in (a, b):
            t.client.close()
    finally:
        for server, _ in servers:
            stop_server(server)
