"""ClusterConfig: how a distributed run is laid out on Ray. Frozen, validated at construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ps.security import SecurityConfig, SecurityError
from shark.coordinator.failpoints import check_failpoints


@dataclass(frozen=True)
class ClusterConfig:
    address: str | None = None  # None: start a local Ray on loopback; else join this cluster ("auto" = RAY_ADDRESS)
    shards: int = 2
    workers: int = 2
    staleness: int = 2  # push steps a worker may have in flight (0 = synchronous)
    checkpoint_dir: str | None = None  # where checkpoints go (None: no checkpoints)
    checkpoint_every: int = 0  # batches per worker between checkpoints (0: only at the end of the run)
    restore_from: str | None = None  # a checkpoint directory to start the cluster from
    restore_tag: str | None = None  # a tag in restore_from (None: the newest complete checkpoint)
    shard_cpus: float = 0.5  # Ray logical CPUs requested per actor (local Ray gets enough logical CPUs)
    worker_cpus: float = 1.0
    placement: str = "spread"  # placement-group strategy: "spread" (soft: across nodes when it can) or "pack"
    shard_resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per shard, e.g. {"ps": 1}
    worker_resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per worker
    worker_threads: int = 1  # torch threads per worker
    deadline_s: float = 30.0  # per-attempt deadline of a data-plane call
    score_rows: int = 0  # > 0: after evaluation, F-Permutation field scores over this many held-out rows
    retry_attempts: int = 12  # per call, with backoff 0.05 s doubling to 2 s: about 15 s, a shard restart's time
    ready_timeout_s: float = 120.0  # how long to wait for shards to serve (restores included)
    worker_restarts: int = 3  # per worker and run: a worker that dies is restarted and resumes its committed point
    # With a checkpoint_dir: a coordinator that dies is restarted by Ray (this many times per run) and resumes the
    # run from its newest complete checkpoint (shark.coordinator.journal). Without one there is nothing to resume.
    coordinator_restarts: int = 2
    failpoints: tuple[str, ...] = ()  # chaos tests only: where the coordinator dies once (shark.coordinator.failpoints)
    # Data-plane token / TLS / mutual TLS for shards and their clients (paths and a variable name, never a secret)
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def __post_init__(self) -> None:
        checks = {
            "shards": 1 <= self.shards <= 1024,
            "workers": 1 <= self.workers <= 1024,
            "staleness": 0 <= self.staleness <= 1024,
            "checkpoint_every": self.checkpoint_every >= 0,
            "shard_cpus": self.shard_cpus >= 0,
            "worker_cpus": self.worker_cpus >= 0,
            "worker_threads": self.worker_threads >= 1,
            "deadline_s": self.deadline_s > 0,
            "retry_attempts": self.retry_attempts >= 1,
            "score_rows": self.score_rows >= 0,
            "ready_timeout_s": self.ready_timeout_s > 0,
            "worker_restarts": self.worker_restarts >= 0,
            "coordinator_restarts": self.coordinator_restarts >= 0,
        }
        checks["placement"] = self.placement in PLACEMENTS
        for key in ("shard_resources", "worker_resources"):
            checks[key] = _valid_resources(getattr(self, key))
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid cluster setting(s): {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")
        if self.checkpoint_every and not self.checkpoint_dir:
            raise ValueError("checkpoint_every needs checkpoint_dir")
        check_failpoints(tuple(self.failpoints))
        if self.failpoints and not (self.checkpoint_dir and self.coordinator_restarts):
            raise ValueError("failpoints kill the coordinator: they need checkpoint_dir and coordinator_restarts >= 1")
        if self.restore_tag and not self.restore_from:
            raise ValueError("restore_tag needs restore_from")
        if not isinstance(self.security, SecurityConfig):
            raise TypeError(f"security must be a SecurityConfig, got {type(self.security).__name__}")
        try:
            self.security.check_cluster()
        except SecurityError as exc:
            raise ValueError(f"invalid security setting: {exc}") from None

    def retry_policy(self) -> Any:
        from worker.client.retry import RetryPolicy

        return RetryPolicy(attempts=self.retry_attempts, deadline_s=self.deadline_s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StreamConfig:
    """`shark train --stream`: train on an endless source in segments until stopped (Coordinator.request_stop)."""
    segment_batches: int = 200  # batches per worker between two checkpoints (and stop checks of the coordinator)
    eval_every: int = 5  # segments between held-out evaluations (0: only the final one)
    max_examples: int = 0  # > 0: stop once this many examples were trained (0: until stopped)
    window: int = 20_000  # examples per window of the progressive (test-then-train) AUC curve

    def __post_init__(self) -> None:
        if self.segment_batches < 1 or self.eval_every < 0 or self.max_examples < 0 or self.window < 100:
            raise ValueError(f"invalid stream setting(s): {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PLACEMENTS = ("spread", "pack")  # Ray placement-group strategies SPREAD / PACK (both soft)


def _valid_resources(res: Any) -> bool:
    """Custom resources: {name: amount > 0}; CPU/GPU/memory have their own settings (--shard-cpus, ...)."""
    return isinstance(res, dict) and all(
        isinstance(k, str) and k and k not in ("CPU", "GPU", "memory", "object_store_memory")
        and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for k, v in res.items())
