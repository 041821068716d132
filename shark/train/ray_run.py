"""The driver of a distributed run: start (or join) Ray, hand the run to a Coordinator actor, show progress.

The driver holds no model and no rows: it validates the settings and the data source up front (so a user's
mistake is reported before any actor starts), then polls the coordinator twice a second for the progress bar.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import uuid
from dataclasses import replace
from typing import Any

from tqdm import tqdm

from shark.coordinator.config import ClusterConfig
from shark.coordinator.errors import RunError
from shark.train.config import TrainConfig
from shark.train.data_plan import DataPlan, DataSpec

NAMESPACE = "shark"  # Ray namespace of the named coordinator actors (shark status lists it)
COORDINATOR_PREFIX = "shark-coordinator-"


def _absolute(spec: DataSpec) -> DataSpec:
    """Actors may run in another working directory: hand them absolute paths."""
    if spec.synthetic:
        return spec
    test = os.path.abspath(spec.test_path) if spec.test_path else None
    return replace(spec, source=os.path.abspath(spec.source), test_path=test)


def run_ray(config: TrainConfig, spec: DataSpec, cluster: ClusterConfig, progress: bool = True,
            train: bool = True, compress: Any = None, stream: Any = None) -> dict[str, Any]:
    """Run training (or, with train=False, evaluation of cluster.restore_from) on Ray. Returns the summary.
    Raises RunError with a one-line reason when the run fails.

    With `stream` (a StreamConfig) the run trains on the endless stream until SIGINT/SIGTERM (or
    stream.max_examples): the first signal asks the coordinator to stop (workers stop at a batch boundary, pushes
    drained, final checkpoint, final evaluation, summary); a second one exits at once."""
    import ray

    from shark.cluster.ray_runtime import RayUnreachable, start_ray
    from shark.coordinator.actor import Coordinator

    spec = _absolute(spec)
    plan = DataPlan(spec, config.batch_size, config.eval_batch_size)  # DataError now, not inside an actor
    try:
        handle = start_ray(cluster.address)
    except RayUnreachable as exc:
        raise RunError(str(exc)) from None
    signals = _StopSignals() if stream is not None else None
    try:
        # Named, in the "shark" namespace, so `shark status --address ...` finds it (lifetime: this driver's job).
        # With a checkpoint directory a coordinator that dies is restarted by Ray (same run id: its constructor
        # finds the run's journal) and run() is called again on it, which resumes from the newest checkpoint.
        run_id = uuid.uuid4().hex[:12]
        restarts = cluster.coordinator_restarts if cluster.checkpoint_dir else 0
        coordinator = ray.remote(Coordinator).options(num_cpus=0, max_concurrency=4,
                                                      name=f"{COORDINATOR_PREFIX}{run_id}", namespace=NAMESPACE,
                                                      max_restarts=restarts, max_task_retries=restarts).remote(
            config, spec, cluster, compress, stream, run_id=run_id)
        done_ref = coordinator.run.remote(train)
        if signals is not None:
            signals.install()
        _follow(coordinator, done_ref, plan.train_rows_hint if train else None, config.epochs, progress, signals)
        try:
            return ray.get(done_ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise RunError(str(cause) if isinstance(cause, RunError) else str(exc)) from None
        except ray.exceptions.RayActorError as exc:
            raise RunError(f"the coordinator actor died: {exc}") from None
    finally:
        if signals is not None:
            signals.restore()
        handle.shutdown()


class _StopSignals:
    """SIGINT/SIGTERM during a stream: the first is noted (the progress loop forwards it to the coordinator, not
    the handler: a Ray call inside a signal handler could deadlock), the second exits at once (SystemExit, so Ray
    is still shut down)."""

    def __init__(self) -> None:
        self.count = 0
        self.forwarded = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; the caller stops the run itself
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.count > 1:
            sys.stderr.write(f"[shark] {name} again: exiting now, without a final checkpoint or summary (the last "
                             "periodic checkpoint stands)\n")
            raise SystemExit(128 + signum)
        sys.stderr.write(f"[shark] {name}: stopping the stream at the next batch boundary (pushes drained, final "
                         "checkpoint and evaluation); send it again to exit at once\n")

    def forward(self, coordinator: Any) -> None:
        if self.count and not self.forwarded:
            coordinator.request_stop.remote()
            self.forwarded = True


def _follow(coordinator: Any, done_ref: Any, rows_hint: int | None, epochs: int, progress: bool,
            signals: _StopSignals | None = None) -> None:
    """Poll the coordinator's progress until the run finishes: a line per phase change and one tqdm bar per
    training epoch (examples, examples/s, recent progressive AUC). A stream has one bar without a total, kept
    open across its checkpoints and periodic evaluations."""
    import ray

    bar: tqdm | None = None
    epoch, shown, phase = 0, 0, ""
    while True:
        if signals is not None:
            signals.forward(coordinator)
        ready, _ = ray.wait([done_ref], timeout=0.5)
        try:
            p = ray.get(coordinator.progress.remote(), timeout=5)
        except Exception:  # noqa: BLE001 - the run's own error surfaces from done_ref
            p = {}
        if not progress or not p:
            if ready:
                break
            continue
        ends = ("done", "failed") if signals is not None else ("evaluating", "done", "failed")
        finishing = p["phase"] in ends
        if bar is not None and finishing:  # the last training figures, then the bar is complete
            bar.update(max(0, int(p.get("examples", 0)) - shown))
            bar.close()
            bar = None
        if p["phase"] != phase and p["phase"] != "training":
            tqdm.write(f"[shark] {p['phase']}{': ' + p['note'] if p.get('note') else ''}", file=sys.stderr)
        phase = p["phase"]
        if phase == "training" and p["epoch"] != epoch:
            if bar is not None:
                bar.close()
            epoch, shown = p["epoch"], 0
            desc = "stream" if signals is not None else f"train {epoch}/{epochs}"
            bar = tqdm(total=rows_hint, unit="ex", unit_scale=True, desc=desc, dynamic_ncols=True, mininterval=0.5,
                       file=sys.stderr)
        if bar is not None and p["epoch"] == epoch:
            n = int(p.get("examples", 0))
            if n > shown:
                bar.update(n - shown)
                shown = n
            if "recent_auc" in p:
                bar.set_postfix_str(f"recent AUC {p['recent_auc']:.4f} logloss {p['recent_logloss']:.4f}")
        if ready:
            break
    if bar is not None:
        bar.close()
