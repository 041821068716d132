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

from shark.coordinator.compress_loop import CompressProgress, run_compression
from shark.coordinator.config import ClusterConfig
from shark.coordinator.errors import RunError
from shark.coordinator.failpoints import Failpoints
from shark.coordinator.journal import Journal
from shark.coordinator.phases import Phase, RunStateMachine
from shark.coordinator.pruning import CompressConfig
from shark.coordinator.run_manifest import (
    discard_partial_checkpoints,
    latest_run_tag,
    read_run_manifest,
    write_run_manifest,
)
from shark.coordinator.segment_logs import SegmentLogs
from shark.coordinator.stream_loop import Windows as _Windows  # noqa: F401 - the name tests import
from shark.coordinator.stream_loop import merge_in_time_order as _merge_in_time_order
from shark.coordinator.stream_loop import train_stream
from shark.coordinator.tier_report import tiers_by_frequency
from shark.coordinator.worker_restarts import call_workers, gather, revive
from shark.metrics import ScoreLog, auc, logloss
from shark.train.config import TrainConfig
from shark.train.data_plan import DataPlan, DataSpec

log = logging.getLogger(__name__)

DENSE_TABLE = "__dense__"  # worker.dense.DENSE_TABLE, repeated so this module does not import torch


class Coordinator:
    def __init__(self, config: TrainConfig, spec: DataSpec, cluster: ClusterConfig,
                 compress: CompressConfig | None = None, stream: Any = None, run_id: str | None = None) -> None:
        self.config, self.spec, self.cluster, self.compress = config, spec, cluster, compress
        self.stream = stream  # a StreamConfig: train on the endless stream until request_stop() (or max_examples)
        self._stop_requested = threading.Event()
        self.run_id = run_id or uuid.uuid4().hex[:12]
        # With a checkpoint directory every transition is journaled first; Ray re-runs this constructor when it
        # restarts a dead coordinator, and the journal tells the new incarnation what it is.
        self.journal = Journal(os.path.join(cluster.checkpoint_dir, "coordinator", self.run_id)) \
            if cluster.checkpoint_dir else None
        self.incarnation = self.journal.next_incarnation() if self.journal else 0
        self.failpoints = Failpoints(tuple(cluster.failpoints), self.incarnation)
        self.sm = RunStateMachine(on_move=self._journal_move)
        self._journal_move(self.sm.history[0])
        self.coordinator_restarts: list[dict[str, Any]] = []
        self._segment_logs = SegmentLogs(self.journal.dir / "segments") if self.journal else None
        self.segments: dict[int, int] = {}  # worker -> committed segments this epoch
        self._train_record: dict[str, Any] = {"epochs": [], "progressive": None}
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
        # Examples in the committed training segments (epochs and streams, not fine-tuning), over every coordinator
        # incarnation: the summary's throughput divides it by train_seconds, which covers the same work. A segment
        # lost with a dying worker is in the seconds but not here (it is trained again, and counted then).
        self.train_examples = 0
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
        # a restarted coordinator: its run's newest checkpoint (compressing a given checkpoint resumes too)
        resume = self._resume_point() if train or self.compress is not None else None
        restore = resume if resume is not None else self._restore_point()
        if not train and restore is None:
            raise RunError("evaluation without training needs a checkpoint to restore (restore_from)")
        state: dict[str, Any] = resume["resume"] if resume is not None else {}
        stage = state.get("stage", "start")  # start | train | trained | compress | final
        if self.incarnation:
            self._remove_old_placement_groups()
        if state:
            self._train_record = state["train"]
            self.epoch = len(self._train_record["epochs"])
            self.checkpoints = list(state["checkpoints"])
            self.rollbacks = int(state["rollbacks"])
            self.train_seconds = float(state["train_seconds"])
            self.train_examples = int(state.get("train_examples", 0))
        # One plan for the run's metadata (fields, table names, the teacher): building one constructs the synthetic
        # generator, which calibrates itself, so it is not rebuilt per use.
        self.plan = plan = DataPlan(self.spec, self.config.batch_size, self.config.eval_batch_size)
        self.fields = (["dense"] if plan.n_dense else []) + list(plan.table_names)  # the model's active fields
        self._initial_fields = list(self.fields)
        self.sm.move(Phase.STARTING, f"{c.shards} shards, {c.workers} workers")
        self._start_actors(restore)
        if restore is not None:
            why = f" (coordinator incarnation {self.incarnation} resumes its run)" if resume is not None else ""
            self.sm.move(Phase.RESTORING, f"{restore['directory']} tag {restore['tag']}{why}")
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
        stream_info: dict[str, Any] | None = None
        if train and self.stream is not None:
            stream_info = self._train_stream()
            self._train_record["progressive"] = stream_info["last_window"]
            if c.checkpoint_dir:
                self.sm.move(Phase.CHECKPOINTING, "final")
                self._checkpoint(final=True)
        elif train and stage in ("start", "train"):
            epochs = self._train_record["epochs"]
            for epoch in range(int(state.get("epoch", 0)), self.config.epochs):
                self.epoch = epoch + 1
                log = self._train_epoch(epoch, state if stage == "train" and epoch == state["epoch"] else None)
                epochs.append({"epoch": epoch + 1, "progressive": log.summary(), "progressive_curve": log.curve()})
            self._train_record["progressive"] = epochs[0]["progressive"] if epochs else None
            if c.checkpoint_dir:
                self.sm.move(Phase.CHECKPOINTING, "final")
                self._checkpoint(final=True, state={"stage": "trained"})
        compression: dict[str, Any] | None = None
        if stage == "final":  # the compressed model's checkpoint: everything but the summary was done
            compression = {**state["compression"], "checkpoint": restore["tag"]}
            test = compression["final_test"]
        else:
            if stage != "compress":
                self.sm.move(Phase.EVALUATING)
                test = self._evaluate()
            if self.compress is not None:
                progress = CompressProgress.from_dict(state["compress"]) if stage == "compress" else \
                    CompressProgress(base_test=test, base_memory=self._embedding_bytes(),
                                     base_deleted=[f for f in self._initial_fields if f not in self.fields])
                compression = run_compression(self, progress, restore["tag"] if stage == "compress" else None)
                test = compression["final_test"]
                self.sm.move(Phase.CHECKPOINTING, "final: the compressed model")
                compression["checkpoint"] = self._checkpoint(final=True,
                                                             state={"stage": "final", "compression": compression})
                self.failpoint("finishing.before_summary")
        # where rows sit in the tiers against their training accesses (F-Q / MPE): not for a plain evaluation
        tiers = tiers_by_frequency(self) if train or self.compress is not None else None
        summary = self._summary(self._train_record["progressive"], self._train_record["epochs"], test, restore)
        if tiers is not None:
            summary["model"]["tiers_by_frequency"] = tiers
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

    # --- a restarted coordinator ------------------------------------------------------------------------------
    def _journal_move(self, t: Any) -> None:
        if self.journal is not None:
            self.journal.append({"incarnation": self.incarnation, "phase": t.phase.value, "note": t.note,
                                 "at_unix": round(t.at_unix, 3)})

    def _incarnation_name(self, base: str) -> str:
        """Names of what a coordinator incarnation creates (actors, push logs, worker ids, checkpoint tags): the
        first keeps the plain name, a restarted one adds -i<n>, so nothing it makes collides with what its dead
        predecessor left (actors being reaped, a log with updates after the resume point, idempotency windows)."""
        return base if self.incarnation == 0 else f"{base}-i{self.incarnation}"

    def failpoint(self, name: str) -> None:
        self.failpoints(name)

    def _resume_point(self) -> dict[str, Any] | None:
        """For a restarted coordinator (incarnation > 0): the newest complete checkpoint of this run, whose RUN.json
        holds the coordinator's state then; its shards will be restored from it. Checkpoints of this run that never
        got their RUN.json are deleted first, so no partial one stays visible. None: nothing to resume (a first
        incarnation, or the predecessor died before its first checkpoint: the run starts over)."""
        if self.incarnation == 0 or self.journal is None:
            return None
        c = self.cluster
        entries = self.journal.entries()
        died = next((e for e in reversed(entries) if e.get("incarnation") == self.incarnation - 1), {})
        if self.stream is not None:
            raise RunError(f"the coordinator died while {died.get('phase', '?')} in a stream run; streams do not "
                           "resume after a coordinator restart. The model of the newest complete checkpoint is kept "
                           f"in {c.checkpoint_dir}: `shark evaluate --checkpoint {c.checkpoint_dir}` scores it, "
                           f"`shark compress --checkpoint {c.checkpoint_dir}` prunes it")
        assert c.checkpoint_dir is not None
        removed = discard_partial_checkpoints(c.checkpoint_dir, self.run_id)
        tag = latest_run_tag(c.checkpoint_dir, run_id=self.run_id)
        doc = None if tag is None else {**read_run_manifest(c.checkpoint_dir, tag), "directory": c.checkpoint_dir}
        if doc is not None and "resume" not in doc:
            doc = None  # written by a version without resume state: start over
        self.coordinator_restarts.append({"incarnation": self.incarnation, "died_in": died.get("phase"),
                                          "died_note": died.get("note"), "resumed_from": tag if doc else None,
                                          "stage": doc["resume"]["stage"] if doc else "start",
                                          "partial_checkpoints_removed": removed})
        log.warning("coordinator incarnation %d: the predecessor died while %s; resuming from %s", self.incarnation,
                    died.get("phase"), tag if doc else "the start")
        return doc

    def _remove_old_placement_groups(self) -> None:
        """A dead coordinator's placement group goes with it, but possibly not before its restart asks for a new one:
        remove it now so its reserved CPUs are free."""
        import ray

        for n in range(self.incarnation):
            name = f"shark-{self.run_id}" + (f"-i{n}" if n else "")
            try:
                ray.util.remove_placement_group(ray.util.get_placement_group(name))
            except Exception:  # noqa: BLE001, S110 - already gone
                pass

    # --- pieces -----------------------------------------------------------------------------------------------
    def _restore_point(self) -> dict[str, Any] | None:
        c = self.cluster
        if not c.restore_from:
            return None
        tag = c.restore_tag or latest_run_tag(c.restore_from)
        if tag is None:
            raise RunError(f"{c.restore_from}: no complete checkpoint (no tag with a valid RUN.json)")
        doc = {**read_run_manifest(c.restore_from, tag), "directory": c.restore_from}
        if doc["num_shards"] != c.shards:  # each new shard gathers its rows from every old one (ps.checkpoint.reshard)
            log.info("checkpoint %r has %d shards, the cluster %d: resharding on restore", tag, doc["num_shards"],
                     c.shards)
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
        # A restarted coordinator (incarnation n > 0) starts new shards from a checkpoint with a new push log:
        # the old log holds updates made after that checkpoint, which the resumed run makes again.
        wal_dir = os.path.join(c.checkpoint_dir, "wal", self._incarnation_name(self.run_id)) \
            if c.checkpoint_dir else None
        self.shards = [shard_cls.options(num_cpus=c.shard_cpus, resources=c.shard_resources or None,
                                         scheduling_strategy=at(i), max_concurrency=8,
                                         max_restarts=-1 if wal_dir else 0,
                                         name=self._incarnation_name(f"shark-{self.run_id}-shard-{i}")).remote(
            shard_index=i, num_shards=c.shards, host=None,
            checkpoint_dir=restore["directory"] if restore else None, restore_tag=restore["tag"] if restore else None,
            wal_dir=wal_dir, security=c.security,
            restore_source_shards=restore["num_shards"] if restore and restore["num_shards"] != c.shards else None)
            for i in range(c.shards)]
        self.addresses = ray.get([s.address.remote() for s in self.shards])
        self.client = PSClient(self.addresses, worker_id=f"coordinator-{self.run_id}", staleness=0,
                               retry=c.retry_policy(), security=c.security)
        self.client.wait_ready(c.ready_timeout_s)
        self.workers = [worker_cls.options(num_cpus=c.worker_cpus, resources=c.worker_resources or None,
                                           scheduling_strategy=at(c.shards + i), max_concurrency=4,
                                           max_restarts=c.worker_restarts, max_task_retries=0,
                                           name=self._incarnation_name(f"shark-{self.run_id}-worker-{i}")).remote(
            i, c.workers, self.addresses, self.config, self.spec, c.staleness, c.worker_threads, c.retry_policy(),
            security=c.security, run_id=self._incarnation_name(self.run_id))
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
        self.placement_group = placement_group(bundles, strategy=c.placement.upper(),
                                               name=self._incarnation_name(f"shark-{self.run_id}"))
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
        elif cfg.quant == "mpe":  # the budget and refresh period use F-Q's fields (ps.store.config)
            quant.update(mpe_low=cfg.mpe_low, mpe_cache_fraction=cfg.mpe_cache,
                         fq_budget_fraction=cfg.memory_budget, fq_retier_every=cfg.retier_every)
        return [TableConfig(name=t, dim=cfg.embedding_dim, capacity=cfg.capacity_of(t), optimizer="adagrad",
                            lr=cfg.lr_embedding, eps=1e-8, init_scale=cfg.init_scale, seed=cfg.seed, **quant)
                for t in names]

    def _check_restored(self) -> None:
        stats = self.client.table_stats()
        if DENSE_TABLE not in stats:
            raise RunError("the restored shards hold no dense parameters (table __dense__ missing)")

    def _train_epoch(self, epoch: int, resume: dict[str, Any] | None = None) -> ScoreLog:
        """The epoch in segments of checkpoint_every batches per worker (a checkpoint between two). A worker that
        dies is restarted by Ray and resumes at its committed point (the end of its last returned segment: data
        position and push seq); its segment is run again, and the shards drop the pushes that had landed. Only
        committed segments' progressive logs are kept, so every example is counted once. `resume`: the state saved
        with a mid-epoch checkpoint, which the shards were restored from (a restarted coordinator): the workers
        start at its positions and the committed segments' logs are read back."""
        import ray

        c = self.cluster
        active = list(range(len(self.workers)))
        logs: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {i: [] for i in active}
        self.segments = {i: 0 for i in active}
        for i in active:
            self.positions[i] = 0
        if resume is not None:
            self.positions = {int(k): int(v) for k, v in resume["positions"].items()}
            self.segments = {int(k): int(v) for k, v in resume["segments"].items()}
            for i in active:
                logs[i] = [self._segment_logs.load(epoch, i, k) for k in range(self.segments[i])]
            # new worker actors (new ids, seq 0: the restored shards have never seen them) at the saved positions
            ray.get([self.workers[i].resume.remote(epoch, self.positions[i], 0) for i in active])
            active = [int(i) for i in resume["active"]]
        while active:
            self.sm.move(Phase.TRAINING, f"epoch {epoch + 1}")
            self._train_started = time.perf_counter()
            refs = {i: self.workers[i].train.remote(epoch, c.checkpoint_every) for i in active}
            try:
                results, died = gather(refs)
            finally:
                self.train_seconds += time.perf_counter() - self._train_started
                self._train_started = None
            for i, r in results.items():
                self.positions[i], self.seqs[i] = r["position"], r["seq"]
                self.train_examples += int(r["labels"].size)
                logs[i].append((r["labels"], r["probs"]))
                if self._segment_logs is not None:  # before the checkpoint that commits it
                    self._segment_logs.save(epoch, i, self.segments[i], r["labels"], r["probs"])
                self.segments[i] += 1
            active = sorted([i for i, r in results.items() if not r["done"]] + [i for i, _ in died])
            for i, exc in died:
                self._resume_worker(i, epoch, exc)
            if active and c.checkpoint_every and not died:
                self.sm.move(Phase.CHECKPOINTING, f"epoch {epoch + 1}")
                self._checkpoint(final=False, state={
                    "stage": "train", "epoch": epoch, "active": active,
                    "positions": {str(k): v for k, v in self.positions.items()},
                    "segments": {str(k): v for k, v in self.segments.items()}})
                self.failpoint("training.after_first_checkpoint")
        merged = [(np.concatenate([y for y, _ in parts]), np.concatenate([p for _, p in parts]))
                  for parts in logs.values()]
        self._last_progress = {**self._last_progress, "examples": int(sum(y.size for y, _ in merged))}
        return _merge_in_time_order(merged)

    def _resume_worker(self, i: int, epoch: int, cause: Exception) -> None:
        """Wait for Ray's restart of worker i (up to cluster.worker_restarts per run) and hand it its committed
        point in the epoch. A worker that cannot come back fails the run with the reason."""
        position, seq = self.positions.get(i, 0), self.seqs.get(i, 0)
        info = revive(self, i, cause, f"training epoch {epoch + 1}",
                      lambda w: w.resume.remote(epoch, position, seq))
        log.warning("worker %d resumes epoch %d at batch %d, seq %d", i, epoch + 1, info["position"], info["seq"])

    def _train_stream(self) -> dict[str, Any]:
        """Stream mode (shark.coordinator.stream_loop): segments until stopped, progressive AUC per window, and
        the drift report on a drifting synthetic stream."""
        return train_stream(self)

    def _checkpoint(self, final: bool, state: dict[str, Any] | None = None) -> str:
        """Every shard writes its part, then RUN.json is written last. `state`: where the run is (stage and what a
        restarted coordinator needs to go on from here), saved in RUN.json with the training record so far; a
        checkpoint without it (a stream's) is not a resume point."""
        c = self.cluster
        assert c.checkpoint_dir is not None
        tag = self._incarnation_name(f"ckpt-{len(self.checkpoints):05d}-{self.run_id}")
        t0 = time.perf_counter()
        if self.failpoints.reached("checkpointing.after_first_shard"):
            self.client.checkpoint(c.checkpoint_dir, tag, shards=[0])
            self.failpoints.die("checkpointing.after_first_shard")
        written = self.client.checkpoint(c.checkpoint_dir, tag)
        self.failpoint("checkpointing.before_manifest")
        entry = {"tag": tag, "path": os.path.join(c.checkpoint_dir, tag), "final": final,
                 "seconds": round(time.perf_counter() - t0, 3), "bytes": written}
        resume = None if state is None else {
            **state, "train": self._train_record, "checkpoints": [*self.checkpoints, entry],
            "rollbacks": self.rollbacks, "train_seconds": self.train_seconds, "train_examples": self.train_examples}
        body = {"run_id": self.run_id, "final": final, "epoch": self.epoch, "resume": resume,
                "positions": {str(k): v for k, v in self.positions.items()},
                "train_config": self.config.to_dict(), "cluster": self.cluster.to_dict(),
                "fields": list(self.fields),
                "deleted_fields": [f for f in self._initial_fields if f not in self.fields],
                "data": self._data_record()}
        write_run_manifest(c.checkpoint_dir, tag, c.shards, body)
        self.checkpoints.append(entry)
        return tag

    def _data_record(self) -> dict[str, Any]:
        """What a checkpoint records of its data: enough for `shark compress --checkpoint` to fine-tune on rows
        past the trained ones and to evaluate on the same held-out rows."""
        s = self.spec
        if s.synthetic:
            return {"source": s.source, "train_rows": s.train_rows, "test_rows": s.test_rows,
                    "synth_seed": s.synth_seed, "stream": s.stream}
        return {"source": s.source, "test_path": s.test_path, "test_fraction": s.test_fraction,
                "split_seed": s.split_seed}

    def _evaluate(self) -> dict[str, Any]:
        parts = call_workers(self, "evaluate", where="evaluating")
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
        if name != "dense":
            if self.failpoints.reached("deleting.after_first_shard"):
                self.client.drop_table(name, shards=[0])
                self.failpoints.die("deleting.after_first_shard")
            self.client.drop_table(name)
        self.fields.remove(name)  # first: a worker revived now rejoins without it (drop_field is idempotent)
        call_workers(self, "drop_field", name, where=f"deleting {name}")

    def _restore_all(self, tag: str) -> None:
        """Roll every shard back to checkpoint `tag`; the workers then push as new ids from seq 0 (the restored
        idempotency windows know their seqs only up to that checkpoint)."""
        assert self.cluster.checkpoint_dir
        self.client.restore(self.cluster.checkpoint_dir, tag)
        self.rollbacks += 1
        self.seqs = {i: 0 for i in range(len(self.workers))}
        call_workers(self, "after_restore", self.rollbacks, where="rolling back")  # a revived one rejoins at t<n>

    def _roll_back(self, tag: str, dropped: list[str]) -> None:
        """The shards to checkpoint `tag`, and every worker's replica and the field list to what it holds: the
        initial model minus `dropped` (in deletion order). The field list first, so a worker revived meanwhile
        rejoins with it."""
        self.fields = [f for f in self._initial_fields if f not in dropped]
        self._restore_all(tag)
        call_workers(self, "reset_fields", list(dropped), where="rolling back")

    def _finetune(self, rows: int, offset: int) -> None:
        for r in call_workers(self, "finetune", rows, offset, where="fine-tuning", changes_shards=True):
            self.seqs[r["worker"]] = r["seq"]

    def _score(self, teacher: dict[str, Any] | None, rows: int) -> dict[str, Any]:
        """F-Permutation (paper eq. 4) across the workers: one pass gathers every worker's partial sums (the
        'abs' and 'signed' scores are both plain sums, shark.fperm.taylor); added and finished here."""
        from shark.fperm import FieldSums, spearman_with

        share = -(-rows // len(self.workers))
        t0 = time.perf_counter()
        parts = call_workers(self, "field_sums", None, share, where="scoring fields")
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

        reports = call_workers(self, "report", where="reporting")
        shards_end = ray.get([s.info.remote() for s in self.shards])  # restarts and recoveries during the run
        stats = self.client.table_stats()
        dense_stats = stats.pop(DENSE_TABLE, None)
        examples = self.train_examples
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
                        "coordinator_restarts": self.coordinator_restarts,
                        # every shard's tables at the end (a deletion is all or nothing: they must agree)
                        "shard_tables": [sorted(i["tables"]) for i in shards_end],
                        # per shard: PushMany steps per worker id, applied and answered as duplicates
                        "push_ledger": {i["shard"]: i.get("pushes", {}) for i in shards_end},
                        # per shard, per table, per worker key (ps.requests.worker_key): pushes applied over the
                        # shard's whole life (checkpointed and replayed, so a restarted shard's count is complete)
                        "durable_ledger": {i["shard"]: i.get("ledger", {}) for i in shards_end}},
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
