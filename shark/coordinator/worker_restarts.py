"""Workers that die: Ray restarts the actor (max_restarts), and the coordinator waits for the new incarnation and
hands it what its predecessor had, then goes on.

- In epoch training (Coordinator._train_epoch) the hand-over is the committed point (data position and push seq)
  and the worker's segment runs again.
- Everywhere else (scoring, a deletion, fine-tuning, evaluation, the final report) the hand-over is the model's
  layout (the deleted fields) and the push identity (rollback timeline and last acknowledged seq), by `rejoin`.
  A read-only or idempotent call (a deletion in the replicas) is then simply asked again of that worker, so the
  result is what an undisturbed run gives. A call that pushes to the shards (fine-tuning) cannot be resumed
  half-way: it raises WorkerLost, and the caller rolls the shards back to the checkpoint it took before the step
  and runs the step again (shark.coordinator.compress_loop).
- In a stream (shark.coordinator.stream_loop) the hand-over is the committed stream position, seq and counters,
  and the lost segment runs again.

Each worker may die cluster.worker_restarts times per run; one more death fails the run with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from shark.coordinator.errors import RunError

log = logging.getLogger(__name__)


class WorkerLost(Exception):
    """A worker died during a step that changes the shards. It has been restarted and rejoined; the step's partial
    effect is still on the shards, so the caller must roll back and run the step again."""

    def __init__(self, workers: list[int], where: str) -> None:
        super().__init__(f"worker {', '.join(map(str, workers))} died while {where}")
        self.workers, self.where = workers, where


def gather(refs: dict[int, Any]) -> tuple[dict[int, Any], list[tuple[int, Exception]]]:
    """Await every {worker: ref}: (results of the workers that answered, [(worker, error)] of those that died
    (killed, or their node gone: not an error they raised, which propagates))."""
    import ray

    results: dict[int, Any] = {}
    died: list[tuple[int, Exception]] = []
    for i, ref in refs.items():
        try:
            results[i] = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            died.append((i, exc))
    return results, died


def revive(coord: Any, i: int, cause: Exception, where: str, handover: Callable[[Any], Any]) -> dict[str, Any]:
    """Wait for Ray's restart of worker i and give it `handover(actor)` (a remote call returning its info with
    "pid"). Records the restart in coord.worker_restarts; a worker past its restart budget, or one that does not
    come back within ready_timeout_s, fails the run with the reason."""
    import ray

    c = coord.cluster
    restarts = sum(1 for r in coord.worker_restarts if r["worker"] == i)
    if restarts >= c.worker_restarts:
        raise RunError(f"worker {i} died {restarts + 1} times (worker_restarts={c.worker_restarts}), the last while "
                       f"{where}: {cause}")
    deadline = time.monotonic() + c.ready_timeout_s
    while True:
        try:
            info: dict[str, Any] = ray.get(handover(coord.workers[i]), timeout=30)
            break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
            if time.monotonic() > deadline:
                raise RunError(f"worker {i} did not come back after dying while {where} ({cause}): {exc}") from None
            time.sleep(0.5)
    coord.worker_restarts.append({"worker": i, "while": where,
                                  **{k: info[k] for k in ("pid", "position", "seq") if k in info}})
    log.warning("worker %d restarted (pid %d) after dying while %s", i, info["pid"], where)
    return info


def rejoin(coord: Any, i: int, cause: Exception, where: str) -> dict[str, Any]:
    """Revive worker i outside epoch training: the model minus the deleted fields, the current rollback timeline,
    and the seq after its predecessor's last acknowledged push."""
    deleted = [f for f in coord._initial_fields if f not in coord.fields]
    seq = int(coord.seqs.get(i, 0))
    return revive(coord, i, cause, where, lambda w: w.rejoin.remote(deleted, coord.rollbacks, seq))


def call_workers(coord: Any, method: str, *args: Any, where: str, changes_shards: bool = False) -> list[Any]:
    """`method(*args)` on every worker, results in worker order. Every call is awaited, also after a death. Dead
    workers are revived (rejoin); then a read-only call is asked of them again (until it succeeds or the restart
    budget is spent), and a call that changes the shards raises WorkerLost."""
    results: dict[int, Any] = {}
    pending = list(range(len(coord.workers)))
    while pending:
        answered, died = gather({i: getattr(coord.workers[i], method).remote(*args) for i in pending})
        results.update(answered)
        for i, exc in died:
            rejoin(coord, i, exc, where)
        if died and changes_shards:
            raise WorkerLost([i for i, _ in died], where)
        pending = [i for i, _ in died]
    return [results[i] for i in range(len(coord.workers))]
