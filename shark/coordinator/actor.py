"""Coordinator: the Ray actor that owns a distributed run.

It places S shard actors and W worker actors through one Ray placement group (a bundle per actor with its CPU
and custom-resource request; strategy SPREAD across nodes or PACK, both soft; removed at teardown), creates the
tables (or has the shards restore a checkpoint), drives training in segments between checkpoints, writes
checkpoints (every shard, then RUN.json last), evaluates, and assembles the summary. Its phases live in
RunStateMachine; `progress()` can be called while `run()` is working (the actor is threaded), and is what the
driver's progress bar shows; `status()` adds the layout and per-table rows by tier for `shark status`.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import threading
import time
import uuid
from typing import Any

import numpy as np

from shark.coordinator.config import ClusterConfig
from shark.coordinator.errors import RunError
from shark.coordinator.phases import Phase, RunStateMachine
from shark.coordinator.pruning import CompressConfig, PruningPolicy
from shark.coordinator.run_manifest import latest_run_tag, read_run_manifest, write_run_manifest
from shark.coordinator.stream_loop import Windows as _Windows  # noqa: F401 - the name tests import
from shark.coordinator.stream_loop import merge_in_time_order as _merge_in_time_order
from shark.coordinator.stream_loop import train_stream
from shark.metrics import ScoreLog, auc, logloss
from shark.train.config import TrainConfig
from shark.train.data_plan import DataPlan, DataSpec

log = logging.getLogger(__name__)

DENSE_TABLE = "__dense__"  # worker.dense.DENSE_TABLE, repeated so this module does not import torch


class Coordinator:
    def __init__(self, config: TrainConfig, spec: DataSpec, cluster: ClusterConfig,
                 compress: CompressConfig | None = None, stream: Any = None) -> None:
        self.config, self.spec, self.cluster, self.compress = config, spec, cluster, compress
        self.stream = stream  # a StreamConfig: train on the endless stream until request_stop() (or max_examples)
        self._stop_requested = threading.Event()
        self.sm = RunStateMachine()
        self.run_id = uuid.uuid4().hex[:12]
        self.shards: list[Any] = []
        self.workers: list[Any] = []
        self.addresses: list[str] = []
        self.client: Any = None
        self.checkpoints: list[dict[str, Any]] = []
        self.positions: dict[int, int] = {}  # worker -> batches trained this epoch, at the last segment boundary
        self.seqs: dict[int, int] = {}  # worker -> its next push seq at that boundary (a restart resumes there)
        self.worker_restarts: list[dict[str, Any]] = []
        self.rollbacks = 0  # shard restores to an earlier checkpoint (each starts the workers' new push ids)
        self.epoch = 0
        self.train_seconds = 0.0
        self._train_started: float | None = None
        self._last_progress: dict[str, Any] = {"examples": 0}
        self.placement_group: Any = None

    # --- progress (called concurrently with run) --------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        """Phase, epoch, examples trained this epoch, examples/s and the recent progressive AUC (over the last
        4096 examples of every worker). Outside training it repeats the last training figures."""
        import ray

        phase = self.sm.phase
        out: dict[str, Any] = {**self._last_progress, "phase": phase.value, "epoch": self.epoch,
                               "note": self.sm.history[-1].note}
        if phase is not Phase.TRAINING or not self.workers:
            return out
        try:
            parts = ray.get([w.progress.remote() for w in self.workers], timeout=5)
        except Exception:  # noqa: BLE001 - a slow poll only delays the bar
            return out
        y = np.concatenate([p["labels"] for p in parts])
        p = np.concatenate([p["probs"] for p in parts])
        wall = self.train_seconds + (time.perf_counter() - self._train_started if self._train_started else 0.0)
        figures: dict[str, Any] = {"examples": int(sum(q["examples"] for q in parts)),
                                   "examples_per_second": 0.0}
        if wall > 0:
            figures["examples_per_second"] = figures["examples"] / wall
        if y.size and 0 < y.sum() < y.size:
            figures["recent_auc"], figures["recent_logloss"] = auc(y, p), logloss(y, p)
        self._last_progress = figures
        return {**out, **figures}

    def status(self) -> dict[str, Any]:
        """For `shark status`: progress() plus the run id, the layout (shards, workers, their nodes) and, once the
        tables exist, per-table rows and rows per tier (read-only; a failed stats call leaves them out)."""
        out: dict[str, Any] = {**self.progress(), "run_id": self.run_id, "shards": self.cluster.shards,
                               "workers": self.cluster.workers, "placement": self.cluster.placement,
                               "addresses": list(self.addresses),
                               "shard_nodes": [s.get("node_ip") for s in getattr(self, "shard_info", [])],
                               "worker_nodes": [w.get("node") for w in getattr(self, "worker_info", [])]}
        if self.client is not None and self.sm.phase not in (Phase.STARTING, Phase.DONE, Phase.FAILED):
            try:
                stats = self.client.table_stats()
                out["tables"] = {name: {"rows": t["rows"], "rows_by_tier": t["rows_by_tier"]}
                                 for name, t in stats.items() if name != DENSE_TABLE}
            except Exception:  # noqa: BLE001 - shards busy or gone: the rest of the status still helps
                pass
        return out

    def request_stop(self) -> bool:
        """Stream mode: every worker stops at its next batch boundary (pushes drained), then the run writes its
        final checkpoint, evaluates and returns its summary. Called concurrently with run(); idempotent."""
        import ray

        self._stop_requested.set()
        refs = [w.request_stop.remote() for w in self.workers]
        try:
            ray.get(refs, timeout=10)
        except Exception:  # noqa: BLE001, S110 - the coordinator's own check stops it too
            pass
        return True

    # --- the run ----------------------------------------------------------------------------------------------
    def run(self, train: bool = True) -> dict[str, Any]:
        """Train (unless train=False: evaluate a restored checkpoint), evaluate, return the summary."""
        started = time.time()
        try:
            summary = self._run(train)
            summary["elapsed_seconds"] = round(time.time() - started, 2)
            return summary
        except Exception as exc:  # noqa: BLE001 - one clear, picklable error for the driver
            phase = self.sm.phase.value
            if not self.sm.finished:
                self.sm.move(Phase.FAILED, f"{type(exc).__name__}: {exc}")
            msg = str(exc) if isinstance(exc, RunError) else f"{type(exc).__name__}: {exc}"
            raise RunError(f"run failed while {phase}: {msg}") from None
        finally:
            self._teardown()

    def _run(self, train: bool) -> dict[str, Any]:
        import ray

        c = self.cluster
        restore = self._restore_point()
        if not train and restore is None:
            raise RunError("evaluation without training needs a checkpoint to restore (restore_from)")
        # One plan for the run's metadata (fields, table names, the teacher): building one constructs the synthetic
        # generator, which calibrates itself, so it is not rebuilt per use.
        self.plan = plan = DataPlan(self.spec, self.config.batch_size, self.config.eval_batch_size)
        self.fields = (["dense"] if plan.n_dense else []) + list(plan.table_names)  # the model's active fields
        self._initial_fields = list(self.fields)
        self.sm.move(Phase.STARTING, f"{c.shards} shards, {c.workers} workers")
        self._start_actors(restore)
        if restore is not None:
            self.sm.move(Phase.RESTORING, f"{c.restore_from} tag {restore['tag']}")
            self._check_restored()
            deleted = list(restore.get("deleted_fields", []))
            if deleted:  # a pruned model: the workers' replicas must have the checkpoint's dense layout
                ray.get([w.reset_fields.remote(deleted) for w in self.workers])
                self.fields = [f for f in self.fields if f not in deleted]
        else:
            self.sm.move(Phase.INITIALISING)
            self.client.create_tables(self._embedding_tables())
            dense = ray.get(self.workers[0].init_dense.remote())
            self.dense_info = dense
        progressive: dict[str, Any] | None = None
        epochs: list[dict[str, Any]] = []
        stream_info: dict[str, Any] | None = None
        if train and self.stream is not None:
            stream_info = self._train_stream()
            progressive = stream_info["last_window"]
            if c.checkpoint_dir:
                self.sm.move(Phase.CHECKPOINTING, "final")
                self._checkpoint(final=True)
        elif train:
            for epoch in range(self.config.epochs):
                self.epoch = epoch + 1
                log = self._train_epoch(epoch)
                epochs.append({"epoch": epoch + 1, "progressive": log.summary(), "progressive_curve": log.curve()})
            progressive = epochs[0]["progressive"] if epochs else None
            if c.checkpoint_dir:
                self.sm.move(Phase.CHECKPOINTING, "final")
                self._checkpoint(final=True)
        self.sm.move(Phase.EVALUATING)
        test = self._evaluate()
        compression = self._compress(test) if self.compress is not None else None
        if compression is not None:
            test = compression["final_test"]
            self.sm.move(Phase.CHECKPOINTING, "final: the compressed model")
            compression["checkpoint"] = self._checkpoint(final=True)
        summary = self._summary(progressive, epochs, test, restore)
        if stream_info is not None:
            summary["stream"] = stream_info
        if compression is not None:
            summary["compression"] = compression
        elif self.cluster.score_rows:
            self.sm.move(Phase.SCORING, f"{self.cluster.score_rows:,} held-out rows")
            summary["field_scores"] = self._score(summary.get("teacher"), self.cluster.score_rows)
        self.sm.move(Phase.DONE)
        summary["phases"] = self.sm.to_list()
        return summary

    # --- pieces -----------------------------------------------------------------------------------------------
    def _restore_point(self) -> dict[str, Any] | None:
        c = self.cluster
        if not c.restore_from:
            return None
        tag = c.restore_tag or latest_run_tag(c.restore_from)
        if tag is None:
            raise RunError(f"{c.restore_from}: no complete checkpoint (no tag with a valid RUN.json)")
        doc = read_run_manifest(c.restore_from, tag)
        if doc["num_shards"] != c.shards:
            raise RunError(f"checkpoint {tag!r} has {doc['num_shards']} shards, the cluster {c.shards}: "
                           f"restore with --shards {doc['num_shards']} (resharding is not supported yet)")
        return doc

    def _start_actors(self, restore: dict[str, Any] | None) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from ps.actor import ShardActor
        from worker.actor import WorkerActor
        from worker.client import PSClient

        c = self.cluster
        shard_cls = ray.remote(ShardActor)
        worker_cls = ray.remote(WorkerActor)
        self._place()

        def at(bundle: int) -> PlacementGroupSchedulingStrategy:
            return PlacementGroupSchedulingStrategy(placement_group=self.placement_group,
                                                    placement_group_bundle_index=bundle)

        # With a checkpoint directory every shard keeps a push log there (one per run) and Ray restarts a shard
        # that dies: it recovers its newest checkpoint plus the log, i.e. every update it acknowledged, on the
        # same address, while clients retry.
        wal_dir = os.path.join(c.checkpoint_dir, "wal", self.run_id) if c.checkpoint_dir else None
        self.shards = [shard_cls.options(num_cpus=c.shard_cpus, resources=c.shard_resources or None,
                                         scheduling_strategy=at(i), max_concurrency=8,
                                         max_restarts=-1 if wal_dir else 0,
                                         name=f"shark-{self.run_id}-shard-{i}").remote(
            shard_index=i, num_shards=c.shards, host=None,
            checkpoint_dir=c.restore_from if restore else None, restore_tag=restore["tag"] if restore else None,
            wal_dir=wal_dir, security=c.security)
            for i in range(c.shards)]
        self.addresses = ray.get([s.address.remote() for s in self.shards])
        self.client = PSClient(self.addresses, worker_id=f"coordinator-{self.run_id}", staleness=0,
                               retry=c.retry_policy(), security=c.security)
        self.client.wait_ready(c.ready_timeout_s)
        self.workers = [worker_cls.options(num_cpus=c.worker_cpus, resources=c.worker_resources or None,
                                           scheduling_strategy=at(c.shards + i), max_concurrency=4,
                                           max_restarts=c.worker_restarts, max_task_retries=0,
                                           name=f"shark-{self.run_id}-worker-{i}").remote(
            i, c.workers, self.addresses, self.config, self.spec, c.staleness, c.worker_threads, c.retry_policy(),
            security=c.security, run_id=self.run_id)
            for i in range(c.workers)]
        self.worker_info = ray.get([w.ping.remote() for w in self.workers])
        self.shard_info = ray.get([s.info.remote() for s in self.shards])

    def _place(self) -> None:
        """One placement group: a bundle per shard (0..S-1), then one per worker (S..S+W-1), strategy SPREAD or
        PACK (both soft: a one-node cluster works). Waits for it up to ready_timeout_s, else a RunError that
        names what was asked and what the cluster has."""
        import ray
        from ray.util.placement_group import placement_group

        c = self.cluster

        def bundle(cpus: float, resources: dict[str, float]) -> dict[str, float]:
            b = {**resources, **({"CPU": cpus} if cpus > 0 else {})}
            return b or {"CPU": 0.001}  # a bundle may not be empty; an actor asking for 0 CPUs fits in this one

        bundles = [bundle(c.shard_cpus, c.shard_resources)] * c.shards + \
                  [bundle(c.worker_cpus, c.worker_resources)] * c.workers
        self.placement_group = placement_group(bundles, strategy=c.placement.upper(), name=f"shark-{self.run_id}")
        try:
            ray.get(self.placement_group.ready(), timeout=c.ready_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise RunError(f"the cluster cannot place {c.shards} shards x {bundles[0]} and {c.workers} workers x "
                           f"{bundles[-1]} within {c.ready_timeout_s:.0f} s (cluster resources: "
                           f"{ray.cluster_resources()}); lower --shard-cpus/--worker-cpus, drop custom resources "
                           "or add nodes") from None

    def _embedding_tables(self) -> list[Any]:
        from ps.store import TableConfig

        cfg = self.config
        names = self.plan.table_names
        # The local engine's EmbeddingStore: row-wise Adagrad, eps 1e-8, the same deterministic row init; plus how
        # the shards store the rows (F-Quantization or a uniform baseline).
        quant = {"quant": cfg.quant, "rounding": cfg.rounding}
        if cfg.quant == "fq":
            quant.update(fq_alpha=cfg.fq_alpha, fq_beta=cfg.fq_beta, fq_t8=cfg.t8, fq_t16=cfg.t16,
                         fq_budget_fraction=cfg.memory_budget, fq_retier_every=cfg.retier_every)
        return [TableConfig(name=t, dim=cfg.embedding_dim, capacity=cfg.capacity_of(t), optimizer="adagrad",
                            lr=cfg.lr_embedding, eps=1e-8, init_scale=cfg.init_scale, seed=cfg.seed, **quant)
                for t in names]

    def _check_restored(self) -> None:
        stats = self.client.table_stats()
        if DENSE_TABLE not in stats:
            raise RunError("the restored shards hold no dense parameters (table __dense__ missing)")

    def _train_epoch(self, epoch: int) -> ScoreLog:
        """The epoch in segments of checkpoint_every batches per worker (a checkpoint between two). A worker that
        dies is restarted by Ray and resumes at its committed point (the end of its last returned segment: data
        position and push seq); its segment is run again, and the shards drop the pushes that had landed. Only
        committed segments' progressive logs are kept, so every example is counted once."""
        import ray

        c = self.cluster
        active = list(range(len(self.workers)))
        logs: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {i: [] for i in active}
        for i in active:
            self.positions[i] = 0
        while active:
            self.sm.move(Phase.TRAINING, f"epoch {epoch + 1}")
            self._train_started = time.perf_counter()
            refs = {i: self.workers[i].train.remote(epoch, c.checkpoint_every) for i in active}
            results, died = {}, []
            try:
                for i, ref in refs.items():
                    try:
                        results[i] = ray.get(ref)
                    except ray.exceptions.RayActorError as exc:  # killed, or its node is gone
                        died.append((i, exc))
            finally:
                self.train_seconds += time.perf_counter() - self._train_started
                self._train_started = None
            for i, r in results.items():
                self.positions[i], self.seqs[i] = r["position"], r["seq"]
                logs[i].append((r["labels"], r["probs"]))
            active = sorted([i for i, r in results.items() if not r["done"]] + [i for i, _ in died])
            for i, exc in died:
                self._resume_worker(i, epoch, exc)
            if active and c.checkpoint_every and not died:
                self.sm.move(Phase.CHECKPOINTING, f"epoch {epoch + 1}")
                self._checkpoint(final=False)
        merged = [(np.concatenate([y for y, _ in parts]), np.concatenate([p for _, p in parts]))
                  for parts in logs.values()]
        self._last_progress = {**self._last_progress, "examples": int(sum(y.size for y, _ in merged))}
        return _merge_in_time_order(merged)

    def _resume_worker(self, i: int, epoch: int, cause: Exception) -> None:
        """Wait for Ray's restart of worker i (up to cluster.worker_restarts per run) and hand it its committed
        point. A worker that cannot come back fails the run with the reason."""
        import ray

        restarts = sum(1 for r in self.worker_restarts if r["worker"] == i)
        if restarts >= self.cluster.worker_restarts:
            raise RunError(f"worker {i} died {restarts + 1} times (worker_restarts={self.cluster.worker_restarts}): "
                           f"{cause}")
        deadline = time.monotonic() + self.cluster.ready_timeout_s
        while True:
            try:
                info = ray.get(self.workers[i].resume.remote(epoch, self.positions.get(i, 0), self.seqs.get(i, 0)),
                               timeout=30)
                break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise RunError(f"worker {i} did not come back after dying ({cause}): {exc}") from None
                time.sleep(0.5)
        self.worker_restarts.append({"worker": i, "epoch": epoch + 1, "position": info["position"],
                                     "seq": info["seq"], "pid": info["pid"]})
        log.warning("worker %d restarted (pid %d): resumes at batch %d, seq %d", i, info["pid"], info["position"],
                    info["seq"])

    def _train_stream(self) -> dict[str, Any]:
        """Stream mode (shark.coordinator.stream_loop): segments until stopped, progressive AUC per window, and
        the drift report on a drifting synthetic stream."""
        return train_stream(self)

    def _checkpoint(self, final: bool) -> str:
        c = self.cluster
        assert c.checkpoint_dir is not None
        tag = f"ckpt-{len(self.checkpoints):05d}-{self.run_id}"
        t0 = time.perf_counter()
        written = self.client.checkpoint(c.checkpoint_dir, tag)
        body = {"run_id": self.run_id, "final": final, "epoch": self.epoch,
                "positions": {str(k): v for k, v in self.positions.items()},
                "train_config": self.config.to_dict(), "cluster": self.cluster.to_dict(),
                "fields": list(self.fields), "deleted_fields": [f for f in self._initial_fields if f not in self.fields],
                "data": {"source": self.spec.source}}
        path = write_run_manifest(c.checkpoint_dir, tag, c.shards, body)
        self.checkpoints.append({"tag": tag, "path": str(path.parent), "final": final,
                                 "seconds": round(time.perf_counter() - t0, 3), "bytes": written})
        return tag

    def _evaluate(self) -> dict[str, Any]:
        import ray

        parts = ray.get([w.evaluate.remote() for w in self.workers])
        log = ScoreLog()
        for y, p in parts:
            log.add(y, p)
        return log.summary()

    # --- F-Permutation: deletion and Algorithm 1 ----------------------------------------------------------------
    def _embedding_bytes(self) -> int:
        stats = self.client.table_stats()
        return sum(v["bytes_by_kind"].get("total", 0) for k, v in stats.items() if k != DENSE_TABLE)

    def _delete(self, name: str) -> None:
        """Delete a field everywhere: its table on every shard (DropTable, idempotent and in each shard's push log,
        retried until every shard has it gone), then in every worker's model replica."""
        import ray

        if name != "dense":
            self.client.drop_table(name)
        ray.get([w.drop_field.remote(name) for w in self.workers])
        self.fields.remove(name)

    def _compress(self, base_test: dict[str, Any]) -> dict[str, Any]:
        """Algorithm 1: score -> checkpoint -> delete the f lowest -> fine-tune on the support set -> evaluate,
        until the embedding memory target or the AUC floor; a round below the floor is rolled back to the
        checkpoint taken before it, so the result is the last model that met the floor."""
        import ray

        cc = self.compress
        assert cc is not None and self.cluster.checkpoint_dir
        base_memory = self._embedding_bytes()
        policy = PruningPolicy(cc, base_test["auc"], base_memory)
        dropped: list[str] = []
        rounds: list[dict[str, Any]] = []
        final = base_test
        reason = None
        first_ranking: dict[str, float] = {}
        first_before = ""  # the checkpoint of the unpruned model, for the control
        while (reason := policy.stop_reason(self._embedding_bytes(), len(self.fields))) is None:
            r = policy.rounds + 1
            self.sm.move(Phase.SCORING, f"round {r}")
            scores = self._score(None, cc.score_rows)
            first_ranking = first_ranking or dict(scores["abs"]["scores"])  # every field's, for the report's chart
            victims = policy.victims(scores["abs"]["ranking"])
            self.sm.move(Phase.CHECKPOINTING, f"before round {r}")
            before = self._checkpoint(final=False)
            first_before = first_before or before
            self.sm.move(Phase.DELETING, ", ".join(victims))
            for v in victims:
                self._delete(v)
            if cc.finetune_rows:  # fresh rows each round: a one-pass model overfits rows it has seen
                self.sm.move(Phase.FINE_TUNING, f"{cc.finetune_rows:,} fresh rows")
                self._finetune(cc.finetune_rows, (r - 1) * cc.finetune_rows)
            self.sm.move(Phase.EVALUATING, f"round {r}")
            test = self._evaluate()
            memory = self._embedding_bytes()
            ok = policy.accept(test["auc"])
            rounds.append({"round": r, "deleted": victims,
                           "scores": {v: scores["abs"]["scores"][v] for v in victims},
                           "auc": test["auc"], "logloss": test["logloss"], "memory_bytes": memory,
                           "memory_fraction": memory / base_memory, "fields_kept": len(self.fields),
                           "accepted": ok})
            if not ok:
                self.sm.move(Phase.ROLLING_BACK, f"round {r}: AUC {test['auc']:.4f} < floor {policy.auc_floor:.4f}")
                self._restore_all(before)
                ray.get([w.reset_fields.remote(dropped) for w in self.workers])
                self.fields.extend(victims)
                self.sm.move(Phase.EVALUATING, "the model before the rejected round")
                final = self._evaluate()
                reason = f"round {r} fell below the AUC floor ({test['auc']:.4f} < {policy.auc_floor:.4f}): rolled back"
                break
            dropped.extend(victims)
            final = test
        memory = self._embedding_bytes()
        control = self._control(first_before, dropped, sum(r["accepted"] for r in rounds)) \
            if cc.control and cc.finetune_rows and dropped else None
        return {"config": cc.to_dict(), "base": {"auc": base_test["auc"], "memory_bytes": base_memory},
                "control": control,
                "auc_relative_change_vs_control": final["auc"] / control["auc"] - 1.0 if control else None,
                "auc_floor": policy.auc_floor, "rounds": rounds, "stop_reason": reason, "deleted": dropped,
                "first_ranking": first_ranking,
                "fields_kept": list(self.fields), "memory_bytes": memory, "memory_fraction": memory / base_memory,
                "auc_relative_change": final["auc"] / base_test["auc"] - 1.0, "final_test": final}

    def _restore_all(self, tag: str) -> None:
        """Roll every shard back to checkpoint `tag`; the workers then push as new ids from seq 0 (the restored
        idempotency windows know their seqs only up to that checkpoint)."""
        import ray

        assert self.cluster.checkpoint_dir
        self.client.restore(self.cluster.checkpoint_dir, tag)
        self.rollbacks += 1
        ray.get([w.after_restore.remote(self.rollbacks) for w in self.workers])
        self.seqs = {i: 0 for i in range(len(self.workers))}

    def _finetune(self, rows: int, offset: int) -> None:
        import ray

        for r in ray.get([w.finetune.remote(rows, offset) for w in self.workers]):
            self.seqs[r["worker"]] = r["seq"]

    def _control(self, unpruned: str, dropped: list[str], rounds: int) -> dict[str, Any]:
        """The unpruned model fine-tuned on the same fresh rows as the kept rounds, then evaluated; afterwards the
        pruned model is put back exactly (its own checkpoint), so the run ends with the compressed model."""
        import ray

        cc, directory = self.compress, self.cluster.checkpoint_dir
        assert cc is not None and directory
        self.sm.move(Phase.CHECKPOINTING, "the pruned model, before the control")
        pruned = self._checkpoint(final=False)
        kept_fields = list(self.fields)
        rows = rounds * cc.finetune_rows
        self.sm.move(Phase.FINE_TUNING, f"control: the unpruned model on the same {rows:,} fresh rows")
        self._restore_all(unpruned)
        ray.get([w.reset_fields.remote([]) for w in self.workers])
        self.fields = list(self._initial_fields)
        self._finetune(rows, 0)  # offsets 0.. as rounds 1..k used
        self.sm.move(Phase.EVALUATING, "control")
        test = self._evaluate()
        self.sm.move(Phase.ROLLING_BACK, "back to the pruned model")
        self._restore_all(pruned)
        ray.get([w.reset_fields.remote(dropped) for w in self.workers])
        self.fields = kept_fields
        return {"auc": test["auc"], "logloss": test["logloss"], "finetune_rows": rows, "checkpoint": unpruned}

    def _score(self, teacher: dict[str, Any] | None, rows: int) -> dict[str, Any]:
        """F-Permutation (paper eq. 4) across the workers: one pass gathers every worker's partial sums (the
        'abs' and 'signed' scores are both plain sums, shark.fperm.taylor); added and finished here."""
        import ray

        from shark.fperm import FieldSums, spearman_with

        share = -(-rows // len(self.workers))
        t0 = time.perf_counter()
        parts = ray.get([w.field_sums.remote(None, share) for w in self.workers])
        sums = functools.reduce(operator.add, [FieldSums.from_dict(d) for d in parts])
        out: dict[str, Any] = {"rows": sums.n, "seconds": round(time.perf_counter() - t0, 3)}
        for variant in ("abs", "signed"):
            scores = sums.finish(variant)
            out[variant] = {"ranking": scores.ranking(), "scores": scores.as_dict()}
            if teacher is not None:  # synthetic data: how well the ranking matches the known one
                truth = {f["field"]: f["importance"] for f in teacher["field_ranking"]}
                out[variant]["spearman_with_teacher"] = spearman_with(scores, truth)
        return out

    def _summary(self, progressive: dict[str, Any] | None, epochs: list[dict[str, Any]], test: dict[str, Any],
                 restore: dict[str, Any] | None) -> dict[str, Any]:
        import ray

        from shark import __version__

        reports = ray.get([w.report.remote() for w in self.workers])
        shards_end = ray.get([s.info.remote() for s in self.shards])  # restarts and recoveries during the run
        stats = self.client.table_stats()
        dense_stats = stats.pop(DENSE_TABLE, None)
        examples = sum(r["times"]["examples"] for r in reports)
        emb_bytes = sum(s["bytes_by_kind"].get("total", 0) for s in stats.values())
        summary: dict[str, Any] = {
            "engine": "ray",
            "shark_version": __version__,
            "config": self.config.to_dict(),
            "cluster": {**self.cluster.to_dict(), "addresses": self.addresses, "shards_info": self.shard_info,
                        "shard_recoveries": [{"shard": i["shard"], "restarted": i["restarted"], "pid": i["pid"],
                                              "restored_tag": i["restored_tag"], "replayed": i["replayed"]}
                                             for i in shards_end if i["restarted"]],
                        "workers_info": self.worker_info, "worker_restarts": self.worker_restarts,
                        # per shard: PushMany steps per worker id, applied and answered as duplicates
                        "push_ledger": {i["shard"]: i.get("pushes", {}) for i in shards_end}},
            "data": reports[0]["data"],
            "train": {"progressive": progressive, "epochs": epochs},
            "test": test,
            "throughput": {"train_examples": examples, "train_seconds": round(self.train_seconds, 3),
                           "examples_per_second": round(examples / self.train_seconds, 1)
                           if self.train_seconds > 0 else 0.0,
                           "threads": self.cluster.worker_threads * self.cluster.workers,
                           "workers": [{**r["times"], "client": r["client"]} for r in reports]},
            "model": {"fields": list(self.fields),
                      "dense_parameters": reports[0]["dense"]["parameters"],
                      "embedding_dim": self.config.embedding_dim,
                      "embedding_memory": {**_memory_summary(stats, emb_bytes),
                                           "shard_rss_bytes": self.client.shard_rss()},
                      "dense_table": dense_stats},
            "checkpoints": self.checkpoints,
            "restored_from": None if restore is None else {"directory": self.cluster.restore_from,
                                                           "tag": restore["tag"]},
        }
        teacher = self.plan.teacher()
        if teacher is not None:
            summary["teacher"] = teacher
            summary["test"]["auc_gap_to_teacher"] = teacher["auc"] - test["auc"]
        return summary

    def _teardown(self) -> None:
        import ray

        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - teardown must not mask the run's own error
                pass
        for w in self.workers:
            try:
                ray.get(w.stop.remote(), timeout=10)
            except Exception:  # noqa: BLE001
                pass
        for a in self.workers + self.shards:
            ray.kill(a, no_restart=True)
        self.workers, self.shards = [], []
        if self.placement_group is not None:
            try:
                ray.util.remove_placement_group(self.placement_group)
            except Exception:  # noqa: BLE001
                pass
            self.placement_group = None


def _memory_summary(stats: dict[str, dict[str, Any]], total: int) -> dict[str, Any]:
    """Embedding memory over every table and shard: bytes (all of them), the same rows all in fp32, rows per tier."""
    tiers = {t: sum(s["rows_by_tier"].get(t, 0) for s in stats.values()) for t in ("fp32", "fp16", "int8")}
    fp32 = sum(s["bytes_by_kind"].get("fp32_equivalent_total", s["bytes_by_kind"].get("total", 0))
               for s in stats.values())
    return {"bytes": total, "fp32_equivalent_bytes": fp32, "fraction_of_fp32": round(total / fp32, 4) if fp32 else None,
            "rows": sum(s["rows"] for s in stats.values()), "rows_by_tier": tiers, "tables": stats}
