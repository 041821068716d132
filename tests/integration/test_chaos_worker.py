"""Workers killed in the middle of a distributed run: Ray restarts each one, the coordinator hands it its committed
point (data position and push seq), its segment runs again, and the shards drop the pushes its predecessor had
already delivered. The run completes with every example trained once: on every shard, each worker's applied
PushMany steps equal its number of batches (none missing, none twice)."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import pytest
import ray
from click.testing import CliRunner

from shark.cli.main import cli

ROWS, BATCH, WORKERS = 100_000, 512, 2


def _worker(i: int, deadline: float, run: threading.Thread):
    while time.monotonic() < deadline and run.is_alive():
        for a in ray.util.list_named_actors(all_namespaces=True):
            if a["name"].startswith("shark-") and a["name"].endswith(f"-worker-{i}"):
                return ray.get_actor(a["name"], namespace=a["namespace"])
        time.sleep(0.1)
    raise AssertionError(f"worker {i} never appeared (the run ended: {not run.is_alive()})")


def _wait_training(worker, pid: int | None, examples: int, deadline: float) -> int:
    """Until the incarnation (a pid other than `pid`) has trained `examples` examples in its current segment;
    returns its pid."""
    while time.monotonic() < deadline:
        try:
            info = ray.get(worker.ping.remote(), timeout=10)
            prog = ray.get(worker.progress.remote(), timeout=10)
            if info["pid"] != pid and prog["examples"] >= examples:
                return info["pid"]
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError("the worker did not (re)start training in time")


@pytest.mark.parametrize("scenario", ["one-worker", "two-workers-at-once", "same-worker-twice"])
def test_killed_workers_resume_and_every_example_trains_once(ray_session, tmp_path: Path, scenario: str) -> None:
    out = tmp_path / "s.json"
    result: dict = {}

    def run() -> None:
        result["res"] = CliRunner().invoke(cli, [
            "train", "--no-progress", "--train-rows", str(ROWS), "--test-rows", "20000", "--workers", str(WORKERS),
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--checkpoint-every", "40", "--json-out", str(out)])

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 240
    workers = [_worker(i, deadline, t) for i in range(WORKERS)]
    pids = [_wait_training(w, None, 3 * BATCH, deadline) for w in workers]
    victims = {"one-worker": [[0]], "two-workers-at-once": [[0, 1]], "same-worker-twice": [[1], [1]]}[scenario]
    for wave in victims:
        for i in wave:
            ray.kill(workers[i], no_restart=False)  # a crash: Ray restarts the actor
        for i in wave:
            pids[i] = _wait_training(workers[i], pids[i], 2 * BATCH, deadline)
    t.join(300)
    res = result["res"]
    assert res.exit_code == 0, res.output
    s = json.loads(out.read_text())

    restarts = s["cluster"]["worker_restarts"]
    assert sorted(r["worker"] for r in restarts) == sorted(i for wave in victims for i in wave), restarts
    assert s["train"]["progressive"]["examples"] == ROWS  # every example's prediction logged once
    assert s["throughput"]["train_examples"] == ROWS  # a restarted worker's lost segment is counted once
    # the ledger: on every shard, each worker's applied steps are exactly its batches; resent ones were dropped
    steps = [math.ceil(n / BATCH) for n in (ROWS // WORKERS, ROWS - ROWS // WORKERS)]
    for shard, ledger in s["cluster"]["push_ledger"].items():
        by_worker = {int(w.rsplit("-", 1)[1]): c for w, c in ledger.items() if "-worker-" in w}
        assert {i: c["applied"] for i, c in by_worker.items()} == dict(enumerate(steps)), (shard, ledger)
    assert s["test"]["auc"] > 0.74, s["test"]["auc"]  # as an undisturbed run of this size (~0.76)


def _coordinator(deadline: float, run: threading.Thread):
    from shark.train.ray_run import COORDINATOR_PREFIX, NAMESPACE

    while time.monotonic() < deadline and run.is_alive():
        for a in ray.util.list_named_actors(all_namespaces=True):
            if a["namespace"] == NAMESPACE and a["name"].startswith(COORDINATOR_PREFIX):
                return ray.get_actor(a["name"], namespace=NAMESPACE)
        time.sleep(0.1)
    raise AssertionError("the coordinator never appeared")


def _wait_phase(coordinator, phase: str, deadline: float, run: threading.Thread, not_note: str = "") -> None:
    while time.monotonic() < deadline and run.is_alive():
        p = ray.get(coordinator.progress.remote(), timeout=30)
        if p["phase"] == phase and not (not_note and p["note"].startswith(not_note)):
            return
        time.sleep(0.02)
    raise AssertionError(f"the run never reached {phase}")


def test_workers_killed_while_compressing_the_round_is_redone(ray_session, tmp_path: Path) -> None:
    """Outside epoch training: worker 1 killed while a pruning round fine-tunes (its pushes half applied: the shards
    roll back to the round's checkpoint and the round's deletion and fine-tuning run again), then worker 0 killed
    between two steps (noticed at its next call, which is asked again). The run completes with a consistent model."""
    out, ckpt = tmp_path / "out", tmp_path / "ckpt"
    result: dict = {}
    test_rows = 20000

    def run() -> None:
        result["res"] = CliRunner().invoke(cli, [
            "compress", "--no-progress", "--train-rows", "40000", "--test-rows", str(test_rows),
            "--fields-per-round", "3", "--finetune-rows", "60000", "--score-rows", "5000", "--memory-target", "0.8",
            "--auc-floor", "0.01", "--no-control", "--out", str(out)])

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 300
    coordinator = _coordinator(deadline, t)
    workers = [_worker(i, deadline, t) for i in range(WORKERS)]
    _wait_phase(coordinator, "fine_tuning", deadline, t)
    time.sleep(0.3)  # well inside the round's fine-tuning (30,000 rows per worker)
    ray.kill(workers[1], no_restart=False)
    _wait_phase(coordinator, "checkpointing", deadline, t)  # before the next round
    ray.kill(workers[0], no_restart=False)
    t.join(300)
    res = result["res"]
    assert res.exit_code == 0, res.output
    s = json.loads((out / "report.json").read_text())
    restarts = s["cluster"]["worker_restarts"]
    print("worker restarts:", restarts)
    assert [r["worker"] for r in restarts] == [1, 0], restarts
    assert restarts[0]["while"] == "fine-tuning", restarts
    notes = [p["note"] for p in s["phases"] if p["phase"] == "rolling_back"]
    assert any("worker 1 died while fine-tuning" in n for n in notes), notes
    c = s["compression"]
    assert c["rounds"] and c["deleted"] and s["model"]["fields"] == c["fields_kept"]
    # every shard holds exactly the kept fields' tables (the redone round's deletion included)
    kept = sorted(f for f in c["fields_kept"] if f != "dense")
    assert all(sorted(t for t in tables if t != "__dense__") == kept for tables in s["cluster"]["shard_tables"])
    assert s["test"]["examples"] == test_rows and s["test"]["auc"] == c["final_test"]["auc"]
    # the final checkpoint is the model the run reports
    ev = CliRunner().invoke(cli, ["evaluate", "--no-progress", "--checkpoint", str(out / "checkpoints"),
                                  "--test-rows", str(test_rows), "--json"])
    assert ev.exit_code == 0, ev.output
    again = json.loads(ev.output[ev.output.index("{"):])
    assert again["test"]["auc"] == c["final_test"]["auc"] and again["model"]["fields"] == c["fields_kept"]


def test_worker_killed_in_a_stream_redoes_its_segment(ray_session, tmp_path: Path) -> None:
    """Stream mode: worker 1 killed mid-segment is restarted at its committed stream position and push seq and
    runs the lost segment again. Nothing is lost or trained twice: examples trained = read, and on every shard each
    worker's applied steps equal its committed batches."""
    out = tmp_path / "s.json"
    result: dict = {}
    max_examples = 160_000

    def run() -> None:
        result["res"] = CliRunner().invoke(cli, [
            "train", "--stream", "--no-progress", "--max-examples", str(max_examples), "--segment-batches", "40",
            "--test-rows", "4000", "--eval-every", "0", "--workers", str(WORKERS), "--json-out", str(out)])

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 240
    victim = _worker(1, deadline, t)
    pid = _wait_training(victim, None, 60 * BATCH, deadline)  # into its second segment
    ray.kill(victim, no_restart=False)
    _wait_training(victim, pid, BATCH, deadline)
    t.join(300)
    res = result["res"]
    assert res.exit_code == 0, res.output
    s = json.loads(out.read_text())
    restarts = s["cluster"]["worker_restarts"]
    assert [r["worker"] for r in restarts] == [1] and restarts[0]["while"].startswith("stream segment"), restarts
    st = s["stream"]
    assert st["stopped_by"] == "max_examples" and st["examples_trained"] >= max_examples
    assert st["examples_trained"] == st["examples_read"] == st["examples_trained_counted"]
    assert s["throughput"]["train_examples"] == st["examples_trained"]
    batches = {int(w): p for w, p in st["positions"].items()}
    for shard, ledger in s["cluster"]["push_ledger"].items():
        by_worker = {int(w.rsplit("-", 1)[1]): c for w, c in ledger.items() if "-worker-" in w}
        assert {i: c["applied"] for i, c in by_worker.items()} == batches, (shard, ledger)
