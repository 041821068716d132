"""PSClient against real loopback shards: routing + reassembly, exact accumulation under concurrency, the push
window's staleness bound, retries that stay exactly-once, and clear errors."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from ps.server import start_server, stop_server
from ps.server.servicer import ParameterServerServicer
from ps.store import RowStore, TableConfig
from shark.wire.v1 import ps_pb2, ps_pb2_grpc
from worker.client import PSClient, PSClientError, RetryPolicy

FAST = RetryPolicy(attempts=5, initial_backoff=0.01, max_backoff=0.05, deadline_s=5.0)


def serve(servicer: ParameterServerServicer) -> tuple[grpc.Server, str]:
    """A loopback server around a given (possibly instrumented) servicer."""
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    ps_pb2_grpc.add_ParameterServerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[str]]:
    servers = [start_server(RowStore()) for _ in range(3)]
    yield [f"127.0.0.1:{port}" for _, port in servers]
    for server, _ in servers:
        stop_server(server)


def unique_ids(n: int, cap: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(cap)[:n].astype(np.int64)  # unique, unsorted


def test_pull_equals_in_process_store(cluster: list[str]) -> None:
    cfgs = [TableConfig("p8", 8, 5000, "adagrad", init_scale=0.05, seed=3),
            TableConfig("p3", 3, 700, "sgd", lr=0.5, init_scale=0.5, seed=9),
            TableConfig("pd", 5, 64, "adam", lr=0.01, init_scale=0.1, seed=1)]
    ref = RowStore()
    for c in cfgs:
        ref.create_table(c)
    ask = {"p8": unique_ids(800, 5000, 0), "p3": unique_ids(300, 700, 1), "pd": unique_ids(1, 64, 2)}
    with PSClient(cluster, "pull-test", retry=FAST) as client:
        client.wait_ready(5.0)
        client.create_tables(cfgs)
        client.create_tables(cfgs)  # idempotent
        got = client.pull(ask)
        assert set(got) == set(ask)
        for name, ids in ask.items():
            assert got[name].dtype == np.float32 and np.array_equal(got[name], ref.pull(name, ids)), name
        again = client.pull_async({"p3": ask["p3"][::-1].copy()}).result(5.0)
        assert np.array_equal(again["p3"], got["p3"][::-1])
        assert client.pull({"p8": np.array([], dtype=np.int64)})["p8"].shape == (0, 8)
        stats = client.table_stats()
        assert stats["p8"]["rows"] == 800 and stats["p3"]["rows_by_tier"]["fp32"] == 300
        assert stats["p8"]["bytes_by_kind"]["total"] > 0
        # read_only: initial values, nothing created.
        fresh = np.setdiff1d(np.arange(5000), ask["p8"])[:50]
        ro = client.pull({"p8": fresh}, read_only=True)["p8"]
        assert np.array_equal(ro, ref.pull("p8", fresh)) and client.table_stats()["p8"]["rows"] == 800
        s = client.stats()
        assert s["pulls"] == 4 and s["bytes_sent"] > 0 and s["bytes_received"] > 800 * 8 * 4 and s["retries"] == 0


def test_two_workers_accumulate_exactly(cluster: list[str]) -> None:
    rounds, lr = 20, 0.5
    cfgs = [TableConfig("acc_a", 4, 1000, "sgd", lr=lr, init_scale=0.0), TableConfig("acc_b", 2, 50, "sgd", lr=lr,
                                                                                     init_scale=0.0)]
    rng = np.random.default_rng(5)
    batch = {"acc_a": rng.integers(0, 1000, 300), "acc_b": rng.integers(0, 50, 120)}  # with duplicates
    grad_per_occurrence = {"acc_a": np.float32(0.25), "acc_b": np.float32(0.125)}

    def step_parts() -> dict[str, tuple[np.ndarray, ...]]:
        parts = {}
        for name, ids in batch.items():  # what the worker does: dedupe, segment-sum grads and counts
            uniq, inv = np.unique(ids, return_inverse=True)
            g = np.zeros((uniq.shape[0], cfgs[0].dim if name == "acc_a" else 2), np.float32)
            np.add.at(g, inv, grad_per_occurrence[name])
            counts = np.bincount(inv, minlength=uniq.shape[0]).astype(np.uint32)
            parts[name] = (uniq, g, counts, np.zeros_like(counts))
        return parts

    with PSClient(cluster, "setup", retry=FAST) as setup:
        setup.create_tables(cfgs)
    errors: list[BaseException] = []

    def worker(wid: str) -> None:
        try:
            with PSClient(cluster, wid, staleness=2, retry=FAST) as client:
                for _ in range(rounds):
                    client.push(step_parts())
                client.flush()
        except BaseException as exc:  # noqa: BLE001 - surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in ("worker-a", "worker-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    with PSClient(cluster, "check", retry=FAST) as client:
        for name, ids in batch.items():
            uniq, occurrences = np.unique(ids, return_counts=True)
            rows = client.pull({name: uniq})[name]
            expect = -lr * 2 * rounds * (occurrences * grad_per_occurrence[name]).astype(np.float32)
            assert np.array_equal(rows, np.broadcast_to(expect[:, None], rows.shape)), name


class SlowPush(ParameterServerServicer):
    def PushMany(self, request, context):
        time.sleep(0.2)
        return super().PushMany(request, context)


def _sgd_parts(n: int = 40) -> dict[str, tuple[np.ndarray, ...]]:
    ids = np.arange(n, dtype=np.int64)
    return {"slow": (ids, np.ones((n, 4), np.float32), np.ones(n, np.uint32), np.zeros(n, np.uint32))}


def test_slow_shard_and_the_staleness_bound() -> None:
    fast, fast_port = start_server(RowStore())
    slow, slow_addr = serve(SlowPush(RowStore()))
    addrs = [f"127.0.0.1:{fast_port}", slow_addr]
    try:
        with PSClient(addrs, "stale-3", staleness=3, retry=FAST) as client:
            client.create_tables([TableConfig("slow", 4, 100, "sgd", lr=0.5, init_scale=0.0)])
            took = []
            for _ in range(4):
                start = time.perf_counter()
                client.push(_sgd_parts())
                took.append(time.perf_counter() - start)
            assert max(took[:3]) < 0.08, took  # three steps in flight: no wait
            assert took[3] > 0.1, took          # the fourth waits for the oldest
            assert client.stats()["push_waits"] == 1 and client.stats()["max_push_in_flight"] == 3
            client.flush()
            assert np.array_equal(client.pull({"slow": np.arange(40)})["slow"], np.full((40, 4), -2.0, np.float32))
        with PSClient(addrs, "stale-0", staleness=0, retry=FAST) as client:
            for _ in range(2):
                start = time.perf_counter()
                client.push(_sgd_parts())
                assert time.perf_counter() - start >= 0.18
            assert client.stats()["push_waits"] == 2
    finally:
        stop_server(fast)
        stop_server(slow)


class LosesReplies(ParameterServerServicer):
    """The first PushMany fails before applying; the second applies, then "loses" its reply."""

    def __init__(self, store: RowStore) -> None:
        super().__init__(store)
        self.calls: list[str] = []

    def PushMany(self, request, context):
        n = len(self.calls)
        if n == 0:
            self.calls.append("refused")
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected: not applied")
        if n == 1:
            super().PushMany(request, context)
            self.calls.append("applied, reply lost")
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected: applied but reply lost")
        rep = super().PushMany(request, context)
        self.calls.append(ps_pb2.PushResponse.Status.Name(rep.status))
        return rep


def test_retried_push_is_applied_exactly_once() -> None:
    servicer = LosesReplies(RowStore())
    server, addr = serve(servicer)
    try:
        with PSClient([addr], "retry-w", staleness=1, retry=FAST) as client:
            client.create_tables([TableConfig("once", 4, 100, "sgd", lr=0.5, init_scale=0.0)])
            client.push({"once": (np.array([3, 7]), np.full((2, 4), 1.0, np.float32), np.ones(2, np.uint32),
                                  np.zeros(2, np.uint32))})
            client.flush()
            rows = client.pull({"once": np.array([3, 7, 8])})["once"]
            assert servicer.calls == ["refused", "applied, reply lost", "STATUS_DUPLICATE"]
            assert np.array_equal(rows, np.array([[-0.5] * 4, [-0.5] * 4, [0.0] * 4], np.float32))
            assert client.stats()["retries"] == 2
    finally:
        stop_server(server)


def test_unknown_table_fails_clearly_without_retry(cluster: list[str]) -> None:
    with PSClient(cluster, "unknown-w", staleness=2, retry=FAST) as client:
        with pytest.raises(PSClientError, match="no_such_table") as info:
            client.pull({"no_such_table": np.array([1, 2, 3])})
        err = info.value
        assert err.code == "NOT_FOUND" and err.rpc == "PullMany" and err.address in cluster
        assert client.stats()["retries"] == 0
        copy = pickle.loads(pickle.dumps(err))  # crosses Ray actor boundaries
        assert str(copy) == str(err) and copy.code == err.code and copy.tables == err.tables
        client.push({"no_such_table": (np.array([1]), np.ones((1, 4), np.float32), np.ones(1, np.uint32),
                                       np.zeros(1, np.uint32))})  # asynchronous: the error comes at flush
        with pytest.raises(PSClientError, match="no_such_table"):
            client.flush()
        assert client.window.pending_errors == 0  # one error per failed step, however many shards failed
        assert client.stats()["retries"] == 0


def test_assign_drop_and_checkpoint(cluster: list[str], tmp_path) -> None:
    with PSClient(cluster, "assign-w", retry=FAST) as client:
        client.create_tables([TableConfig("dense_t", 6, 30, "adam", lr=0.01, init_scale=0.0)])
        ids = np.arange(30, dtype=np.int64)[::-1].copy()
        rows = np.arange(180, dtype=np.float32).reshape(30, 6)
        client.assign("dense_t", ids, rows)
        assert np.array_equal(client.pull({"dense_t": ids})["dense_t"], rows)
        client.drop_table("dense_t")
        client.drop_table("dense_t")  # idempotent
        with pytest.raises(PSClientError, match="dense_t"):
            client.pull({"dense_t": ids})
    server, port = start_server(RowStore())
    try:
        with PSClient([f"127.0.0.1:{port}"], "ckpt-w", retry=FAST) as one:
            one.create_tables([TableConfig("ck", 4, 10, "sgd")])
            one.pull({"ck": np.arange(5)})
            (path, written), = one.checkpoint(str(tmp_path), "t1")
            assert path.endswith("MANIFEST.json") and written > 0
    finally:
        stop_server(server)


def test_wait_ready_waits_for_serving() -> None:
    servicer = ParameterServerServicer(RowStore(), serving=False)
    server, addr = serve(servicer)
    try:
        with PSClient([addr], "ready-w", retry=FAST) as client:
            with pytest.raises(PSClientError, match="NOT_SERVING"):
                client.wait_ready(0.2)
            with pytest.raises(PSClientError, match="UNAVAILABLE"):  # every other RPC: retryable, then clear
                client.table_stats()
            timer = threading.Timer(0.2, servicer.set_serving, args=(True,))
            timer.start()
            client.wait_ready(5.0)
            timer.join()
            assert client.table_stats() == {}
    finally:
        stop_server(server)
    with PSClient(["127.0.0.1:1"], "nobody", retry=FAST) as client, pytest.raises(PSClientError, match="not SERVING"):
        client.wait_ready(0.3)


def test_a_successor_resumes_the_seqs_and_resent_steps_are_dropped(cluster: list[str]) -> None:
    """A restarted worker (same worker id) resumes at its committed seq: the steps its predecessor had delivered
    are answered DUPLICATE and change nothing; the later ones apply. resume_at is refused once a client pushed."""
    def step(v: float) -> dict:
        return {"succ": (np.array([1, 2]), np.full((2, 4), v, np.float32), np.ones(2, np.uint32),
                         np.zeros(2, np.uint32))}

    with PSClient(cluster, "succ-w", staleness=0, retry=FAST) as first:
        first.create_tables([TableConfig("succ", 4, 100, "sgd", lr=1.0, init_scale=0.0)])
        for v in (1.0, 2.0, 4.0):  # seqs 0, 1, 2; the successor's committed point is seq 1
            first.push(step(v))
        first.flush()
        assert first.next_seq == 3
        with pytest.raises(PSClientError, match="after this client pushed"):
            first.resume_at(1)
    with PSClient(cluster, "succ-w", staleness=0, retry=FAST) as second:
        with pytest.raises(ValueError, match="int >= 0"):
            second.resume_at(-1)
        second.resume_at(1)
        second.push(step(100.0))  # seq 1 again: dropped everywhere
        second.push(step(100.0))  # seq 2 again: dropped
        second.push(step(8.0))  # seq 3: new
        second.flush()
        rows = second.pull({"succ": np.array([1, 2])}, read_only=True)["succ"]
    assert np.array_equal(rows, np.full((2, 4), -(1.0 + 2.0 + 4.0 + 8.0), np.float32))


def test_after_a_rollback_a_new_timeline_keeps_pushes_inside_the_window(tmp_path) -> None:
    """Shards restored to an earlier checkpoint remember a worker's seqs only up to it: a client that pushed more
    than the window since would be refused (SeqOutOfWindow); start_timeline continues as a new id from seq 0."""
    server, port = start_server(RowStore(seq_window=8))
    addr = f"127.0.0.1:{port}"
    step = {"tl": (np.array([1]), np.ones((1, 4), np.float32), np.ones(1, np.uint32), np.zeros(1, np.uint32))}
    try:
        with PSClient([addr], "tl-w", staleness=0, retry=FAST) as client:
            client.create_tables([TableConfig("tl", 4, 100, "sgd", lr=1.0, init_scale=0.0)])
            client.push(step)
            client.checkpoint(str(tmp_path), "before")
            for _ in range(12):
                client.push(step)
            client.restore(str(tmp_path), "before")
            with pytest.raises(PSClientError, match="seq"):
                client.push(step)
                client.flush()
        with PSClient([addr], "tl-w2", staleness=0, retry=FAST) as client:
            client.restore(str(tmp_path), "before")
            client.start_timeline("tl-w-t1")
            for _ in range(3):
                client.push(step)
            client.flush()
            rows = client.pull({"tl": np.array([1])}, read_only=True)["tl"]
        assert np.array_equal(rows, np.full((1, 4), -4.0, np.float32))  # 1 before the checkpoint + 3 after
    finally:
        stop_server(server)
