"""PSTrainer: the training loop of one worker, on rows pulled from parameter-server shards.

Per batch: deduplicate the ids of every table (BatchRows), pull the unique rows and the dense parameters from
the shards, forward/backward the dense model in torch, segment-sum the row gradients, and push them (with the
per-row click counts F-Quantization needs) through the client's bounded push window. With staleness > 0 the next
batch's pull goes out while our earlier pushes are still in flight, and other workers compute while this one
waits, so the wire overlaps compute across workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from shark.data.batch import Batch, RawBatch
from shark.data.prefetch import prefetch
from shark.metrics import ScoreLog
from shark.model import DenseDLRM, DLRMConfig
from shark.train.config import TrainConfig
from worker.dense import DENSE_TABLE, DenseChunks
from worker.lookup import BatchRows, batch_rows


class RowClient(Protocol):
    """What the trainer needs from a PS client (worker.client.PSClient, or an in-process fake in tests)."""

    def pull_async(self, ids_by_table: dict[str, np.ndarray], read_only: bool = False) -> Any: ...
    def push(self, parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> None: ...
    def flush(self) -> None: ...


@dataclass
class LoopTimes:
    """Where a worker's wall time goes (seconds); examples counts trained examples."""
    examples: int = 0
    steps: int = 0
    wall: float = 0.0
    pull_wait: float = 0.0
    compute: float = 0.0
    push: float = 0.0  # time inside push(): encoding, routing, and waiting when the window is full

    @property
    def rate(self) -> float:
        return self.examples / self.wall if self.wall > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        return {"examples": self.examples, "steps": self.steps, "wall_seconds": round(self.wall, 3),
                "pull_wait_seconds": round(self.pull_wait, 3), "compute_seconds": round(self.compute, 3),
                "push_seconds": round(self.push, 3), "examples_per_second": round(self.rate, 1)}


