"""WorkerActor: one training worker as a Ray actor (a thin layer over PSTrainer and PSClient).

The coordinator calls `train(epoch, max_batches)` in segments (a checkpoint may come between two segments);
the worker keeps its data iterator between calls, so `position` (batches consumed this epoch) and its client's
next push seq are its committed point once a segment has returned (all its pushes flushed). Each segment returns
its own progressive log. A restarted incarnation (same worker id in a run) is handed that point by `resume()`.
`progress()` may be called concurrently (the actor runs with max_concurrency > 1) to drive the progress bar.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from shark.data.batch import RawBatch, after_rows, first_rows
from shark.metrics import ScoreLog
from shark.train.config import TrainConfig
from shark.train.data_plan import DataPlan, DataSpec

F = TypeVar("F", bound=Callable[..., Any])


def _worker_errors(fn: F) -> F:
    """Any failure of a worker method leaves the actor as one plain RuntimeError naming the worker: exceptions that
    carry unpicklable state (gRPC's) must not cross Ray, and the user reads "worker 1: DataError: file:5: ..."."""
    @functools.wraps(fn)
    def wrapper(self: WorkerActor, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - plain, picklable errors only cross the actor boundary
            raise RuntimeError(f"worker {self.index}: {type(exc).__name__}: {exc}") from None
    return wrapper  # type: ignore[return-value]


class WorkerActor:
    def __init__(self, index: int, num_workers: int, addresses: list[str], config: TrainConfig, spec: DataSpec,
                 staleness: int, threads: int, retry: Any, security: Any = None, run_id: str | None = None) -> None:
        import torch

        from worker.client import PSClient
        from worker.trainer import PSTrainer

        torch.set_num_threads(threads)
        self.index, self.num_workers = index, num_workers
        self.plan = DataPlan(spec, config.batch_size, config.eval_batch_size)
        # In a run (run_id given) the id is the same in every incarnation: a restarted worker resumes the seqs of
        # its committed position (resume()), so the shards drop as duplicates the pushes its predecessor had
        # already delivered and apply the rest: each step once on every shard. Without a run id, a fresh id.
        self.worker_id = f"{run_id}-worker-{index}" if run_id else f"worker-{index}-{uuid.uuid4().hex[:12]}"
        self.base_worker_id = self.worker_id
        # With F-Quantization the rows travel in their stored precision (fp16/int8 bytes, decoded here).
        self.client = PSClient(addresses, worker_id=self.worker_id, staleness=staleness,
                               retry=retry, stored_precision=config.quant != "none", security=security)
        self.trainer = PSTrainer(config, self.plan.n_dense, self.plan.table_names, self.client)
        self._lock = threading.Lock()  # guards the progress fields read by progress()
        self._epoch: int | None = None
        self._batches: Iterator[RawBatch] | None = None
        self.position = 0
        self.log = ScoreLog()
        # Stream mode: request_stop() ends the current segment at the next batch boundary; read_* count what was
        # taken from the source, trained_examples what was trained (equal once a segment has returned).
        self._stop = threading.Event()
        self.read_batches = self.read_examples = self.trained_examples = 0
        self._log_base = 0  # examples of earlier stream segments (their logs are dropped to bound memory)

    # --- setup ------------------------------------------------------------------------------------------------
    def init_dense(self) -> dict[str, int]:
        """Create the dense-parameter table on every shard and write the model's initial weights into it (once
        per fresh cluster; a restored cluster already has them)."""
        from ps.store import TableConfig
        from worker.dense import DENSE_TABLE

        dense, cfg = self.trainer.dense, self.trainer.config
        self.client.create_tables([TableConfig(name=DENSE_TABLE, dim=dense.chunk, capacity=dense.n_rows,
                                               optimizer="adam", lr=cfg.lr_dense, init_scale=0.0, seed=cfg.seed)])
        self.client.assign(DENSE_TABLE, dense.ids, dense.rows())
        return {"parameters": dense.size, "rows": dense.n_rows, "chunk": dense.chunk}

    @_worker_errors
    def drop_field(self, name: str) -> dict[str, Any]:
        """F-Permutation deletion in this worker's model replica (its table is dropped on the shards by the
        coordinator; the dense table keeps its layout, see DenseChunks.after_drop). Idempotent: a worker that was
        restarted and rejoined without the field has nothing to do."""
        if name in self.trainer.model.fields:
            self.trainer.drop_field(name)
        return {"fields": list(self.trainer.model.fields), "dense_parameters": self.trainer.dense.size}

    def reset_fields(self, dropped: list[str]) -> list[str]:
        """Rebuild this worker's model as the initial model minus `dropped` (in deletion order), so its dense
        layout matches a checkpoint taken with those fields deleted (a rollback); weights come from the next pull."""
        from worker.trainer import PSTrainer

        self.trainer = PSTrainer(self.trainer.config, self.plan.n_dense, self.plan.table_names, self.client)
        for name in dropped:
            self.trainer.drop_field(name)
        return list(self.trainer.model.fields)

    @_worker_errors
    def after_restore(self, timeline: int) -> str:
        """The shards were rolled back to a checkpoint: push as a new worker id from seq 0 (PSClient.start_timeline).
        The id is a function of the run and the rollback count, so it is the same in every incarnation."""
        self.client.start_timeline(f"{self.base_worker_id}-t{timeline}")
        return self.client.worker_id

    @_worker_errors
    def rejoin(self, dropped: list[str], timeline: int, seq: int) -> dict[str, Any]:
        """A restarted incarnation outside epoch training (scoring, a deletion, fine-tuning, an evaluation) takes
        over its predecessor's model layout (the initial model minus `dropped`) and push identity: the rollback
        timeline `timeline` (0: none yet) at seq `seq`, its predecessor's last acknowledged one."""
        self.reset_fields(dropped)
        if timeline:
            self.client.start_timeline(f"{self.base_worker_id}-t{timeline}")
        self.client.resume_at(seq)
        return {"worker": self.index, "pid": os.getpid(), "fields": list(self.trainer.model.fields), "seq": seq,
                "worker_id": self.client.worker_id}

    def ping(self) -> dict[str, Any]:
        import ray

        return {"index": self.index, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "worker_id": self.worker_id}

    # --- training ---------------------------------------------------------------------------------------------
    @_worker_errors
    def train(self, epoch: int, max_batches: int = 0) -> dict[str, Any]:
        """Train up to max_batches more batches of this worker's share of epoch `epoch` (0 = to its end).
        Returns after every push of the segment has been acknowledged."""
        if epoch != self._epoch:
            self._epoch, self.position = epoch, 0
            self._batches = self.plan.train_batches(self.index, self.num_workers)
            with self._lock:
                self.log = ScoreLog()
        assert self._batches is not None
        segment = itertools.islice(self._batches, max_batches) if max_batches else self._batches
        before = self.trainer.times.steps
        with self._lock:  # the segment's own log: the coordinator keeps the committed segments' logs
            self._log_base += self.log.count
            self.log = ScoreLog()
        self.trainer.fit(segment, on_batch=self._on_batch, log=self.log)
        done_now = self.trainer.times.steps - before
        with self._lock:
            y, p = self.log.arrays()
        return {"worker": self.index, "epoch": epoch, "position": self.position, "seq": self.client.next_seq,
                "done": not max_batches or done_now < max_batches, "labels": y, "probs": p, "pid": os.getpid()}

    @_worker_errors
    def resume(self, epoch: int, position: int, seq: int) -> dict[str, Any]:
        """A restarted incarnation takes over its predecessor's committed point: data position `position` of epoch
        `epoch` (the batches before it are skipped, not trained) and push seq `seq`. Pushes the predecessor made
        after that point reach the shards again with the same seqs; the shards that had them answer DUPLICATE."""
        self._epoch, self.position = epoch, position
        self._batches = itertools.islice(self.plan.train_batches(self.index, self.num_workers), position, None)
        self.client.resume_at(seq)
        with self._lock:
            self.log = ScoreLog()
        return {"worker": self.index, "pid": os.getpid(), "epoch": epoch, "position": position, "seq": seq}

    def request_stop(self) -> bool:
        """Stream mode: stop the current (and every later) segment at the next batch boundary. Called concurrently
        with train_stream (the actor is threaded)."""
        self._stop.set()
        return True

    @_worker_errors
    def train_stream(self, max_batches: int, honour_stop: bool = True) -> dict[str, Any]:
        """Stream mode: train up to max_batches more batches of this worker's endless stream from `position`
        (DataPlan.stream_batches), ending early at a batch boundary once request_stop() was called (unless
        honour_stop is False: a restarted worker redoing its predecessor's lost segment must reach at least as
        far as the pushes that segment may have delivered). No batch is taken from the source after the stop;
        those already taken (prefetched) are trained, and every push is acknowledged before this returns, so
        position is the committed data position. Returns the segment's progressive (labels, probabilities) too
        (the worker keeps only the current segment's log) and the next push seq."""
        with self._lock:
            self._log_base += self.log.count
            self.log = ScoreLog()
        source = self.plan.stream_batches(self.index, self.num_workers, start=self.position)

        def gated() -> Iterator[RawBatch]:
            for _ in range(max_batches):
                if honour_stop and self._stop.is_set():
                    return
                raw = next(source)
                with self._lock:
                    self.read_batches += 1
                    self.read_examples += len(raw)
                yield raw

        self.trainer.fit(gated(), on_batch=self._on_batch, log=self.log)
        with self._lock:
            y, p = self.log.arrays()
            return {"worker": self.index, "position": self.position, "read_batches": self.read_batches,
                    "read_examples": self.read_examples, "trained_examples": self.trained_examples,
                    "seq": self.client.next_seq, "stopped": self._stop.is_set(), "labels": y, "probs": p}

    @_worker_errors
    def resume_stream(self, position: int, seq: int, read_batches: int, read_examples: int,
                      trained_examples: int) -> dict[str, Any]:
        """A restarted incarnation in stream mode takes over its predecessor's committed point: stream position
        `position` (batches), push seq `seq` and the read/trained counters at that point. The pushes of the lost
        segment come again with the same seqs, and the shards that had them answer DUPLICATE."""
        with self._lock:
            self.position, self.read_batches, self.read_examples = position, read_batches, read_examples
            self.trained_examples = trained_examples
            self.log = ScoreLog()
        self.client.resume_at(seq)
        return {"worker": self.index, "pid": os.getpid(), "position": position, "seq": seq}

    @_worker_errors
    def finetune(self, rows: int, offset: int) -> dict[str, Any]:
        """Train on this worker's share of `rows` fresh rows starting `offset` rows past the training data (the
        support set of a pruning round). Returns after every push is acknowledged."""
        log = self.trainer.fit(self.plan.support_batches(rows, offset, self.index, self.num_workers))
        return {"worker": self.index, "examples": log.count, "seq": self.client.next_seq}

    def _on_batch(self, n: int, log: ScoreLog) -> None:
        with self._lock:
            self.position += 1
            self.trained_examples += n

    def progress(self, tail: int = 4096) -> dict[str, Any]:
        with self._lock:
            y, p = self.log.tail(tail)
            return {"worker": self.index, "epoch": self._epoch, "position": self.position,
                    "examples": self._log_base + self.log.count, "labels": y, "probs": p,
                    "times": self.trainer.times.to_dict()}

    # --- evaluation and reports -------------------------------------------------------------------------------
    @_worker_errors
    def evaluate(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) of this worker's share of the held-out rows. Creates no rows on the shards."""
        log = self.trainer.evaluate(self.plan.test_batches(self.index, self.num_workers))
        return log.arrays()

    @_worker_errors
    def field_sums(self, mean: np.ndarray | None, max_rows: int) -> dict[str, Any]:
        """F-Permutation partial sums over this worker's share of the held-out rows (at most max_rows), as plain
        arrays for the coordinator (shark.fperm.FieldSums.to_dict)."""
        batches = self.plan.test_batches(self.index, self.num_workers)
        limited = first_rows(batches, max_rows)
        return self.trainer.field_sums(limited, mean).to_dict()

    @_worker_errors
    def permutation_sums(self, max_rows: int) -> dict[str, Any]:
        """The Permutation baseline's (T = 1) summed loss increases over the same rows as field_sums; shuffles
        seeded by (run seed, worker)."""
        batches = first_rows(self.plan.test_batches(self.index, self.num_workers), max_rows)
        total, n = self.trainer.permutation_totals(batches, seed=self.trainer.config.seed * 1009 + self.index)
        return {"fields": list(self.trainer.model.fields), "sum": total, "n": n}

    @_worker_errors
    def drop_predictions(self, orders: dict[str, list[str]], skip_rows: int, max_rows: int) -> dict[str, Any]:
        """Probabilities along each drop order (no fine-tuning) over this worker's share of the held-out rows
        after its first skip_rows (the rows it scored), at most max_rows: for the AUC-vs-fields-kept curves."""
        batches = first_rows(after_rows(self.plan.test_batches(self.index, self.num_workers), skip_rows), max_rows)
        labels, probs = self.trainer.drop_predictions(batches, orders)
        return {"labels": labels, "probs": probs}

    def report(self) -> dict[str, Any]:
        return {"worker": self.index, "times": self.trainer.times.to_dict(), "client": self.client.stats(),
                "data": self.plan.describe(), "dense": {"parameters": self.trainer.dense.size}}

    def stop(self) -> None:
        self.client.close()
