"""The PS shard as a Ray actor (ps.actor) on a local loopback Ray: it serves gRPC, restores itself from a
checkpoint when (re)started, and `shark bench ps` runs against it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
import ray
from click.testing import CliRunner

from ps.actor import RayShardActor
from shark.cli.main import cli
from shark.wire.tensors import decode_tensor, encode_tensor
from shark.wire.v1 import ps_pb2, ps_pb2_grpc

T = 10.0
DIM, CAP = 16, 10_000


@contextmanager
def stub_at(address: str) -> Iterator[ps_pb2_grpc.ParameterServerStub]:
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=T)
        yield ps_pb2_grpc.ParameterServerStub(channel)


def start_actor(checkpoint_dir: str | None, **options) -> ray.actor.ActorHandle:
    return RayShardActor.options(num_cpus=0, **options).remote(0, 1, checkpoint_dir=checkpoint_dir)


def stop_actor(actor: ray.actor.ActorHandle) -> None:
    try:
        ray.get(actor.stop.remote(), timeout=T)
    except ray.exceptions.RayActorError:  # already gone (or restarting): killing it is all that is left
        pass
    ray.kill(actor)


def pull(stub: ps_pb2_grpc.ParameterServerStub, table: str, ids: np.ndarray) -> np.ndarray:
    rep = stub.Pull(ps_pb2.PullRequest(table=table, ids=encode_tensor(ids)), timeout=T)
    return decode_tensor(rep.rows, expect_dtype="float32", expect_shape=(len(ids), DIM)).copy()


def push(stub: ps_pb2_grpc.ParameterServerStub, table: str, ids: np.ndarray, seq: int) -> int:
    n = len(ids)
    grads = np.random.default_rng(seq).standard_normal((n, DIM), dtype=np.float32)
    req = ps_pb2.PushRequest(table=table, ids=encode_tensor(ids), grads=encode_tensor(grads),
                             c_pos=encode_tensor(np.ones(n, np.uint32)), c_neg=encode_tensor(np.zeros(n, np.uint32)),
                             worker_id="w0", seq=seq)
    return stub.Push(req, timeout=T).status


def test_actor_serves_checkpoints_and_restores(ray_session, tmp_path: Path) -> None:
    ckpt = str(tmp_path / "ckpt")
    ids = np.array([0, 3, 17, 999, 5000], np.int64)
    actor = start_actor(ckpt)
    try:
        info = ray.get(actor.info.remote(), timeout=60)
        assert info["shard"] == "shard-0" and info["restored_tag"] is None and info["tables"] == []
        assert info["address"].startswith("127.0.0.2:")  # loopback, the local instance's node IP
        with stub_at(info["address"]) as stub:
            assert stub.Health(ps_pb2.HealthRequest(), timeout=T).status == ps_pb2.HealthResponse.SERVING
            rep = stub.CreateTable(ps_pb2.CreateTableRequest(name="emb", dim=DIM, capacity=CAP, optimizer="adagrad",
                                                             learning_rate=0.1, init_scale=0.05, seed=3), timeout=T)
            assert rep.created
            before = pull(stub, "emb", ids)
            assert push(stub, "emb", ids, seq=0) == ps_pb2.PushResponse.STATUS_APPLIED
            after = pull(stub, "emb", ids)
            assert not np.array_equal(before, after)
            # The Ray side sees the same store (the bench's direct calls share the servicer's lock and store).
            assert np.array_equal(ray.get(actor.pull.remote("emb", ids), timeout=T), after)
            stub.Checkpoint(ps_pb2.CheckpointRequest(directory=ckpt, tag="t1"), timeout=T)
            assert push(stub, "emb", ids, seq=1) == ps_pb2.PushResponse.STATUS_APPLIED  # after the checkpoint
        with pytest.raises(ValueError, match="no table"):  # store errors cross Ray as plain exceptions
            ray.get(actor.pull.remote("missing", ids), timeout=T)
    finally:
        stop_actor(actor)

    # A new actor with the same checkpoint_dir restores the newest checkpoint before it serves.
    actor = start_actor(ckpt, max_restarts=1)
    try:
        info = ray.get(actor.info.remote(), timeout=60)
        assert info["restored_tag"] == "t1" and info["tables"] == ["emb"]
        with stub_at(info["address"]) as stub:
            assert stub.Health(ps_pb2.HealthRequest(), timeout=T).status == ps_pb2.HealthResponse.SERVING
            assert np.array_equal(pull(stub, "emb", ids), after)
            # The idempotency window is part of the checkpoint: seq 0 (before it) is still a duplicate.
            assert push(stub, "emb", ids, seq=0) == ps_pb2.PushResponse.STATUS_DUPLICATE
        # Ray restarts a crashed shard, which restores itself again (on a new port).
        ray.kill(actor, no_restart=False)
        deadline = time.monotonic() + 60
        while True:  # ray.kill is asynchronous: the old incarnation may still answer the first calls
            try:
                info2 = ray.get(actor.info.remote(), timeout=T)
                if info2["pid"] != info["pid"]:
                    break
            except ray.exceptions.RayActorError:  # dead, or unavailable while Ray restarts it
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the shard actor did not come back within 60 s")
            time.sleep(0.2)
        assert info2["restarted"] and info2["restored_tag"] == "t1" and info2["pid"] != info["pid"]
        with stub_at(info2["address"]) as stub:
            assert np.array_equal(pull(stub, "emb", ids), after)
    finally:
        stop_actor(actor)


def test_bench_ps_cli_json(ray_session) -> None:
    res = CliRunner().invoke(cli, ["bench", "ps", "--calls", "5", "--repeats", "1", "--warmup-calls", "1",
                                   "--id-space", "100000", "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["benchmark"] == "ps" and out["rows_per_call"] == 4096 and out["dim"] == 16
    assert set(out["variants"]) == {"dense", "random"}
    for variant in out["variants"].values():
        for op in ("pull", "push"):
            r = variant[op]
            assert set(r["rows_per_second"]) == {"in_process", "grpc", "ray"}
            assert all(v > 0 for v in r["rows_per_second"].values())
            assert r["ratio_grpc_over_ray"] > 0 and r["ratio_in_process_over_grpc"] > 0
    assert "target_met" in out and out["ray"]["started_here"] is False  # reused the session's Ray
    assert ray.is_initialized()  # and did not shut it down
