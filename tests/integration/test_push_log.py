"""A shard actor killed between checkpoints comes back (Ray restarts it) with every push it acknowledged:
the newest checkpoint its push log knows, plus the log since."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ray

from ps.actor import RayShardActor
from ps.store import TableConfig
from tests.integration.actors import new_incarnation
from worker.client import PSClient, RetryPolicy

CFG = TableConfig(name="emb", dim=8, capacity=5000, optimizer="adagrad", lr=0.05, seed=1)


def _parts(rng: np.random.Generator) -> dict:
    ids = np.unique(rng.integers(0, 5000, 300))
    return {"emb": (ids, rng.standard_normal((ids.size, 8)).astype(np.float32),
                    np.ones(ids.size, np.uint32), np.zeros(ids.size, np.uint32))}


def test_killed_shard_recovers_every_acknowledged_push(ray_session, tmp_path: Path) -> None:
    actor = RayShardActor.options(num_cpus=0, max_restarts=2).remote(
        0, 1, wal_dir=str(tmp_path / "wal"), wal_fsync=True)
    try:
        info = ray.get(actor.info.remote(), timeout=60)
        rng = np.random.default_rng(0)
        ids = np.arange(5000)
        with PSClient([info["address"]], "w-1", staleness=2) as client:
            client.create_tables([CFG])
            for step in range(30):
                parts = _parts(rng)
                client.push(parts)
                if step == 9:
                    client.checkpoint(str(tmp_path / "ckpt"), "c1")  # flushes, then snapshots
                    at_checkpoint = client.pull({"emb": ids}, read_only=True)["emb"]
            client.flush()  # every push acknowledged
            # (pushes in flight together may be applied in either order: compare with the shard's own state)
            before = client.pull({"emb": ids}, read_only=True)["emb"]
        ray.kill(actor, no_restart=False)  # a crash: no checkpoint after step 9
        info2 = new_incarnation(actor, info["pid"])
        assert info2["restarted"] and info2["restored_tag"] == "c1" and info2["replayed"] == 20
        assert info2["address"] == info["address"]  # it bound its old address again: clients keep their channels
        with PSClient([info2["address"]], "check", staleness=0, retry=RetryPolicy(deadline_s=10)) as client:
            rows = client.pull({"emb": ids}, read_only=True)["emb"]
        assert np.array_equal(rows, before)
        assert not np.array_equal(rows, at_checkpoint)  # the 20 pushes after the checkpoint came back from the log
    finally:
        ray.kill(actor, no_restart=True)


class _NoAbort:
    def abort(self, code, message):  # noqa: ANN001, ANN201 - grpc.ServicerContext's signature
        raise AssertionError(f"aborted: {code} {message}")


def test_checkpoint_retries_are_idempotent_per_tag(tmp_path: Path) -> None:
    """A Checkpoint whose reply was lost is retried with the same tag: answered again (nothing changed), taken
    again after an attempt that died half-way (its log start exists, its manifest does not), answered from the
    files by a restarted shard whose recovery replayed nothing after that tag."""
    from ps.server import ParameterServerServicer
    from ps.store import RowStore
    from ps.wal import PushLog
    from shark.wire.v1 import ps_pb2

    ckpt = str(tmp_path / "ckpt")
    wal = PushLog(tmp_path / "wal" / "shard-0", fsync=False)
    servicer = ParameterServerServicer(RowStore(), wal=wal)
    servicer.store.create_table(CFG)
    servicer.store.pull("emb", np.arange(10))
    request = ps_pb2.CheckpointRequest(directory=ckpt, tag="t1")
    first = servicer.Checkpoint(request, _NoAbort())
    assert servicer.Checkpoint(request, _NoAbort()) == first
    # an attempt that died between the log rotation and the manifest: the retry completes it
    wal.rotate("t2", ckpt)
    second = servicer.Checkpoint(ps_pb2.CheckpointRequest(directory=ckpt, tag="t2"), _NoAbort())
    assert Path(second.manifest_path).is_file()
    wal.close()
    # a restarted shard (same log) recovered t2 with nothing after it: the retried t2 gets the same answer
    from ps.wal import recover

    log2 = PushLog(tmp_path / "wal" / "shard-0", fsync=False)
    rec = recover(log2, "shard-0", 64)
    assert rec.point is not None and rec.point.tag == "t2" and rec.replayed == 0
    again = ParameterServerServicer(rec.store, wal=log2)
    again.remember_checkpoint(rec.point.directory, rec.point.tag)
    assert again.Checkpoint(ps_pb2.CheckpointRequest(directory=ckpt, tag="t2"), _NoAbort()) == second
