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
from shark.metrics import ScoreLog, auc, logloss
from shark.train.config import TrainConfig
from shark.train.data_plan import DataPlan, DataSpec

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
                                           name=f"shark-{self.run_id}-worker-{i}").remote(
            i, c.workers, self.addresses, self.config, self.spec, c.staleness, c.worker_threads, c.retry_policy(),
            security=c.security)
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
        import ray

        c = self.cluster
        active = list(range(len(self.workers)))
        while active:
            self.sm.move(Phase.TRAINING, f"epoch {epoch + 1}")
            self._train_started = time.perf_counter()
            try:
                results = ray.get([self.workers[i].train.remote(epoch, c.checkpoint_every) for i in active])
            finally:
                self.train_seconds += time.perf_counter() - self._train_started
                self._train_started = None
            self.positions = {r["worker"]: r["position"] for r in results}
            active = [r["worker"] for r in results if not r["done"]]
            if active and c.checkpoint_every:
                self.sm.move(Phase.CHECKPOINTING, f"epoch {epoch + 1}")
                self._checkpoint(final=False)
        logs = ray.get([w.epoch_log.remote() for w in self.workers])
        self._last_progress = {**self._last_progress, "examples": int(sum(y.size for y, _ in logs))}
        return _merge_in_time_order(logs)

    def _train_stream(self) -> dict[str, Any]:
        """Stream mode: segments of segment_batches batches per worker until request_stop() (or max_examples);
        between segments a checkpoint (with a checkpoint directory) and every eval_every segments a held-out
        evaluation. The progressive (test-then-train) figures are kept per window of `window` examples only, so
        memory stays bounded however long the stream runs."""
        import ray

        st, c = self.stream, self.cluster
        self.epoch = 1
        batch = self.config.batch_size
        windows = _Windows(st.window)
        evaluations: list[dict[str, Any]] = []
        segments, trained, results = 0, 0, []
        while True:
            if self._stop_requested.is_set():  # asked before the workers existed: tell them now
                ray.get([w.request_stop.remote() for w in self.workers])
            n = st.segment_batches
            if st.max_examples:
                n = min(n, -(-(st.max_examples - trained) // (len(self.workers) * batch)))
            self.sm.move(Phase.TRAINING, f"stream segment {segments + 1}")
            self._train_started = time.perf_counter()
            try:
                results = ray.get([w.train_stream.remote(n) for w in self.workers])
            finally:
                self.train_seconds += time.perf_counter() - self._train_started
                self._train_started = None
            segments += 1
            self.positions = {r["worker"]: r["position"] for r in results}
            trained = sum(r["trained_examples"] for r in results)
            windows.add(_merge_in_time_order([(r["labels"], r["probs"]) for r in results]).arrays(), trained)
            self._last_progress = {**self._last_progress, "examples": trained, **windows.latest()}
            if self._stop_requested.is_set() or any(r["stopped"] for r in results):
                stopped_by = "request_stop"
                break
            if st.max_examples and trained >= st.max_examples:
                stopped_by = "max_examples"
                break
            if c.checkpoint_dir:
                self.sm.move(Phase.CHECKPOINTING, f"stream segment {segments}")
                self._checkpoint(final=False)
            if st.eval_every and segments % st.eval_every == 0:
                self.sm.move(Phase.EVALUATING, f"stream segment {segments}")
                evaluations.append({"segment": segments, "examples": trained, **self._evaluate()})
        windows.finish(trained)
        return {"config": st.to_dict(), "stopped_by": stopped_by, "segments": segments,
                "batch_size": batch, "positions": {str(r["worker"]): r["position"] for r in results},
                "examples_trained": sum(r["position"] for r in results) * batch,
                "examples_trained_counted": trained,
                "examples_read": sum(r["read_examples"] for r in results),
                "batches_read": sum(r["read_batches"] for r in results),
                "progressive_windows": windows.curve, "last_window": windows.last_summary,
                "evaluations": evaluations}

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
        while (reason := policy.stop_reason(self._embedding_bytes(), len(self.fields))) is None:
            r = policy.rounds + 1
            self.sm.move(Phase.SCORING, f"round {r}")
            scores = self._score(None, cc.score_rows)
            victims = policy.victims(scores["abs"]["ranking"])
            self.sm.move(Phase.CHECKPOINTING, f"before round {r}")
            before = self._checkpoint(final=False)
            self.sm.move(Phase.DELETING, ", ".join(victims))
            for v in victims:
                self._delete(v)
            if cc.finetune_rows:  # fresh rows each round: a one-pass model overfits rows it has seen
                self.sm.move(Phase.FINE_TUNING, f"{cc.finetune_rows:,} fresh rows")
                ray.get([w.finetune.remote(cc.finetune_rows, (r - 1) * cc.finetune_rows) for w in self.workers])
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
                self.client.restore(self.cluster.checkpoint_dir, before)
                ray.get([w.reset_fields.remote(dropped) for w in self.workers])
                self.fields.extend(victims)
                self.sm.move(Phase.EVALUATING, "the model before the rejected round")
                final = self._evaluate()
                reason = f"round {r} fell below the AUC floor ({test['auc']:.4f} < {policy.auc_floor:.4f}): rolled back"
                break
            dropped.extend(victims)
            final = test
        memory = self._embedding_bytes()
        return {"config": cc.to_dict(), "base": {"auc": base_test["auc"], "memory_bytes": base_memory},
                "auc_floor": policy.auc_floor, "rounds": rounds, "stop_reason": reason, "deleted": dropped,
                "fields_kept": list(self.fields), "memory_bytes": memory, "memory_fraction": memory / base_memory,
                "auc_relative_change": final["auc"] / base_test["auc"] - 1.0, "final_test": final}

    def _score(self, teacher: dict[str, Any] | None, rows: int) -> dict[str, Any]:
        """F-Permutation (paper eq. 4) across the workers: pass 1 gathers every worker's partial sums (the signed
        score and the field means), pass 2 the absolute-value sums with those means fixed; finished here."""
        import ray

        from shark.fperm import FieldSums, spearman_with

        share = -(-rows // len(self.workers))
        t0 = time.perf_counter()

        def gathered(mean: np.ndarray | None) -> FieldSums:  # every worker's partial sums, added
            parts = ray.get([w.field_sums.remote(mean, share) for w in self.workers])
            return functools.reduce(operator.add, [FieldSums.from_dict(d) for d in parts])

        first = gathered(None)
        second = gathered(first.sum_e / max(first.n, 1))
        out: dict[str, Any] = {"rows": first.n, "seconds": round(time.perf_counter() - t0, 3)}
        for variant, sums in (("abs", second), ("signed", first)):
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
                        "workers_info": self.worker_info},
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
                      "embedding_memory": _memory_summary(stats, emb_bytes),
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


class _Windows:
    """The stream's progressive figures over consecutive windows of `size` examples (the merged workers' order):
    a point per full window, the last (partial) one at the end; only the unfinished window's examples are kept."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.y = np.zeros(0, np.float32)
        self.p = np.zeros(0, np.float32)
        self.curve: list[dict[str, Any]] = []
        self.last_summary: dict[str, Any] | None = None
        self._done = 0  # examples in finished windows

    def _point(self, y: np.ndarray, p: np.ndarray) -> None:
        self._done += y.size
        log = ScoreLog()
        log.add(y, p)
        self.last_summary = {**log.summary(), "window": self.size}
        if 0 < y.sum() < y.size:
            self.curve.append({"examples": self._done, "window_examples": int(y.size), "auc": auc(y, p),
                               "logloss": logloss(y, p)})

    def add(self, arrays: tuple[np.ndarray, np.ndarray], trained: int) -> None:
        self.y, self.p = np.concatenate([self.y, arrays[0]]), np.concatenate([self.p, arrays[1]])
        while self.y.size >= self.size:
            self._point(self.y[:self.size], self.p[:self.size])
            self.y, self.p = self.y[self.size:], self.p[self.size:]

    def finish(self, trained: int) -> None:
        """The unfinished window becomes a point unless it is too small to mean much (< a quarter window)."""
        if self.y.size and (self.y.size >= self.size // 4 or self.last_summary is None):
            self._point(self.y, self.p)
            self.y, self.p = self.y[:0], self.p[:0]

    def latest(self) -> dict[str, Any]:
        return {"window_auc": self.curve[-1]["auc"]} if self.curve else {}


def _merge_in_time_order(logs: list[tuple[np.ndarray, np.ndarray]]) -> ScoreLog:
    """Workers' progressive logs -> one log ordered by each example's relative position in its worker's stream
    (workers advance at about the same rate, so this approximates the order in which examples were trained)."""
    ys, ps, keys = [], [], []
    for y, p in logs:
        ys.append(y)
        ps.append(p)
        keys.append((np.arange(y.size) + 0.5) / max(y.size, 1))
    order = np.argsort(np.concatenate(keys), kind="stable")
    log = ScoreLog()
    log.add(np.concatenate(ys)[order], np.concatenate(ps)[order])
    return log
