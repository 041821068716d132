"""Exactly-once pushes under injected faults: 20% of PushMany calls fail UNAVAILABLE, half of them before the update
is applied and half after it is applied but before the reply. Client retries (same worker_id and seq) and the
shard's de-duplication must give exactly the updates of a fault-free run: none lost, none applied twice.
Repeated with 4 seeds, as ps-lite runs its chaos tests."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest

from ps.server import start_server, stop_server
from ps.server.servicer import ParameterServerServicer
from ps.store import RowStore, TableConfig
from worker.client import PSClient, RetryPolicy

RETRY = RetryPolicy(attempts=12, initial_backoff=0.005, max_backoff=0.02, deadline_s=5.0)


class FaultyShard(ParameterServerServicer):
    """PushMany fails with probability `rate`: before applying (half the faults) or after (the other half)."""

    def __init__(self, store: RowStore, rate: float, seed: int) -> None:
        super().__init__(store)
        self.rng = np.random.default_rng(seed)
        self.rate = rate
        self.faults = {"before": 0, "after": 0, "calls": 0}
        self._fault_lock = threading.Lock()

    def PushMany(self, request, context):
        with self._fault_lock:
            self.faults["calls"] += 1
            u = self.rng.random()
        if u < self.rate / 2:
            with self._fault_lock:
                self.faults["before"] += 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected: not applied")
        reply = super().PushMany(request, context)
        if u < self.rate:
            with self._fault_lock:
                self.faults["after"] += 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected: applied, reply lost")
        return reply


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_twenty_percent_unavailable_pushes_apply_exactly_once(seed: int) -> None:
    shards = [FaultyShard(RowStore(), rate=0.2, seed=seed * 10 + i) for i in range(2)]
    servers = [start_server(RowStore(), servicer=s) for s in shards]
    addrs = [f"127.0.0.1:{port}" for _, port in servers]
    rounds, lr = 30, 0.5
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 2000, 400)  # with duplicates: the worker sums them before pushing
    uniq, occurrences = np.unique(ids, return_counts=True)
    g = np.float32(0.25)
    try:
        with PSClient(addrs, "setup", retry=RETRY) as setup:
            setup.create_tables([TableConfig("t", 4, 2000, "sgd", lr=lr, init_scale=0.0)])
        errors: list[BaseException] = []

        def worker(name: str) -> None:
            try:
                with PSClient(addrs, name, staleness=3, retry=RETRY) as client:
                    for _ in range(rounds):
                        grads = np.repeat((occurrences * g).astype(np.float32)[:, None], 4, axis=1)
                        client.push({"t": (uniq, grads, occurrences.astype(np.uint32),
                                           np.zeros(uniq.size, np.uint32))})
                    client.flush()
                    assert client.stats()["retries"] > 0
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(f"w{k}",)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        with PSClient(addrs, "check", retry=RETRY) as client:
            rows = client.pull({"t": uniq}, read_only=True)["t"]
        expect = (-lr * 2 * rounds * (occurrences * g)).astype(np.float32)
        assert np.array_equal(rows, np.repeat(expect[:, None], 4, axis=1))
        faults = {k: sum(s.faults[k] for s in shards) for k in ("before", "after", "calls")}
        assert faults["before"] > 0 and faults["after"] > 0, faults  # both kinds really happened
    finally:
        for server, _ in servers:
            stop_server(server)