class PSTrainer:
    def __init__(self, config: TrainConfig, n_dense: int, table_names: list[str], client: RowClient) -> None:
        self.config = config
        self.client = client
        self.data_tables = tuple(table_names)  # every categorical column of the data, in column order
        self.transform = config.feature_transform(table_names)
        self._set_tables(self.data_tables)
        # Same seed as the local engine: identical initial dense weights (the coordinator assigns them once).
        self.model = DenseDLRM(DLRMConfig(n_dense=n_dense, table_names=self.tables,
                                          embedding_dim=config.embedding_dim, bottom=config.bottom,
                                          top=config.top, seed=config.seed))
        self.dense = DenseChunks(self.model)
        self._zeros = np.zeros(self.dense.n_rows, dtype=np.uint32)
        self.times = LoopTimes()

    # --- one batch --------------------------------------------------------------------------------------------
    def _set_tables(self, tables: tuple[str, ...]) -> None:
        """The model's active tables (F-Permutation deletes some): their data columns and capacities."""
        self.tables = tuple(tables)
        column = {t: i for i, t in enumerate(self.data_tables)}
        self._cols = np.array([column[t] for t in self.tables], dtype=np.int64)
        self.capacities = tuple(self.config.capacity_of(t) for t in self.tables)

    def drop_field(self, name: str) -> None:
        """Remove a field from this replica: its table's column, its interaction terms and top-MLP inputs (see
        DenseDLRM.drop_field). The surviving dense parameters keep their places in the shards' dense table
        (DenseChunks.after_drop), so their values and Adam moments carry on; every worker computes the same map."""
        self.dense = self.dense.after_drop(self.model, lambda m: m.drop_field(name))
        self._set_tables(tuple(self.model.tables))

    def _index(self, batch: Batch, train: bool) -> BatchRows:
        ids = batch.ids if self._cols.shape[0] == len(self.data_tables) else batch.ids[:, self._cols]
        return batch_rows(self.tables, ids, self.capacities, batch.labels if train else None)

    def _request(self, rows: BatchRows) -> dict[str, np.ndarray]:
        return {**rows.ids, DENSE_TABLE: self.dense.ids}

    def _embeddings(self, rows: BatchRows, pulled: dict[str, np.ndarray]) -> torch.Tensor:
        """Pulled rows -> (B, T, d) looked-up embeddings (a copy: the autograd leaf in training)."""
        self.dense.load(pulled[DENSE_TABLE])
        emb_u = torch.from_numpy(np.concatenate([pulled[t] for t in self.tables]))  # (U, d)
        return emb_u[torch.from_numpy(rows.inverse)]

    def _train_step(self, batch: Batch, rows: BatchRows, pulled: dict[str, np.ndarray]) -> np.ndarray:
        """Forward/backward on pulled rows, then push. Returns the batch's probabilities before the update."""
        t0 = time.perf_counter()
        self.model.train()
        emb = self._embeddings(rows, pulled).requires_grad_(True)
        logits = self.model(torch.from_numpy(batch.dense), emb)
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(batch.labels))
        self.model.zero_grad(set_to_none=True)
        loss.backward()
        d = emb.shape[-1]
        # index_add_ segment-sums duplicates deterministically (see LocalTrainer.train_step).
        g_u = torch.zeros(rows.n_unique, d).index_add_(0, torch.from_numpy(rows.inverse).reshape(-1),
                                                        emb.grad.reshape(-1, d)).numpy()
        parts = {t: (rows.ids[t], g, rows.c_pos[t], rows.c_neg[t]) for t, g in rows.split(g_u).items()}
        parts[DENSE_TABLE] = (self.dense.ids, self.dense.grads(), self._zeros, self._zeros)
        t1 = time.perf_counter()
        self.client.push(parts)
        self.times.compute += t1 - t0
        self.times.push += time.perf_counter() - t1
        return torch.sigmoid(logits.detach()).numpy()

    def _wait(self, future: Any) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        out = future.result()
        self.times.pull_wait += time.perf_counter() - t0
        return out

    # --- loops ------------------------------------------------------------------------------------------------
    def fit(self, batches: Iterable[RawBatch], on_batch: Callable[[int, ScoreLog], None] | None = None,
            log: ScoreLog | None = None) -> ScoreLog:
        """One pass over `batches` with progressive validation; pushes are flushed before returning."""
        log = log if log is not None else ScoreLog()
        started = time.perf_counter()

        def finish(item: tuple[Batch, BatchRows, Any]) -> None:
            batch, rows, fut = item
            probs = self._train_step(batch, rows, self._wait(fut))
            self.times.examples += len(batch)
            self.times.steps += 1
            log.add(batch.labels, probs)
            if on_batch is not None:
                on_batch(len(batch), log)

        try:
            for raw in prefetch(iter(batches), self.config.prefetch):
                batch = self.transform(raw)
                rows = self._index(batch, train=True)
                # Pulled after the previous step's push was sent: rows are stale only by the pushes still in
                # flight (at most `staleness` of ours) and by other workers' concurrent steps. Pulling one batch
                # ahead instead (before computing the current one) measured 0.007 AUC worse early in training.
                finish((batch, rows, self.client.pull_async(self._request(rows))))
            t0 = time.perf_counter()
            self.client.flush()
            self.times.push += time.perf_counter() - t0
        finally:
            self.times.wall += time.perf_counter() - started
        return log

    def looked_up(self, batches: Iterable[RawBatch]) -> Iterator[tuple[Batch, torch.Tensor]]:
        """(batch, looked-up rows (B, T, d)) per batch, with the current dense parameters loaded. Read-only pulls:
        evaluation and scoring create no rows on the shards."""
        for raw in prefetch(iter(batches), self.config.prefetch):
            batch = self.transform(raw)
            rows = self._index(batch, train=False)
            pulled = self.client.pull_async(self._request(rows), read_only=True).result()
            yield batch, self._embeddings(rows, pulled)

    @torch.no_grad()
    def predict_batches(self, batches: Iterable[RawBatch]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(labels, probabilities) per batch."""
        self.model.eval()
        for batch, emb in self.looked_up(batches):
            yield batch.labels, torch.sigmoid(self.model(torch.from_numpy(batch.dense), emb)).numpy()

    def field_sums(self, batches: Iterable[RawBatch], mean: np.ndarray | None = None) -> Any:
        """F-Permutation partial sums (shark.fperm.FieldSums) over `batches`: this worker's share of a scoring
        pass; a coordinator adds every worker's and finishes the scores ("abs" and "signed" in one pass; mean:
        the (F, d) field means fixed after a first pass, only for the "abs-mean" variant)."""
        from shark.fperm import FieldScoreAccumulator

        self.model.eval()
        acc = FieldScoreAccumulator(self.model.fields, self.config.embedding_dim, mean)
        for batch, emb in self.looked_up(batches):
            acc.add(self.model, torch.from_numpy(batch.dense), emb, torch.from_numpy(batch.labels))
        return acc.partial()

    def scoring_batches(self, batches: Iterable[RawBatch]) -> list[Any]:
        """The batches looked up once and held in memory (shark.fperm.ScoringBatch), for scorers that read the
        rows many times."""
        from shark.fperm import ScoringBatch

        return [ScoringBatch(torch.from_numpy(batch.dense), emb, torch.from_numpy(batch.labels))
                for batch, emb in self.looked_up(batches)]

    def permutation_totals(self, batches: Iterable[RawBatch], seed: int) -> tuple[np.ndarray, int]:
        """The Permutation baseline (T = 1) over this worker's share: ((F,) summed loss increases, rows), plain
        sums that a coordinator adds over the workers."""
        from shark.fperm import PermutationConfig, permutation_totals

        _, total, n = permutation_totals(self.model, self.scoring_batches(batches), PermutationConfig(1, seed))
        return total, n

    def drop_predictions(self, batches: Iterable[RawBatch], orders: dict[str, list[str]]
                         ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(labels (N,), {order name: (len(order) + 1, N) probabilities}): the model, then after each field of an
        order is dropped in turn, on copies (shark.fperm.drop_predictions); this model is not changed."""
        from shark.fperm import drop_predictions

        held = self.scoring_batches(batches)
        labels = np.concatenate([b.labels.numpy() for b in held]) if held else np.zeros(0, np.float32)
        if not held:
            return labels, {name: np.zeros((len(o) + 1, 0), np.float32) for name, o in orders.items()}
        return labels, {name: drop_predictions(self.model, order, held) for name, order in orders.items()}

    def evaluate(self, batches: Iterable[RawBatch]) -> ScoreLog:
        log = ScoreLog()
        for labels, probs in self.predict_batches(batches):
            log.add(labels, probs)
        return log
