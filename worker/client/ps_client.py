"""PSClient: a training worker's view of all PS shards over gRPC (DESIGN.md sections 2, 4, 7).

One channel and stub per shard; calls to different shards run in parallel on thread pools; every call has a
per-attempt deadline and retries on UNAVAILABLE / DEADLINE_EXCEEDED (RetryPolicy). Pulls send one PullMany per
shard (all tables at once); pushes send one PushMany per shard, all carrying the step's (worker_id, seq), so a
retried push is applied once, and go through a PushWindow of ``staleness`` in-flight steps.

``worker_id`` must name one incarnation of a worker (e.g. include a uuid or a restart counter): seqs restart at 0
with every PSClient, and a shard treats a (worker_id, seq) it has seen as a duplicate.

``security`` (ps.security.SecurityConfig): TLS channels verified against its CA (plus this client's certificate
under mutual TLS) and ``authorization: Bearer <token>`` on every call, Health included. A refused token is
UNAUTHENTICATED: not retried, raised as PSClientError naming the shard. Keepalive pings detect a frozen shard.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message

from ps.requests import create_table_request
from ps.security import SecurityConfig
from ps.store import TableConfig
from shark.wire.tensors import WireError
from shark.wire.v1 import ps_pb2, ps_pb2_grpc
from worker.client.counters import ClientCounters
from worker.client.messages import (
    PullPlan,
    PushPart,
    assemble_pull,
    assemble_tiers,
    assign_requests,
    plan_pull,
    push_requests,
)
from worker.client.push_window import PushWindow
from worker.client.retry import PSClientError, RetryPolicy, call_with_retry
from worker.client.routing import ShardRouter

__all__ = ["PSClient"]

R = TypeVar("R")
log = logging.getLogger(__name__)
DEFAULT_RETRY = RetryPolicy()
_SERVING = ps_pb2.HealthResponse.SERVING


class PSClient:
    def __init__(self, addresses: list[str], worker_id: str, staleness: int = 2, retry: RetryPolicy = DEFAULT_RETRY,
                 max_message_bytes: int = 64 << 20, stored_precision: bool = False,
                 security: SecurityConfig | None = None, keepalive_ms: tuple[int, int] = (20_000, 10_000),
                 on_rpc: Callable[[str, float, BaseException | None], None] | None = None) -> None:
        if not addresses or not all(isinstance(a, str) and a for a in addresses):
            raise ValueError(f"addresses must be a non-empty list of 'host:port' strings, got {addresses!r}")
        if not isinstance(worker_id, str) or not worker_id:
            raise ValueError("worker_id must be a non-empty str")
        if not isinstance(retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy")
        self.addresses = list(addresses)
        self.worker_id = worker_id
        self.retry = retry
        self.max_message_bytes = max_message_bytes
        # Pulls in the rows' stored precision (fp16/int8 rows travel as such, decoded here): fewer bytes on the
        # wire when F-Quantization keeps rows below fp32; the same floats either way.
        self.stored_precision = stored_precision
        self.router = ShardRouter(len(addresses))
        self.window = PushWindow(staleness)
        self.counters = ClientCounters()
        # on_rpc(rpc, seconds, error): called after every shard RPC (retries included; error None on success, the
        # PSClientError that ended it otherwise), from the calling thread: latency histograms, tracing.
        self.on_rpc = on_rpc
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes),
                   # A restarted shard comes back on its old address within seconds: reconnect promptly instead
                   # of gRPC's default backoff (up to 120 s between attempts).
                   ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000),
                   # Keepalive: a shard that stops acking pings for 10 s (frozen, or its node gone without a
                   # FIN) fails the calls in flight with UNAVAILABLE (retried) instead of waiting out the deadline.
                   # keepalive_ms = (ping every, fail after no ack for); the shards allow a ping every 10 s.
                   # grpcio 1.85 times a keepalive ping out after http2.ping_timeout_ms (1 min by default), not
                   # after keepalive_timeout_ms alone: set both (measured, tests/integration/test_security.py).
                   ("grpc.keepalive_time_ms", keepalive_ms[0]), ("grpc.keepalive_timeout_ms", keepalive_ms[1]),
                   ("grpc.http2.ping_timeout_ms", keepalive_ms[1]),
                   ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]
        # Token and TLS (ps.security): files and the token variable are read here, on this node.
        self.security = security if security is not None else SecurityConfig()
        token = self.security.read_token()
        self._metadata: tuple[tuple[str, str], ...] | None = (
            (("authorization", f"Bearer {token}"),) if token else None)
        if token and not self.security.client_tls and not all(_is_loopback(a) for a in self.addresses):
            log.warning("PS token sent without TLS to non-loopback shard addresses: anyone on the network path can "
                        "read it (add --ps-tls-cert/--ps-tls-key/--ps-tls-ca)")
        del token
        credentials = _channel_credentials(self.security)
        if credentials is not None and self.security.tls_server_name:
            options.append(("grpc.ssl_target_name_override", self.security.tls_server_name))
        self._channels = [grpc.insecure_channel(a, options=options) if credentials is None
                          else grpc.secure_channel(a, credentials, options=options) for a in self.addresses]
        self._stubs = [ps_pb2_grpc.ParameterServerStub(c) for c in self._channels]
        n = max(2, 2 * len(addresses))
        # Separate pools: a pull (the critical path) never queues behind a window of pushes, and pull_async's
        # orchestration thread never waits on a pool it occupies.
        self._pull_pool = cf.ThreadPoolExecutor(max_workers=n, thread_name_prefix="ps-pull")
        self._push_pool = cf.ThreadPoolExecutor(max_workers=n, thread_name_prefix="ps-push")
        self._prefetch_pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ps-prefetch")
        self._push_lock = threading.Lock()  # seq order == window order
        self._seq = 0
        self._closed = False

    # --- one call ----------------------------------------------------------------------------------------------
    def _call(self, shard: int, rpc: str, request: Message, tables: Sequence[str] = ()) -> Any:
        method: Callable[..., Any] = getattr(self._stubs[shard], rpc)
        size = request.ByteSize()

        def attempt(timeout: float) -> Any:
            self.counters.add("bytes_sent", size)  # per attempt: a retry sends the bytes again
            return method(request, timeout=timeout, metadata=self._metadata)
        start = time.perf_counter()
        try:
            reply = call_with_retry(attempt, self.retry,
                                    address=self.addresses[shard], rpc=rpc, tables=tables,
                                    on_retry=lambda: self.counters.add("retries"))
        except BaseException as exc:
            if self.on_rpc is not None:
                self.on_rpc(rpc, time.perf_counter() - start, exc)
            raise
        if self.on_rpc is not None:
            self.on_rpc(rpc, time.perf_counter() - start, None)
        self.counters.add("bytes_received", reply.ByteSize())
        return reply

    def _on_all(self, pool: cf.ThreadPoolExecutor, calls: dict[int, Callable[[], R]]) -> dict[int, R]:
        """Run one callable per shard in parallel; wait for all; raise the first failure (after all finished)."""
        futures = {shard: pool.submit(fn) for shard, fn in calls.items()}
        cf.wait(futures.values())
        return {shard: f.result() for shard, f in futures.items()}

    def _every_shard(self, rpc: str, request: Message, tables: Sequence[str] = (),
                     shards: Sequence[int] | None = None) -> dict[int, Any]:
        targets = range(len(self._stubs)) if shards is None else shards
        return self._on_all(self._pull_pool, {s: (lambda s=s: self._call(s, rpc, request, tables)) for s in targets})

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def wait_ready(self, timeout_s: float) -> None:
        """Poll Health on every shard until all report SERVING; NOT_SERVING or UNAVAILABLE mean keep waiting."""
        deadline = time.monotonic() + timeout_s
        pending = set(range(len(self._stubs)))
        last: dict[int, str] = {}
        while pending:
            for shard in sorted(pending):
                left = deadline - time.monotonic()
                try:
                    rep = self._stubs[shard].Health(ps_pb2.HealthRequest(), timeout=max(0.01, min(1.0, left)),
                                                    metadata=self._metadata)
                except grpc.RpcError as exc:
                    code = exc.code()
                    if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise PSClientError(f"Health of shard {self.addresses[shard]} failed: {code.name}: "
                                            f"{exc.details()}", address=self.addresses[shard], rpc="Health",
                                            code=code.name, details=exc.details() or "") from None
                    last[shard] = code.name
                    continue
                if rep.status == _SERVING:
                    pending.discard(shard)
                else:
                    last[shard] = ps_pb2.HealthResponse.ServingStatus.Name(rep.status)
            if not pending:
                return
            if time.monotonic() >= deadline:
                waiting = ", ".join(f"{self.addresses[s]} ({last.get(s, '?')})" for s in sorted(pending))
                raise PSClientError(f"PS shards not SERVING after {timeout_s} s: {waiting}",
                                    address=self.addresses[min(pending)], rpc="Health", code="NOT_SERVING")
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        """Flush pending pushes (raising their error, if any), then release threads and channels. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            for pool in (self._prefetch_pool, self._pull_pool, self._push_pool):
                pool.shutdown(wait=True)
            for channel in self._channels:
                channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the exception in flight with a push error
            try:
                self.close()
            except Exception:
                log.exception("PSClient.close() failed while another exception was propagating")

    # --- tables ------------------------------------------------------------------------------------------------
    def create_tables(self, configs: list[TableConfig]) -> None:
        """Create every table on every shard (idempotent: an identical existing table is a no-op)."""
        reqs = [create_table_request(c) for c in configs]

        def on_shard(shard: int) -> None:
            for req in reqs:
                self._call(shard, "CreateTable", req, (req.name,))
        self._on_all(self._pull_pool, {s: (lambda s=s: on_shard(s)) for s in range(len(self._stubs))})

    def drop_table(self, name: str, shards: Sequence[int] | None = None) -> None:
        """Delete a table on every shard (or on `shards` only: fault injection); idempotent."""
        self._every_shard("DropTable", ps_pb2.DropTableRequest(name=name), (name,), shards)

    def assign(self, table: str, ids: np.ndarray, rows: np.ndarray) -> None:
        """Overwrite rows (unique ids, (n, dim) float32) on their owning shards and reset their optimizer state."""
        reqs = assign_requests(self.router, table, ids, rows)
        self._on_all(self._pull_pool, {s: (lambda s=s, r=r: self._call(s, "Assign", r, (table,)))
                                       for s, r in reqs.items()})

    def table_stats(self) -> dict[str, dict[str, Any]]:
        """Per table, summed over shards: {"rows": int, "bytes_by_kind": {kind: int}, "rows_by_tier": {tier: int}}."""
        out: dict[str, dict[str, Any]] = {}
        for rep in self._every_shard("TableStats", ps_pb2.TableStatsRequest()).values():
            for t in rep.tables:
                acc = out.setdefault(t.name, {"rows": 0, "bytes_by_kind": {}, "rows_by_tier": {}})
                acc["rows"] += t.rows
                for key, src in (("bytes_by_kind", t.bytes_by_kind), ("rows_by_tier", t.rows_by_tier)):
                    for k, v in src.items():
                        acc[key][k] = acc[key].get(k, 0) + v
        return out

    def shard_rss(self) -> list[int]:
        """Each shard process's resident memory (bytes, VmRSS; 0 if the shard cannot tell), in shard order."""
        reps = self._every_shard("TableStats", ps_pb2.TableStatsRequest())
        return [int(reps[s].process_rss_bytes) for s in sorted(reps)]

    def restore(self, directory: str, tag: str) -> int:
        """Every shard replaces its state with checkpoint `tag` (a rollback; its push log starts over from it).
        Returns the number of tables restored on shard 0."""
        self.flush()
        reps = self._every_shard("Restore", ps_pb2.RestoreRequest(directory=directory, tag=tag))
        return int(reps[0].tables_restored)

    def checkpoint(self, directory: str, tag: str, shards: Sequence[int] | None = None) -> list[tuple[str, int]]:
        """Checkpoint every shard (or `shards` only: fault injection) after flushing this client's pushes: per
        shard (manifest path, bytes)."""
        self.flush()
        reps = self._every_shard("Checkpoint", ps_pb2.CheckpointRequest(directory=directory, tag=tag), (), shards)
        return [(reps[s].manifest_path, reps[s].bytes_written) for s in sorted(reps)]

    # --- rows --------------------------------------------------------------------------------------------------
    def pull(self, ids_by_table: dict[str, np.ndarray], read_only: bool = False) -> dict[str, np.ndarray]:
        """Rows of unique int64 ids per table -> {table: (n, dim) float32} in the input order. One PullMany per
        shard, in parallel. read_only: absent rows come back with their initial values but are not created."""
        start = time.perf_counter()
        try:
            return self._pull(ids_by_table, read_only)
        finally:
            self.counters.add("pull_wait_s", time.perf_counter() - start)

    def pull_async(self, ids_by_table: dict[str, np.ndarray], read_only: bool = False) -> cf.Future:
        """pull() in the background (prefetch the next batch while this one computes): a Future of the dict."""
        return self._prefetch_pool.submit(self._pull, dict(ids_by_table), read_only)

    def _pull(self, ids_by_table: dict[str, np.ndarray], read_only: bool) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        plan = plan_pull(self.router, ids_by_table, read_only, self.stored_precision)
        replies, out = self._pull_many(plan, assemble_pull)
        self.counters.add("pulls")
        self.counters.add("rows_pulled", sum(plan.sizes.values()))
        self.counters.add("pull_bytes", sum(r.ByteSize() for r in replies.values()))
        self.counters.add("pull_latency_s", time.perf_counter() - start)
        return out

    def pull_tiers(self, ids_by_table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Where rows sit, without touching them: a read-only stored-precision pull (no row created, no priority
        changed) -> {table: (n,) uint8} in the input order: TIER_FP32 / TIER_FP16 / TIER_INT8, or TIER_ABSENT
        (shark.quant.stored) for ids not in the store."""
        plan = plan_pull(self.router, ids_by_table, read_only=True, stored_precision=True)
        return self._pull_many(plan, assemble_tiers)[1]

    def _pull_many(self, plan: PullPlan, assemble: Callable[..., R]) -> tuple[dict[int, Any], R]:
        """One PullMany per shard of the plan, in parallel; the replies and what `assemble` makes of them (a
        malformed reply becomes a PSClientError)."""
        replies = self._on_all(self._pull_pool, {
            s: (lambda s=s, r=r: self._call(s, "PullMany", r, [p.table for p in r.parts]))
            for s, r in plan.requests.items()})
        try:
            return replies, assemble(plan, replies, max_bytes=max(self.max_message_bytes, 256 << 20))
        except WireError as exc:
            raise PSClientError(f"PullMany: malformed reply: {exc}", rpc="PullMany", tables=tuple(plan.sizes),
                                code="INVALID_REPLY", details=str(exc)) from None

    def push(self, parts: dict[str, PushPart]) -> int:
        """Push one step: {table: (unique ids, grads (n, dim) float32, c_pos (n,), c_neg (n,))}. Returns the step's
        seq without waiting for the shards unless ``staleness`` steps are in flight (then it waits for the
        oldest). An earlier step's failure is raised here or by flush()."""
        start = time.perf_counter()
        with self._push_lock:
            if self._closed:
                raise PSClientError("push on a closed PSClient", rpc="PushMany", tables=tuple(parts))
            seq = self._seq
            reqs = push_requests(self.router, parts, self.worker_id, seq)  # raises before seq is used
            self._seq += 1
            tables = tuple(parts)
            futures = [self._push_pool.submit(self._call, s, "PushMany", r, tables) for s, r in enumerate(reqs)]
            self.counters.add("pushes")
            try:
                self.window.submit(futures)
            finally:
                self.counters.add("push_wait_s", time.perf_counter() - start)
        return seq

    @property
    def next_seq(self) -> int:
        """The seq the next push will carry (= pushes sent so far, after resume_at's start)."""
        return self._seq

    def resume_at(self, seq: int) -> None:
        """Continue a predecessor's seqs (same worker_id) from `seq`: its pushes from `seq` on are sent again by
        this client, and a shard that already applied one answers DUPLICATE. Only before this client pushed."""
        with self._push_lock:
            if self.counters.snapshot().get("pushes"):
                raise PSClientError("resume_at after this client pushed: seqs would collide", rpc="PushMany")
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                raise ValueError(f"seq must be an int >= 0, got {seq!r}")
            self._seq = seq

    def start_timeline(self, worker_id: str) -> None:
        """After the shards were restored to an earlier checkpoint (a rollback), continue as `worker_id` from seq
        0: the restored idempotency window remembers this client's seqs only up to that checkpoint, so its
        later seqs could fall beyond the window (SeqOutOfWindow) and must not be compared with the abandoned
        timeline's. Waits for the pushes in flight first."""
        if not isinstance(worker_id, str) or not worker_id:
            raise ValueError("worker_id must be a non-empty str")
        with self._push_lock:
            self.window.flush()
            self.worker_id, self._seq = worker_id, 0

    def flush(self) -> None:
        """Wait until every push of this client is acknowledged; raise the first failure not yet reported."""
        start = time.perf_counter()
        with self._push_lock:
            try:
                self.window.flush()
            finally:
                self.counters.add("push_wait_s", time.perf_counter() - start)

    def stats(self) -> dict[str, float]:
        """Counters: pulls, pushes, bytes_sent, bytes_received, retries, push_waits, max_push_in_flight,
        pull_wait_s (caller blocked in pull()), pull_latency_s (all pulls, incl. async), push_wait_s."""
        out: dict[str, float] = {"pulls": 0, "pushes": 0, "bytes_sent": 0, "bytes_received": 0, "retries": 0,
                                 "pull_wait_s": 0.0, "pull_latency_s": 0.0, "push_wait_s": 0.0}
        out.update(self.counters.snapshot())
        if out.get("rows_pulled"):  # what one pulled row costs on the wire (ids excluded), all tables together
            out["pull_bytes_per_row"] = out["pull_bytes"] / out["rows_pulled"]
        out["push_waits"] = self.window.steps_waited
        out["max_push_in_flight"] = self.window.max_in_flight
        return out


def _channel_credentials(security: SecurityConfig) -> grpc.ChannelCredentials | None:
    """TLS to the shards when `security` has a CA (tls_ca) to verify them with; plus this client's certificate
    under mutual TLS. None: plaintext (the loopback default)."""
    if not security.client_tls:
        return None
    assert security.tls_ca
    roots = SecurityConfig.read_pem(security.tls_ca, "CA bundle")
    key = chain = None
    if security.client_cert and security.client_key:
        chain = SecurityConfig.read_pem(security.client_cert, "client certificate")
        key = SecurityConfig.read_pem(security.client_key, "client private key")
    return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)


def _is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"
