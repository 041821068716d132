"""`shark bench train`: training throughput of an engine against a stock-PyTorch baseline, side by side.

Both sides train the same DenseDLRM on the same pre-transformed batches (data preparation is timed separately),
with the same thread count. The baseline is what a user would write with stock torch: one `nn.Embedding` over all
tables with sparse gradients and `torch.optim.Adagrad`. Repeats alternate between the sides so that machine noise
hits both; medians and their ratio are reported.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shark.data.batch import Batch
from shark.data.synthetic import SynthConfig, SyntheticCriteo
from shark.model import DenseDLRM, DLRMConfig
from shark.train.config import TrainConfig
from shark.train.local import LocalTrainer


@dataclass(frozen=True)
class BenchSpec:
    rows: int = 200_000
    repeats: int = 3
    warmup_batches: int = 5
    synth_seed: int = 0

    def __post_init__(self) -> None:
        if self.rows < 1 or self.repeats < 1 or self.warmup_batches < 0:
            raise ValueError("rows and repeats must be >= 1, warmup_batches >= 0")


class StockTorchDLRM:
    """The baseline: stock torch sparse embedding + Adagrad, same dense model and Adam for the MLPs."""

    def __init__(self, config: TrainConfig, n_dense: int, tables: list[str], capacities: tuple[int, ...]) -> None:
        torch.manual_seed(config.seed)
        self.offsets = torch.tensor(np.concatenate([[0], np.cumsum(capacities)[:-1]]), dtype=torch.int64)
        self.embedding = nn.Embedding(int(sum(capacities)), config.embedding_dim, sparse=True)
        nn.init.uniform_(self.embedding.weight, -config.init_scale, config.init_scale)
        self.model = DenseDLRM(DLRMConfig(n_dense=n_dense, table_names=tuple(tables),
                                          embedding_dim=config.embedding_dim, bottom=config.bottom,
                                          top=config.top, seed=config.seed))
        self.sparse_opt = torch.optim.Adagrad(self.embedding.parameters(), lr=config.lr_embedding)
        self.dense_opt = torch.optim.Adam(self.model.parameters(), lr=config.lr_dense)

    def train_step(self, batch: Batch) -> None:
        # Opting out of sparse invariant checks explicitly (as stock Adagrad does implicitly) silences its warning.
        with torch.sparse.check_sparse_tensor_invariants(enable=False):
            self._step(batch)

    def _step(self, batch: Batch) -> None:
        emb = self.embedding(torch.from_numpy(batch.ids) + self.offsets)
        logits = self.model(torch.from_numpy(batch.dense), emb)
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(batch.labels))
        self.sparse_opt.zero_grad()
        self.dense_opt.zero_grad()
        loss.backward()
        self.sparse_opt.step()
        self.dense_opt.step()


def _time_pass(step, batches: list[Batch], warmup: int) -> float:
    for b in batches[:warmup]:
        step(b)
    t0 = time.perf_counter()
    for b in batches[warmup:]:
        step(b)
    return time.perf_counter() - t0


def bench_train(config: TrainConfig, spec: BenchSpec, engine: str = "local", progress: bool = True) -> dict[str, Any]:
    if engine != "local":
        raise ValueError(f"engine {engine!r} is not available yet; only 'local' is")
    torch.set_num_threads(config.threads)
    gen = SyntheticCriteo(SynthConfig(seed=spec.synth_seed))
    tables = [f"C{i}" for i in range(1, 27)]
    transform = config.feature_transform(tables)
    t0 = time.perf_counter()
    batches = [transform(raw) for raw in gen.batches(spec.rows, config.batch_size, split="train")]
    prep_seconds = time.perf_counter() - t0
    timed_examples = sum(len(b) for b in batches[spec.warmup_batches:])
    if timed_examples == 0:
        raise ValueError("--rows leaves no batch to time after the warm-up batches")
    ours_s, base_s = [], []
    for r in range(spec.repeats):
        ours = LocalTrainer(config, n_dense=13, table_names=tables)
        ours_s.append(_time_pass(ours.train_step, batches, spec.warmup_batches))
        del ours
        base = StockTorchDLRM(config, 13, tables, transform.capacities)
        base_s.append(_time_pass(base.train_step, batches, spec.warmup_batches))
        del base
        if progress:
            print(f"repeat {r + 1}/{spec.repeats}: ours {timed_examples / ours_s[-1]:,.0f} ex/s, "
                  f"stock torch {timed_examples / base_s[-1]:,.0f} ex/s", file=sys.stderr, flush=True)
    ours_rate = timed_examples / statistics.median(ours_s)
    base_rate = timed_examples / statistics.median(base_s)
    return {
        "benchmark": "train",
        "engine": engine,
        "baseline": "stock torch: nn.Embedding(sparse=True) + torch.optim.Adagrad, same DenseDLRM",
        "rows": spec.rows, "timed_examples": timed_examples, "repeats": spec.repeats,
        "batch_size": config.batch_size, "threads": config.threads, "capacity": config.capacity,
        "data_prep_examples_per_second": round(spec.rows / prep_seconds, 1),
        "examples_per_second": {"ours": round(ours_rate, 1), "baseline": round(base_rate, 1)},
        "seconds": {"ours": [round(s, 3) for s in ours_s], "baseline": [round(s, 3) for s in base_s]},
        "ratio_ours_over_baseline": round(ours_rate / base_rate, 3),
    }


def format_bench(result: dict[str, Any]) -> str:
    eps = result["examples_per_second"]
    return "\n".join([
        f"bench train: engine {result['engine']}, {result['timed_examples']:,} timed examples x "
        f"{result['repeats']} repeats, batch {result['batch_size']}, {result['threads']} threads",
        f"{'side':34}{'examples/s (median)':>22}",
        f"{'ours (' + result['engine'] + ')':34}{eps['ours']:>22,.0f}",
        f"{'baseline (stock torch sparse)':34}{eps['baseline']:>22,.0f}",
        f"ratio ours/baseline: {result['ratio_ours_over_baseline']:.2f}x   "
        f"(data preparation alone: {result['data_prep_examples_per_second']:,.0f} examples/s)",
    ])
