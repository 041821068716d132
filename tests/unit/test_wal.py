"""The push log: records round-trip, torn tails are ignored, corruption is refused, and recovery (newest
checkpoint the log knows + every record since) rebuilds the exact store."""

from __future__ import annotations

import numpy as np
import pytest

from ps import requests as rq
from ps.checkpoint import write_shard_checkpoint
from ps.store import RowStore, TableConfig
from ps.wal import LogError, PushLog, read_segment, recover
from shark.wire.tensors import encode_tensor
from shark.wire.v1 import ps_pb2


def _records(log: PushLog) -> list[tuple[int, bytes]]:
    return [(r.kind, r.payload) for r in log.records_from(0)]


def test_records_round_trip_across_segments(tmp_path) -> None:
    log = PushLog(tmp_path, fsync=False)
    log.append(1, b"a")
    log.rotate("t1", tmp_path / "ckpt")
    log.append(4, b"b" * 1000)
    log.close()
    again = PushLog(tmp_path, fsync=False)  # a restart opens a new, third segment and never appends to old ones
    assert again.segments() == [1, 2, 3] and again.current == 3
    assert _records(again) == [(1, b"a"), (4, b"b" * 1000)]
    assert [p.tag for p in again.starts()] == ["t1"] and again.starts()[0].segment == 2
    assert [r.payload for r in again.records_from(2)] == [b"b" * 1000]
    with pytest.raises(LogError, match="already taken"):
        again.rotate("t1", tmp_path)


def test_torn_tail_is_ignored_and_corruption_is_refused(tmp_path) -> None:
    log = PushLog(tmp_path, fsync=False)
    for i in range(3):
        log.append(4, bytes([i]) * 50)
    log.close()
    seg = tmp_path / "seg-000000000001.log"
    data = seg.read_bytes()
    for cut in (len(data) - 1, len(data) - 40, len(data) - 60):  # a crash in the middle of the last append
        seg.write_bytes(data[:cut])
        assert [r.payload[0] for r in read_segment(seg)] == [0, 1]
    bad = bytearray(data)
    bad[20] ^= 0xFF  # a flipped byte inside the first record
    seg.write_bytes(bytes(bad))
    with pytest.raises(LogError, match="checksum"):
        list(read_segment(seg))


def _push_request(table: str, ids: np.ndarray, grads: np.ndarray, worker: str, seq: int) -> ps_pb2.PushManyRequest:
    n = ids.shape[0]
    part = ps_pb2.PushRequest(table=table, ids=encode_tensor(ids.astype(np.int64)), grads=encode_tensor(grads),
                              c_pos=encode_tensor(np.ones(n, np.uint32)), c_neg=encode_tensor(np.zeros(n, np.uint32)))
    return ps_pb2.PushManyRequest(parts=[part], worker_id=worker, seq=seq)


def test_recovery_rebuilds_the_exact_store(tmp_path) -> None:
    """Live store with a log; a checkpoint in the middle; 'crash'; recover == live, bit for bit."""
    rng = np.random.default_rng(0)
    live = RowStore()
    log = PushLog(tmp_path / "wal", fsync=False)
    create = ps_pb2.CreateTableRequest(name="t", dim=8, capacity=1000, optimizer="adagrad", learning_rate=0.05,
                                       init_scale=0.05, seed=3)
    assert rq.apply_create(live, rq.table_config(create))
    log.append(rq.KIND_CREATE, create.SerializeToString())
    for seq in range(40):
        ids = np.unique(rng.integers(0, 1000, 64))
        req = _push_request("t", ids, rng.standard_normal((ids.size, 8)).astype(np.float32), "w", seq)
        res = rq.apply_push(live, *rq.push_many(req, 1 << 20))
        assert res.applied
        log.append(rq.KIND_PUSH, req.SerializeToString())
        if seq == 15:  # checkpoint: snapshot and rotation under the same (here: implicit) lock
            write_shard_checkpoint(live, tmp_path / "ckpt", "shard-0", tag="c1")
            log.rotate("c1", tmp_path / "ckpt")
    log.close()
    rec = recover(PushLog(tmp_path / "wal", fsync=False), "shard-0", live.seq_window)
    assert rec.point is not None and rec.point.tag == "c1" and rec.replayed == 40 - 16
    for k, v in live.snapshot("t").items():
        assert np.array_equal(rec.store.snapshot("t")[k], v), k
    # a retry of an acknowledged push is still recognised after recovery
    again = _push_request("t", np.array([1]), np.ones((1, 8), np.float32), "w", 39)
    assert rq.apply_push(rec.store, *rq.push_many(again, 1 << 20)).duplicate
    # an incomplete newer checkpoint (crash while writing it) is skipped: older checkpoint + more log, same state
    log2 = PushLog(tmp_path / "wal", fsync=False)
    log2.rotate("c2-never-written", tmp_path / "ckpt")
    log2.close()
    rec2 = recover(PushLog(tmp_path / "wal", fsync=False), "shard-0", live.seq_window)
    assert rec2.point.tag == "c1"
    for k, v in live.snapshot("t").items():
        assert np.array_equal(rec2.store.snapshot("t")[k], v), k


def test_recovery_without_a_checkpoint_replays_everything(tmp_path) -> None:
    log = PushLog(tmp_path, fsync=False)
    store = RowStore()
    create = ps_pb2.CreateTableRequest(name="t", dim=4, capacity=10, optimizer="sgd", learning_rate=0.5)
    rq.apply_create(store, rq.table_config(create))
    log.append(rq.KIND_CREATE, create.SerializeToString())
    assign = ps_pb2.AssignRequest(table="t", ids=encode_tensor(np.arange(3, dtype=np.int64)),
                                  rows=encode_tensor(np.full((3, 4), 2.0, np.float32)))
    store.assign(*rq.assign_args(assign, 1 << 20))
    log.append(rq.KIND_ASSIGN, assign.SerializeToString())
    drop = ps_pb2.DropTableRequest(name="t")
    rec = recover(PushLog(tmp_path, fsync=False), "shard-0", 4096)
    assert rec.point is None and rec.replayed == 2
    assert np.array_equal(rec.store.pull("t", np.arange(3)), np.full((3, 4), 2.0, np.float32))
    log.append(rq.KIND_DROP, drop.SerializeToString())
    assert not recover(PushLog(tmp_path, fsync=False), "shard-0", 4096).store.has_table("t")


def test_create_table_request_round_trips_every_field() -> None:
    for cfg in (TableConfig("a", 8, 100), TableConfig("d", 4096, 32, optimizer="adam", lr=1e-3, beta1=0.8),
                TableConfig("q", 16, 1000, quant="fq", fq_budget_fraction=0.5, fq_t8=0.0, fq_retier_every=7),
                TableConfig("u", 16, 1000, quant="int8", rounding="nearest")):
        assert rq.table_config(ps_pb2.CreateTableRequest.FromString(
            rq.create_table_request(cfg).SerializeToString())) == cfg
