"""The PS shard over real gRPC on loopback: the servicer is a faithful, fail-closed adapter over RowStore."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from ps.server import ParameterServerServicer, start_server, stop_server, worker_key
from ps.store import RowStore, TableConfig
from shark.wire.tensors import decode_tensor, encode_tensor
from shark.wire.v1 import ps_pb2, ps_pb2_grpc

T = 5.0  # deadline of every call, seconds
MAX_MSG = 1 << 20  # small server limit so the oversize test stays cheap
DIM, CAP = 16, 1000
INIT = 0.05


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    server, port = start_server(RowStore(), max_message_bytes=MAX_MSG)
    yield f"127.0.0.1:{port}"
    stop_server(server)  # every test closes its channels (with-blocks) before this runs


@pytest.fixture()
def stub(address: str) -> Iterator[ps_pb2_grpc.ParameterServerStub]:
    with grpc.insecure_channel(address) as channel:
        yield ps_pb2_grpc.ParameterServerStub(channel)


def create(stub: ps_pb2_grpc.ParameterServerStub, name: str, optimizer: str = "adagrad", lr: float = 0.05,
           init: float = INIT, seed: int = 7) -> None:
    stub.CreateTable(ps_pb2.CreateTableRequest(name=name, dim=DIM, capacity=CAP, optimizer=optimizer,
                                               learning_rate=lr, init_scale=init, seed=seed), timeout=T)


def pull(stub: ps_pb2_grpc.ParameterServerStub, table: str, ids: np.ndarray) -> np.ndarray:
    rep = stub.Pull(ps_pb2.PullRequest(table=table, ids=encode_tensor(np.asarray(ids, np.int64))), timeout=T)
    return decode_tensor(rep.rows, expect_dtype="float32", expect_shape=(len(ids), DIM)).copy()


def push_req(table: str, ids: np.ndarray, grads: np.ndarray, worker: str = "w0", seq: int = 0,
             wire: dict[str, ps_pb2.Tensor] | None = None) -> ps_pb2.PushRequest:
    """A PushRequest from arrays; `wire` replaces encoded tensors verbatim (to send malformed ones)."""
    n = len(ids)
    fields = {"ids": encode_tensor(np.asarray(ids, np.int64)), "grads": encode_tensor(grads),
              "c_pos": encode_tensor(np.ones(n, np.uint32)), "c_neg": encode_tensor(np.zeros(n, np.uint32))}
    fields.update(wire or {})
    return ps_pb2.PushRequest(table=table, worker_id=worker, seq=seq, **fields)


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    """The status of a call that must fail (call: a zero-argument lambda around one stub call)."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_create_and_pull_match_in_process_store(stub: ps_pb2_grpc.ParameterServerStub) -> None:
    create(stub, "init")
    ids = np.array([3, 0, 999, 3, 42])  # unsorted, with a duplicate
    ref = RowStore()
    ref.create_table(TableConfig("init", DIM, CAP, "adagrad", lr=0.05, init_scale=INIT, seed=7))
    got = pull(stub, "init", ids)
    assert np.array_equal(got, ref.pull("init", ids)) and np.abs(got).max() > 0
    assert np.array_equal(pull(stub, "init", ids), got)  # pulling again changes nothing
    # Identical retry is a no-op; a different config under the same name is a conflict.
    rep = stub.CreateTable(ps_pb2.CreateTableRequest(name="init", dim=DIM, capacity=CAP, optimizer="adagrad",
                                                     learning_rate=0.05, init_scale=INIT, seed=7), timeout=T)
    assert rep.created is False
    assert code_of(lambda: create(stub, "init", seed=8)) == grpc.StatusCode.ALREADY_EXISTS
    assert code_of(lambda: stub.CreateTable(ps_pb2.CreateTableRequest(name="bad", dim=0, capacity=CAP,
                   optimizer="sgd"), timeout=T)) == grpc.StatusCode.INVALID_ARGUMENT


