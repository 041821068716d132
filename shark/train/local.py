"""The single-process trainer: the reference every distributed run is compared against.

Online-learning metrics: each batch is scored before it is trained on (progressive validation), and the model
is scored again on held-out rows at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from shark.data.batch import Batch, RawBatch
from shark.data.prefetch import prefetch
from shark.metrics import ScoreLog
from shark.model import DenseDLRM, DLRMConfig, EmbeddingStore
from shark.train.config import TrainConfig


@dataclass
class StepTimer:
    examples: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0


class LocalTrainer:
    def __init__(self, config: TrainConfig, n_dense: int, table_names: list[str]) -> None:
        self.config = config
        torch.set_num_threads(config.threads)
        self.transform = config.feature_transform(table_names)
        self.model = DenseDLRM(DLRMConfig(n_dense=n_dense, table_names=tuple(table_names),
                                          embedding_dim=config.embedding_dim, bottom=config.bottom,
                                          top=config.top, seed=config.seed))
        self.store = EmbeddingStore(list(table_names), list(self.transform.capacities), config.embedding_dim,
                                    lr=config.lr_embedding, init_scale=config.init_scale, seed=config.seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr_dense)
        self.timer = StepTimer()
        self._column = {t: i for i, t in enumerate(table_names)}  # data column of each table

    def drop_field(self, name: str) -> None:
        """Remove a field from the model and, for a table, its rows from the store; data columns stay."""
        self.model.drop_field(name)
        if name in self.store.names:
            self.store.drop_table(name)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr_dense)

    def _rows(self, ids: np.ndarray, train: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T_all) ids of every table in the data -> (unique rows (U,), inverse (B, T), looked-up rows
        (B, T, d) of the active tables). In training the looked-up rows are the autograd leaf: their gradient
        is the per-example gradient g_i(x) that F-Permutation needs."""
        cols = [self._column[t] for t in self.store.names]
        rows, inverse, emb_u = self.store.pull(ids[:, cols], create=train)
        emb = emb_u[inverse]
        if train:
            emb.requires_grad_(True)
        return rows, inverse, emb

    def train_step(self, batch: Batch) -> np.ndarray:
        """One update. Returns the batch's click probabilities as scored before the update, (B,)."""
        self.model.train()
        rows, inverse, emb = self._rows(batch.ids, train=True)
        labels = torch.from_numpy(batch.labels)
        logits = self.model(torch.from_numpy(batch.dense), emb)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        # Segment-sum per unique row with index_add_, which is deterministic on CPU (autograd's accumulate
        # through emb_u[inverse] is not with 2 threads: runs then differ in the last digits).
        d = emb.shape[-1]
        grads = torch.zeros(rows.shape[0], d).index_add_(0, inverse.reshape(-1), emb.grad.reshape(-1, d))
        self.store.push(rows, grads)
        return torch.sigmoid(logits.detach()).numpy()

    @torch.no_grad()
    def predict(self, batch: Batch) -> np.ndarray:
        self.model.eval()
        _, _, emb = self._rows(batch.ids, train=False)
        return torch.sigmoid(self.model(torch.from_numpy(batch.dense), emb)).numpy()

    def fit(self, batches: Iterable[RawBatch], on_batch: Callable[[int, ScoreLog], None] | None = None) -> ScoreLog:
        """One pass over `batches`, with progressive validation. Returns the pass's score log."""
        log = ScoreLog()
        for raw in prefetch(iter(batches), self.config.prefetch):
            batch = self.transform(raw)
            t0 = time.perf_counter()
            probs = self.train_step(batch)
            self.timer.seconds += time.perf_counter() - t0
            self.timer.examples += len(batch)
            log.add(batch.labels, probs)
            if on_batch is not None:
                on_batch(len(batch), log)
        return log

    def evaluate(self, batches: Iterable[RawBatch]) -> ScoreLog:
        log = ScoreLog()
        for raw in prefetch(iter(batches), self.config.prefetch):
            batch = self.transform(raw)
            log.add(batch.labels, self.predict(batch))
        return log

    def describe_model(self) -> dict[str, Any]:
        dense_params = sum(p.numel() for p in self.model.parameters())
        return {"fields": list(self.model.fields), "dense_parameters": int(dense_params),
                "embedding_dim": self.config.embedding_dim, "capacities": dict(zip(self.store.names,
                                                                                 self.store.capacities)),
                "embedding_memory": self.store.memory_bytes()}