def test_push_then_pull_and_duplicate(stub: ps_pb2_grpc.ParameterServerStub) -> None:
    create(stub, "upd", optimizer="sgd", lr=0.5)
    ids = np.array([1, 5, 9])
    before = pull(stub, "upd", ids)
    g = np.full((3, DIM), 1.0, np.float32)
    rep = stub.Push(push_req("upd", ids, g, seq=0), timeout=T)
    assert rep.status == ps_pb2.PushResponse.STATUS_APPLIED
    after = pull(stub, "upd", ids)
    assert np.array_equal(after, before - np.float32(0.5))
    rep = stub.Push(push_req("upd", ids, g, seq=0), timeout=T)  # a retry of the same (worker_id, seq)
    assert rep.status == ps_pb2.PushResponse.STATUS_DUPLICATE
    assert np.array_equal(pull(stub, "upd", ids), after)


def test_two_clients_concurrent_sgd_exact(address: str) -> None:
    rounds, ids = 40, np.array([2, 7, 7, 11, 2, 2])  # duplicates inside each push are segment-summed
    g = np.ones((len(ids), DIM), np.float32)
    with grpc.insecure_channel(address) as ch:
        create(ps_pb2_grpc.ParameterServerStub(ch), "conc", optimizer="sgd", lr=0.5, init=0.0)
    errors: list[BaseException] = []

    def client(worker: str) -> None:
        try:
            with grpc.insecure_channel(address) as ch:
                s = ps_pb2_grpc.ParameterServerStub(ch)
                for seq in range(rounds):
                    assert s.Push(push_req("conc", ids, g, worker=worker, seq=seq), timeout=T).status == \
                        ps_pb2.PushResponse.STATUS_APPLIED
        except BaseException as exc:  # noqa: BLE001 - surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(w,)) for w in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    with grpc.insecure_channel(address) as ch:
        got = pull(ps_pb2_grpc.ParameterServerStub(ch), "conc", np.array([2, 7, 11, 3]))
    # Per push: row 2 gets grad 3, row 7 grad 2, row 11 grad 1; lr 0.5; 2 * rounds pushes; row 3 untouched.
    expect = -0.5 * 2 * rounds * np.array([3.0, 2.0, 1.0, 0.0], np.float32)[:, None] * np.ones(DIM, np.float32)
    assert np.array_equal(got, expect)


def test_malformed_requests_are_rejected_and_change_nothing(stub: ps_pb2_grpc.ParameterServerStub,
                                                            address: str) -> None:
    create(stub, "guard")
    ids = np.array([0, 1, 2])
    before = pull(stub, "guard", ids)
    good = np.zeros((3, DIM), np.float32)
    nan, inf = good.copy(), good.copy()
    nan[1, 3], inf[2, 0] = np.nan, -np.inf
    bad_shape = ps_pb2.Tensor(dtype="int64", shape=[-3], raw_size=24, data=b"\0" * 24)
    inv, nf, fp = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION
    cases: list[tuple[ps_pb2.PushRequest, grpc.StatusCode]] = [
        (push_req("guard", ids, good[:2]), inv),                                   # grads of the wrong length
        (push_req("guard", ids, np.zeros((3, DIM + 1), np.float32)), inv),        # wrong dim
        (push_req("guard", ids, good.astype(np.float64)), inv),                    # wrong dtype
        (push_req("guard", ids, nan), inv),
        (push_req("guard", ids, inf), inv),
        (push_req("guard", np.array([0, 1, CAP]), good), inv),                     # id out of range
        (push_req("guard", np.array([0, -1, 2]), good), inv),
        (push_req("guard", ids, good, wire={"ids": bad_shape}), inv),                        # negative shape
        (push_req("guard", ids, good, wire={"c_pos": encode_tensor(np.ones(3, np.int64))}), inv),
        (push_req("guard", ids, good, wire={"c_neg": ps_pb2.Tensor()}), inv),                # missing tensor
        (push_req("guard", ids, good, worker=""), inv),
        (push_req("guard", ids, good, seq=2**63), inv),
        (push_req("guard", ids, good, seq=10**6), fp),                             # beyond the seq window
        (push_req("nope", ids, good), nf),                                         # unknown table
    ]
    for req, want in cases:
        assert code_of(lambda req=req: stub.Push(req, timeout=T)) == want, req
    assert code_of(lambda: stub.Pull(ps_pb2.PullRequest(table="guard", ids=bad_shape), timeout=T)) == inv
    assert code_of(lambda: stub.Pull(ps_pb2.PullRequest(table="nope", ids=encode_tensor(ids)), timeout=T)) == nf
    with grpc.insecure_channel(address) as ch:  # bytes that are no PushRequest at all
        raw = ch.unary_unary("/shark.wire.v1.ParameterServer/Push")  # no serializers: bytes in, bytes out
        garbage = np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes()
        for payload in (garbage, b"\xff" * 64):
            assert code_of(lambda p=payload: raw(p, timeout=T)) != grpc.StatusCode.OK
    assert np.array_equal(pull(stub, "guard", ids), before)
    stats = stub.TableStats(ps_pb2.TableStatsRequest(name="guard"), timeout=T).tables[0]
    assert stats.rows == 3  # no rejected push materialised a row


def test_oversize_message_is_refused(stub: ps_pb2_grpc.ParameterServerStub) -> None:
    ids = np.arange(MAX_MSG // 8 + 1024, dtype=np.int64) % CAP  # > MAX_MSG bytes of ids
    req = ps_pb2.PullRequest(table="init", ids=encode_tensor(ids, compress_above=1 << 40))
    assert code_of(lambda: stub.Pull(req, timeout=T)) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_stats_and_drop(stub: ps_pb2_grpc.ParameterServerStub) -> None:
    assert stub.Health(ps_pb2.HealthRequest(), timeout=T).status == ps_pb2.HealthResponse.SERVING
    create(stub, "st")
    pull(stub, "st", np.arange(10))
    ts = stub.TableStats(ps_pb2.TableStatsRequest(name="st"), timeout=T).tables
    assert len(ts) == 1 and ts[0].name == "st" and ts[0].rows == 10
    assert ts[0].rows_by_tier["fp32"] == 10 and ts[0].bytes_by_kind["payload_bytes_fp32"] == 10 * DIM * 4
    assert ts[0].bytes_by_kind["total"] > 0
    every = {t.name for t in stub.TableStats(ps_pb2.TableStatsRequest(), timeout=T).tables}
    assert "st" in every
    assert stub.DropTable(ps_pb2.DropTableRequest(name="st"), timeout=T).dropped is True
    assert stub.DropTable(ps_pb2.DropTableRequest(name="st"), timeout=T).dropped is False
    assert code_of(lambda: stub.TableStats(ps_pb2.TableStatsRequest(name="st"), timeout=T)) == \
        grpc.StatusCode.NOT_FOUND


def test_worker_key_is_stable_int63() -> None:
    k = worker_key("worker-3/incarnation-1")
    assert k == worker_key("worker-3/incarnation-1") and 0 <= k < 2**63
    assert worker_key("a") != worker_key("a\0")


def test_create_table_carries_eps_and_rounding(stub: ps_pb2_grpc.ParameterServerStub) -> None:
    req = ps_pb2.CreateTableRequest(name="opts", dim=DIM, capacity=CAP, optimizer="adagrad", learning_rate=0.05,
                                    init_scale=INIT, seed=1, eps=1e-6, rounding="nearest")
    assert stub.CreateTable(req, timeout=T).created is True
    bad = ps_pb2.CreateTableRequest(name="opts2", dim=DIM, capacity=CAP, optimizer="adagrad", learning_rate=0.05,
                                    init_scale=INIT, seed=1, rounding="sideways")
    assert code_of(lambda: stub.CreateTable(bad, timeout=T)) == grpc.StatusCode.INVALID_ARGUMENT


def encode_pull(table: str, ids: np.ndarray, read_only: bool = False) -> ps_pb2.PullRequest:
    return ps_pb2.PullRequest(table=table, ids=encode_tensor(np.asarray(ids, np.int64)), read_only=read_only)


def stats_of(stub: ps_pb2_grpc.ParameterServerStub, name: str) -> ps_pb2.TableStats:
    return stub.TableStats(ps_pb2.TableStatsRequest(name=name), timeout=T).tables[0]


def test_read_only_pull_creates_no_rows(stub: ps_pb2_grpc.ParameterServerStub) -> None:
    create(stub, "ro")
    ids = np.array([4, 2, 4, 8])
    rep = stub.Pull(encode_pull("ro", ids, read_only=True), timeout=T)
    got = decode_tensor(rep.rows, expect_dtype="float32", expect_shape=(4, DIM))
    assert stats_of(stub, "ro").rows == 0
    assert np.array_equal(got, pull(stub, "ro", ids))  # the values a creating pull gives
    assert stats_of(stub, "ro").rows == 3


def test_pull_many_and_push_many(stub: ps_pb2_grpc.ParameterServerStub) -> None:
    create(stub, "m1", optimizer="sgd", lr=0.5)
    create(stub, "m2", optimizer="sgd", lr=0.25)
    ids1, ids2 = np.array([1, 2, 3]), np.array([7])
    rep = stub.PullMany(ps_pb2.PullManyRequest(parts=[encode_pull("m1", ids1), encode_pull("m2", ids2, True)]),
                        timeout=T)
    before1 = decode_tensor(rep.parts[0].rows, expect_dtype="float32", expect_shape=(3, DIM)).copy()
    before2 = decode_tensor(rep.parts[1].rows, expect_dtype="float32", expect_shape=(1, DIM)).copy()
    assert np.array_equal(before1, pull(stub, "m1", ids1)) and stats_of(stub, "m2").rows == 0
    g1, g2 = np.ones((3, DIM), np.float32), np.ones((1, DIM), np.float32)
    # Parts may leave worker_id/seq unset or repeat the request's.
    req = ps_pb2.PushManyRequest(worker_id="wm", seq=0, parts=[push_req("m1", ids1, g1, worker="", seq=0),
                                                               push_req("m2", ids2, g2, worker="wm", seq=0)])
    assert stub.PushMany(req, timeout=T).status == ps_pb2.PushResponse.STATUS_APPLIED
    assert stub.PushMany(req, timeout=T).status == ps_pb2.PushResponse.STATUS_DUPLICATE  # a retry: applied once
    assert np.array_equal(pull(stub, "m1", ids1), before1 - np.float32(0.5))
    assert np.array_equal(pull(stub, "m2", ids2), before2 - np.float32(0.25))
    # A part naming another worker or seq is refused, and so is a request with no worker_id.
    for bad in (ps_pb2.PushManyRequest(worker_id="wm", seq=1, parts=[push_req("m1", ids1, g1, worker="x", seq=1)]),
                ps_pb2.PushManyRequest(worker_id="wm", seq=1, parts=[push_req("m1", ids1, g1, worker="", seq=2)]),
                ps_pb2.PushManyRequest(worker_id="", seq=1, parts=[push_req("m1", ids1, g1, worker="", seq=0)])):
        assert code_of(lambda bad=bad: stub.PushMany(bad, timeout=T)) == grpc.StatusCode.INVALID_ARGUMENT
    assert np.array_equal(pull(stub, "m1", ids1), before1 - np.float32(0.5))


def test_push_many_with_one_bad_part_changes_no_table(stub: ps_pb2_grpc.ParameterServerStub) -> None:
    create(stub, "v1", optimizer="sgd")
    create(stub, "v2", optimizer="adagrad")
    ids = np.array([0, 5])
    good = np.ones((2, DIM), np.float32)
    nan = good.copy()
    nan[1, 2] = np.nan
    snap = {t: (pull(stub, t, ids), stats_of(stub, t)) for t in ("v1", "v2")}
    inv, nf = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    for bad_part, want in ((push_req("v2", ids, nan, worker=""), inv),
                           (push_req("v2", np.array([0, CAP]), good, worker=""), inv),
                           (push_req("v2", ids, good[:1], worker=""), inv),
                           (push_req("v1", np.array([9, 10]), good, worker=""), inv),   # v1 twice
                           (push_req("nope", ids, good, worker=""), nf)):
        req = ps_pb2.PushManyRequest(worker_id="wb", seq=0, parts=[push_req("v1", ids, good, worker=""), bad_part])
        assert code_of(lambda req=req: stub.PushMany(req, timeout=T)) == want
    many = ps_pb2.PullManyRequest(parts=[encode_pull("v1", np.array([100])), encode_pull("nope", ids)])
    assert code_of(lambda: stub.PullMany(many, timeout=T)) == nf
    for t, (rows, stats) in snap.items():
        assert np.array_equal(pull(stub, t, ids), rows)
        assert stats_of(stub, t) == stats  # no row created, no step taken
    # Nothing was recorded either: the same (worker_id, seq) still applies.
    req = ps_pb2.PushManyRequest(worker_id="wb", seq=0, parts=[push_req("v1", ids, good, worker="")])
    assert stub.PushMany(req, timeout=T).status == ps_pb2.PushResponse.STATUS_APPLIED


def test_assign_and_adam_table(stub: ps_pb2_grpc.ParameterServerStub) -> None:
    req = ps_pb2.CreateTableRequest(name="dense", dim=DIM, capacity=8, optimizer="adam", learning_rate=0.01,
                                    beta1=0.8)  # beta2 0 = the default
    assert stub.CreateTable(req, timeout=T).created is True
    assert stub.CreateTable(req, timeout=T).created is False  # equal config: beta2 defaulted the same way
    ids = np.array([0, 1, 2])
    vals = np.arange(3 * DIM, dtype=np.float32).reshape(3, DIM)
    areq = ps_pb2.AssignRequest(table="dense", ids=encode_tensor(ids), rows=encode_tensor(vals))
    assert stub.Assign(areq, timeout=T).rows == 3
    assert stub.Assign(areq, timeout=T).rows == 3  # idempotent
    assert np.array_equal(pull(stub, "dense", ids), vals)
    g = np.ones((3, DIM), np.float32)
    stub.Push(push_req("dense", ids, g, worker="wd", seq=0), timeout=T)
    np.testing.assert_allclose(pull(stub, "dense", ids), vals - np.float32(0.01), rtol=1e-6)  # Adam's 1st step
    inv = grpc.StatusCode.INVALID_ARGUMENT
    for bad in (ps_pb2.AssignRequest(table="dense", ids=encode_tensor(np.array([0, 0])),
                                     rows=encode_tensor(vals[:2])),                                   # repeated id
                ps_pb2.AssignRequest(table="dense", ids=encode_tensor(np.array([0, 8])),
                                     rows=encode_tensor(vals[:2])),                                   # out of range
                ps_pb2.AssignRequest(table="dense", ids=encode_tensor(ids), rows=encode_tensor(vals[:, :3])),
                ps_pb2.AssignRequest(table="dense", ids=encode_tensor(ids), rows=encode_tensor(np.where(vals > 5, np.inf, vals).astype(np.float32)))):
        assert code_of(lambda bad=bad: stub.Assign(bad, timeout=T)) == inv
    missing = ps_pb2.AssignRequest(table="nope", ids=encode_tensor(ids), rows=encode_tensor(vals))
    assert code_of(lambda: stub.Assign(missing, timeout=T)) == grpc.StatusCode.NOT_FOUND
    assert stats_of(stub, "dense").rows == 3
    bad_beta = ps_pb2.CreateTableRequest(name="d2", dim=DIM, capacity=8, optimizer="adam", beta2=1.0)
    assert code_of(lambda: stub.CreateTable(bad_beta, timeout=T)) == inv


def test_not_serving_until_set_serving() -> None:
    servicer = ParameterServerServicer(RowStore(), shard="shard-7", serving=False)
    server, port = start_server(RowStore(), servicer=servicer)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            s = ps_pb2_grpc.ParameterServerStub(ch)
            assert s.Health(ps_pb2.HealthRequest(), timeout=T).status == ps_pb2.HealthResponse.NOT_SERVING
            ids = encode_tensor(np.array([1], np.int64))
            calls = [lambda: create(s, "x"),
                     lambda: s.Pull(ps_pb2.PullRequest(table="x", ids=ids), timeout=T),
                     lambda: s.Push(push_req("x", np.array([1]), np.ones((1, DIM), np.float32)), timeout=T),
                     lambda: s.PullMany(ps_pb2.PullManyRequest(), timeout=T),
                     lambda: s.PushMany(ps_pb2.PushManyRequest(worker_id="w"), timeout=T),
                     lambda: s.Assign(ps_pb2.AssignRequest(table="x"), timeout=T),
                     lambda: s.DropTable(ps_pb2.DropTableRequest(name="x"), timeout=T),
                     lambda: s.TableStats(ps_pb2.TableStatsRequest(), timeout=T),
                     lambda: s.Checkpoint(ps_pb2.CheckpointRequest(directory="/nonexistent", tag="t"), timeout=T),
                     lambda: s.Restore(ps_pb2.RestoreRequest(directory="/nonexistent", tag="t"), timeout=T)]
            for call in calls:
                with pytest.raises(grpc.RpcError) as info:
                    call()
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "shard shard-7 is restoring" in info.value.details()
            assert not servicer.store.has_table("x")
            servicer.set_serving(True)
            assert s.Health(ps_pb2.HealthRequest(), timeout=T).status == ps_pb2.HealthResponse.SERVING
            create(s, "x")
            assert pull(s, "x", np.array([1])).shape == (1, DIM)
    finally:
        stop_server(server)


def test_checkpoint_then_restore_over_grpc_gives_back_the_checkpointed_rows(stub, tmp_path) -> None:
    """Kept last in this module: Restore replaces the whole shard with the checkpointed tables."""
    ids = np.array([1, 5, 9])
    create(stub, "ck", optimizer="sgd", lr=0.5)
    g = np.ones((3, DIM), np.float32)
    stub.Push(push_req("ck", ids, g, worker="ckw", seq=0), timeout=T)
    rep = stub.Checkpoint(ps_pb2.CheckpointRequest(directory=str(tmp_path), tag="t1"), timeout=T)
    assert rep.bytes_written > 0 and rep.manifest_path.endswith("MANIFEST.json")
    at_checkpoint = pull(stub, "ck", ids)
    # A retry of the same checkpoint (its reply lost), nothing changed since: the same answer, the files untouched.
    manifest = Path(rep.manifest_path)
    stamp = manifest.stat().st_mtime_ns
    assert stub.Checkpoint(ps_pb2.CheckpointRequest(directory=str(tmp_path), tag="t1"), timeout=T) == rep
    assert manifest.stat().st_mtime_ns == stamp
    stub.Push(push_req("ck", ids, g, worker="ckw", seq=1), timeout=T)
    assert not np.array_equal(pull(stub, "ck", ids), at_checkpoint)
    # After a change the same tag cannot be written again (not a retry); a missing tag cannot be restored; neither changes the live rows.
    again = ps_pb2.CheckpointRequest(directory=str(tmp_path), tag="t1")
    assert code_of(lambda: stub.Checkpoint(again, timeout=T)) == grpc.StatusCode.FAILED_PRECONDITION
    missing = ps_pb2.RestoreRequest(directory=str(tmp_path), tag="nope")
    assert code_of(lambda: stub.Restore(missing, timeout=T)) == grpc.StatusCode.FAILED_PRECONDITION
    restored = stub.Restore(ps_pb2.RestoreRequest(directory=str(tmp_path), tag="t1"), timeout=T)
    assert restored.tables_restored >= 1
    assert np.array_equal(pull(stub, "ck", ids), at_checkpoint)
    # The idempotency window came back too: seq 0 was applied before the checkpoint, seq 1 after it.
    dup = stub.Push(push_req("ck", ids, g, worker="ckw", seq=0), timeout=T)
    assert dup.status == ps_pb2.PushResponse.STATUS_DUPLICATE
    again_applied = stub.Push(push_req("ck", ids, g, worker="ckw", seq=1), timeout=T)
    assert again_applied.status == ps_pb2.PushResponse.STATUS_APPLIED
