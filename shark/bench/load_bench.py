"""`shark bench load`: many worker processes against real shard processes on loopback, for a fixed time.

Shards: `shards` RayShardActors (ps.actor, each its own process with its threaded gRPC server, as in production)
on a local loopback Ray instance (or the one this process is already connected to). Clients: `clients` processes
(multiprocessing "spawn"; processes, not threads, so that the GIL does not make the clients the bottleneck), each
with its own PSClient and a distinct worker id, running a closed loop of worker steps for `duration_s`:

  draw `ids` lookups per table (a batch; zipf-like over the id space: a few hot ids, a long tail, as a
  recommender's traffic is) -> deduplicate as a worker does -> pull (one PullMany per shard) -> with probability
  1 - read_fraction push the step: the gradient of a logistic loss on the pulled rows (summed per unique row) with
  the per-row click / no-click counts, through the client's bounded push window (`staleness` steps in flight).

Each client times every RPC (PullMany, PushMany: one per shard per step, retries included, successes only) and
every pull step (all shards, what a worker waits for) into numpy buffers, counts failed RPCs and failed steps by
gRPC status (a PSClientError after retries is an error; a retried-then-OK call is not, but is counted as a retry),
and marks the ids it pulled in a bitmap per table. Afterwards the shards are checked: every shard answers Health
and TableStats, and each table holds exactly the rows the clients' pulls created (the union of the bitmaps: a pull
creates absent rows, pushes touch only pulled rows). Then everything started here is stopped and the benchmark
verifies that no client or shard process is left.

Bytes on the wire are the PSClient's counters: serialized protobuf messages both ways (every attempt), HTTP/2
framing excluded.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import queue
import secrets
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
TIMEOUT_S = 60.0
# Multiplier of the rank -> id bijection (prime, so coprime with any id space below it): hot ranks become ids
# scattered over the id space, not 0, 1, 2, ... (the shard router hashes ids anyway; this keeps the store's index
# from seeing only a dense prefix).
_ID_MULTIPLIER = 2_654_435_761
RPCS = ("PullMany", "PushMany")
OPS = ("pull_step", *RPCS)


@dataclass(frozen=True)
class LoadSpec:
    duration_s: float = 60.0
    clients: int = 8
    shards: int = 2
    tables: int = 4
    dim: int = 16
    ids: int = 1024               # lookups per table per step (a batch), deduplicated before they are sent
    id_space: int = 1_000_000     # rows per table (the tables' capacity)
    zipf: float = 1.05            # exponent of the id popularity, P(rank k) ~ k^-zipf; 0 = uniform
    read_fraction: float = 0.0    # share of steps that only pull (serving-like); the others pull then push
    staleness: int = 2            # push steps in flight per client (the worker's default window)
    token: bool = False           # bearer token on shards and clients (ps.security), a fresh one per run
    seed: int = 0
    grpc_workers: int = 4         # threads of each shard's gRPC server (the shard actor's default)

    def __post_init__(self) -> None:
        for name, lo in (("clients", 1), ("shards", 1), ("tables", 1), ("dim", 1), ("ids", 1), ("id_space", 1),
                         ("staleness", 0), ("seed", 0), ("grpc_workers", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if self.id_space >= _ID_MULTIPLIER:
            raise ValueError(f"id_space must be < {_ID_MULTIPLIER:,}, got {self.id_space:,}")
        if self.dim > 4096 or self.ids > 1 << 20:
            raise ValueError(f"dim must be <= 4096 and ids <= {1 << 20}, got {self.dim} and {self.ids}")
        for name, lo, hi in (("duration_s", 0.5, 24 * 3600.0), ("zipf", 0.0, 5.0), ("read_fraction", 0.0, 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {v!r}")
        if not isinstance(self.token, bool):
            raise ValueError(f"token must be a bool, got {self.token!r}")  # noqa: TRY004 - a bad setting

    def table_names(self) -> list[str]:
        return [f"load-{t}" for t in range(self.tables)]


# --- workload (pure numpy) ------------------------------------------------------------------------------------
def zipf_ids(rng: np.random.Generator, n: int, id_space: int, exponent: float) -> np.ndarray:
    """n ids in [0, id_space), rank k (0-based) drawn with probability ~ (k + 1)^-exponent (inverse CDF of the
    continuous power law on [1, id_space + 1), floored), then mapped to ids by a fixed bijection."""
    u = rng.random(n)
    top = id_space + 1.0
    if exponent == 0:
        r = 1.0 + u * id_space
    elif exponent == 1:
        r = np.exp(u * math.log(top))
    else:
        e = 1.0 - exponent
        r = (1.0 + u * (top ** e - 1.0)) ** (1.0 / e)
    rank = np.clip(np.floor(r).astype(np.int64) - 1, 0, id_space - 1)
    return ((rank.astype(np.uint64) * np.uint64(_ID_MULTIPLIER)) % np.uint64(id_space)).astype(np.int64)


def logistic_push(ids: dict[str, np.ndarray], rows: dict[str, np.ndarray], inverse: dict[str, np.ndarray],
                  w: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The push of one step of a logistic model p = sigmoid(w . sum_t e_t(x)) on a batch: per table, the mean
    log-loss gradient w.r.t. each unique row (its examples' (p - y) summed, times w) and its click / no-click
    counts. ids[t]: (unique,) row ids; rows[t]: their (unique, dim) pulled rows; inverse[t]: (batch,) index of
    each example's row in them. Returns PSClient.push's parts: {table: (ids, grads, c_pos, c_neg)}."""
    emb = sum(rows[t][inverse[t]] for t in rows)              # (batch, dim)
    p = 1.0 / (1.0 + np.exp(-(emb @ w)))
    dlogit = (p - labels) / labels.shape[0]
    out = {}
    for t, r in rows.items():
        inv, u = inverse[t], r.shape[0]
        per_row = np.bincount(inv, weights=dlogit, minlength=u)
        grads = (per_row[:, None] * w[None, :]).astype(np.float32)
        c_pos = np.bincount(inv, weights=labels, minlength=u).astype(np.uint32)
        c_neg = np.bincount(inv, minlength=u).astype(np.uint32) - c_pos
        out[t] = (ids[t], grads, c_pos, c_neg)
    return out


class Samples:
    """A growable float64 buffer of latencies (seconds), appended to from several threads."""

    def __init__(self, capacity: int = 4096) -> None:
        self._buf = np.empty(capacity, np.float64)
        self._n = 0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            if self._n == self._buf.shape[0]:
                self._buf = np.concatenate([self._buf, np.empty_like(self._buf)])
            self._buf[self._n] = seconds
            self._n += 1

    def array(self) -> np.ndarray:
        with self._lock:
            return self._buf[:self._n].copy()


# --- one client process ---------------------------------------------------------------------------------------
class RpcTimes:
    """PSClient's on_rpc hook: each shard RPC's latency (retries included) per RPC name, and the RPCs that failed
    for good by name and status code."""

    def __init__(self) -> None:
        self.latency = {rpc: Samples() for rpc in RPCS}
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, rpc: str, seconds: float, error: BaseException | None) -> None:
        if error is not None:
            with self._lock:
                self.errors[f"{rpc}:{getattr(error, 'code', None) or 'UNKNOWN'}"] += 1
            return
        samples = self.latency.get(rpc)
        if samples is not None:
            samples.add(seconds)


def client_main(index: int, addresses: list[str], spec: LoadSpec, security: Any, go: Any, steps_done: Any,
                errors_seen: Any, results: Any) -> None:
    """Entry point of one client process: connect, report ready, wait for `go`, run the loop for the duration,
    flush, and put its figures on `results` (always exactly one message: figures or an error)."""
    try:
        results.put(("ok", index, _client_run(index, addresses, spec, security, go, steps_done, errors_seen,
                                              results)))
    except BaseException as exc:  # noqa: BLE001 - reported to the driver, which fails the run
        results.put(("crash", index, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def _client_run(index: int, addresses: list[str], spec: LoadSpec, security: Any, go: Any, steps_done: Any,
                errors_seen: Any, results: Any) -> dict[str, Any]:
    from worker.client import PSClientError

    names = spec.table_names()
    rng = np.random.default_rng([spec.seed, index])
    w = (rng.standard_normal(spec.dim) * 0.5).astype(np.float64)  # the client's (fixed) logistic head
    seen = np.zeros((spec.tables, spec.id_space), dtype=bool)      # ids this client pulled, per table
    step_errors: Counter[str] = Counter()
    pull_step = Samples()
    counts = Counter()
    from worker.client import PSClient

    times = RpcTimes()
    client = PSClient(addresses, f"load-{index}-{os.getpid()}-{secrets.token_hex(4)}", staleness=spec.staleness,
                      security=security, on_rpc=times)
    try:
        client.wait_ready(TIMEOUT_S)
        results.put(("ready", index, os.getpid()))
        if not go.wait(TIMEOUT_S * 5):
            raise RuntimeError("the driver never said go")
        start, cpu0 = time.monotonic(), time.process_time()
        end = start + spec.duration_s
        while time.monotonic() < end:
            batch = {t: np.unique(zipf_ids(rng, spec.ids, spec.id_space, spec.zipf), return_inverse=True)
                     for t in names}
            ids = {t: u for t, (u, _) in batch.items()}
            t0 = time.perf_counter()
            try:
                rows = client.pull(ids)
            except PSClientError as exc:
                step_errors[f"pull:{exc.code or 'UNKNOWN'}"] += 1
                errors_seen[index] += 1
                continue
            pull_step.add(time.perf_counter() - t0)
            for k, t in enumerate(names):
                seen[k, ids[t]] = True
            counts["rows_pulled"] += sum(u.shape[0] for u in ids.values())
            counts["lookups"] += spec.ids * spec.tables
            if rng.random() >= spec.read_fraction:
                labels = (rng.random(spec.ids) < 0.25).astype(np.float64)
                parts = logistic_push(ids, rows, {t: inv for t, (_, inv) in batch.items()}, w, labels)
                try:
                    client.push(parts)  # an earlier step's failure surfaces here
                except PSClientError as exc:
                    step_errors[f"push:{exc.code or 'UNKNOWN'}"] += 1
                    errors_seen[index] += 1
                counts["push_steps"] += 1
                counts["rows_pushed"] += sum(u.shape[0] for u in ids.values())
            counts["steps"] += 1
            steps_done[index] = counts["steps"]
        while True:  # flush raises one failed step at a time: collect them all
            try:
                client.flush()
                break
            except PSClientError as exc:
                step_errors[f"push:{exc.code or 'UNKNOWN'}"] += 1
                errors_seen[index] += 1
        elapsed, cpu_s = time.monotonic() - start, time.process_time() - cpu0
        stats = client.stats()
    finally:
        try:
            client.close()
        except PSClientError as exc:  # a push error not yet reported (only on the way out of a failure)
            step_errors[f"push:{exc.code or 'UNKNOWN'}"] += 1
    return {"pid": os.getpid(), "elapsed_s": elapsed, "cpu_s": cpu_s, "counts": dict(counts),
            "latency": {"pull_step": pull_step.array(), **{r: s.array() for r, s in times.latency.items()}},
            "rpc_errors": dict(times.errors), "step_errors": dict(step_errors),
            "retries": int(stats.get("retries", 0)), "bytes_sent": int(stats.get("bytes_sent", 0)),
            "bytes_received": int(stats.get("bytes_received", 0)),
            "seen": np.packbits(seen, axis=1)}


# --- the driver -----------------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie (Linux /proc; elsewhere os.kill(pid, 0))."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc").is_dir():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc; 0.0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


def _wait_gone(pids: list[int], timeout_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    left = [p for p in pids if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if _alive(p)]
    return left


def run_load(spec: LoadSpec, progress: bool = True) -> dict[str, Any]:
    """Start the shards and clients, run for spec.duration_s, check the shards, stop everything; the summary."""
    import ray

    from ps.actor import RayShardActor
    from ps.security import SecurityConfig
    from shark.cluster import start_ray

    load_start = os.getloadavg()
    handle = start_ray("local")  # a new loopback instance, or this process's existing connection
    actors: list[Any] = []
    shard_pids: list[int] = []
    token_dir = tempfile.TemporaryDirectory(prefix="shark-load-") if spec.token else None
    try:
        security = SecurityConfig()
        if token_dir is not None:
            path = Path(token_dir.name) / "token"
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
            security = SecurityConfig(token_file=str(path))
        actors = [RayShardActor.options(num_cpus=0).remote(s, spec.shards, None, None, security=security,
                                                           grpc_workers=spec.grpc_workers)
                  for s in range(spec.shards)]
        addresses = ray.get([a.address.remote() for a in actors], timeout=TIMEOUT_S * 2)
        infos = ray.get([a.info.remote() for a in actors], timeout=TIMEOUT_S)
        shard_pids = [int(i["pid"]) for i in infos]
        _create_tables(spec, addresses, security)
        shard_cpu0 = [cpu_seconds(p) for p in shard_pids]
        runs, client_pids, wall = _run_clients(spec, addresses, security, progress)
        shard_cpu = [round(cpu_seconds(p) - c, 2) for p, c in zip(shard_pids, shard_cpu0)]
        checks = _check_shards(spec, addresses, security, runs)
    finally:
        for a in actors:
            try:
                ray.get(a.stop.remote(), timeout=TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - killed next anyway
                log.warning("stopping a shard's gRPC server failed (%s); killing the actor", exc)
            ray.kill(a)
        handle.shutdown()
        if token_dir is not None:
            token_dir.cleanup()
    left = _wait_gone(shard_pids + client_pids)
    return summarize(spec, runs, checks, wall, addresses, shard_pids, client_pids, left,
                     {"shard_cpu_seconds": shard_cpu, "ray_address": handle.address, "ray_started_here": handle.started,
                      "load_average_before": [round(x, 2) for x in load_start],
                      "load_average_after": [round(x, 2) for x in os.getloadavg()]})


def _create_tables(spec: LoadSpec, addresses: list[str], security: Any) -> None:
    from ps.store import TableConfig
    from worker.client import PSClient

    with PSClient(addresses, "load-driver", security=security) as client:
        client.wait_ready(TIMEOUT_S)
        client.create_tables([TableConfig(name=t, dim=spec.dim, capacity=spec.id_space, optimizer="adagrad",
                                          lr=0.05, init_scale=0.05, seed=k)
                              for k, t in enumerate(spec.table_names())])


def _run_clients(spec: LoadSpec, addresses: list[str], security: Any, progress: bool
                 ) -> tuple[list[dict[str, Any]], list[int], float]:
    from tqdm import tqdm

    ctx = mp.get_context("spawn")
    go = ctx.Event()
    results = ctx.Queue()
    steps_done = ctx.Array("q", spec.clients, lock=False)  # progress only: torn reads do not matter
    errors_seen = ctx.Array("q", spec.clients, lock=False)
    procs = [ctx.Process(target=client_main, name=f"shark-load-client-{i}", daemon=True,
                         args=(i, addresses, spec, security, go, steps_done, errors_seen, results))
             for i in range(spec.clients)]
    runs: dict[int, dict[str, Any]] = {}
    crashes: dict[int, str] = {}
    try:
        for p in procs:
            p.start()
        ready = 0
        while ready < spec.clients:  # every client connected and its shards SERVING before the clock starts
            kind, i, payload = results.get(timeout=TIMEOUT_S * 2)
            if kind == "ready":
                ready += 1
            else:
                raise RuntimeError(f"load client {i} failed before the start: {payload}")
        t0 = time.monotonic()
        go.set()
        bar = tqdm(total=round(spec.duration_s), desc="bench load", file=sys.stderr, disable=not progress,
                   leave=False, bar_format="{desc}: {bar} {n}/{total} s{postfix}")
        with bar:
            while len(runs) + len(crashes) < spec.clients:
                try:
                    kind, i, payload = results.get(timeout=0.5)
                    if kind == "ok":
                        runs[i] = payload
                    else:
                        crashes[i] = payload
                except queue.Empty:  # nothing finished yet
                    if time.monotonic() - t0 > spec.duration_s + TIMEOUT_S * 2:
                        raise RuntimeError("load clients did not finish in time") from None
                el = time.monotonic() - t0
                bar.n = min(round(el), bar.total)
                bar.set_postfix_str(f"{sum(steps_done) / max(el, 1e-9):,.0f} steps/s, "
                                    f"{sum(errors_seen)} errors", refresh=True)
        wall = time.monotonic() - t0
        for p in procs:
            p.join(TIMEOUT_S)
    finally:
        for p in procs:  # only on a failure are any still running
            if p.is_alive():
                p.terminate()
                p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
        results.close()
    if crashes:
        i = min(crashes)
        text = crashes[i]
        raise RuntimeError(f"{len(crashes)} load client(s) crashed; client {i}: {text}")
    return [runs[i] for i in range(spec.clients)], [p.pid for p in procs if p.pid], wall


def _check_shards(spec: LoadSpec, addresses: list[str], security: Any, runs: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    """Every shard SERVING and answering TableStats; every table on every shard; each table's rows (summed over
    shards) equal to the distinct ids the clients pulled (at least that many if a pull failed: its shards that
    answered created rows no bitmap marks); with a token, a client without it refused."""
    exact = not any(k.startswith("pull:") for r in runs for k in r["step_errors"])
    from worker.client import PSClient, PSClientError, RetryPolicy

    union = np.bitwise_or.reduce(np.stack([r["seen"] for r in runs]), axis=0)   # (tables, id_space / 8)
    expected = np.bitwise_count(union).sum(axis=1)
    problems: list[str] = []
    per_shard: list[dict[str, Any]] = []
    totals = Counter()
    for addr in addresses:
        with PSClient([addr], "load-check", security=security) as one:
            one.wait_ready(TIMEOUT_S)
            stats = one.table_stats()
            rss = one.shard_rss()[0]
        per_shard.append({"address": addr, "rss_bytes": rss, "rows": {t: s["rows"] for t, s in stats.items()}})
        for t in spec.table_names():
            if t not in stats:
                problems.append(f"shard {addr} has no table {t!r}")
            else:
                totals[t] += stats[t]["rows"]
    for k, t in enumerate(spec.table_names()):
        if totals[t] < int(expected[k]) or (exact and totals[t] != int(expected[k])):
            problems.append(f"table {t!r}: {totals[t]} rows on the shards, {int(expected[k])} distinct ids pulled")
        if totals[t] == 0:
            problems.append(f"table {t!r} has no rows")
    token_refused = None
    if spec.token:
        try:
            with PSClient(addresses[:1], "load-no-token", retry=RetryPolicy(attempts=1, deadline_s=5.0)) as bare:
                bare.wait_ready(5.0)
            token_refused = False
            problems.append("a client without the token was served")
        except PSClientError as exc:
            token_refused = exc.code == "UNAUTHENTICATED"
            if not token_refused:
                problems.append(f"a client without the token got {exc.code}, not UNAUTHENTICATED")
    return {"ok": not problems, "problems": problems, "rows_exact": exact, "shards": per_shard,
            "rows_per_table": {t: int(totals[t]) for t in spec.table_names()},
            "distinct_ids_pulled": {t: int(expected[k]) for k, t in enumerate(spec.table_names())},
            "token_refused_without_it": token_refused}


def _latency(a: np.ndarray) -> dict[str, Any]:
    if a.size == 0:
        return {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    p50, p90, p99 = np.percentile(a, [50, 90, 99]) * 1e3
    return {"count": int(a.size), "p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3),
            "p99_ms": round(float(p99), 3), "max_ms": round(float(a.max() * 1e3), 3),
            "mean_ms": round(float(a.mean() * 1e3), 3)}


def summarize(spec: LoadSpec, runs: list[dict[str, Any]], checks: dict[str, Any], wall_s: float,
              addresses: list[str], shard_pids: list[int], client_pids: list[int], left: list[int],
              env: dict[str, Any]) -> dict[str, Any]:
    """The run's figures from the clients' raw results (rates over the load window: the longest client run)."""
    secs = max(r["elapsed_s"] for r in runs)
    total = Counter()
    for r in runs:
        total.update(r["counts"])
    rpc_errors, step_errors = Counter(), Counter()
    for r in runs:
        rpc_errors.update(r["rpc_errors"])
        step_errors.update(r["step_errors"])
    lat = {op: np.concatenate([r["latency"][op] for r in runs]) for op in OPS}
    requests = sum(int(lat[r].size) for r in RPCS) + sum(rpc_errors.values())
    wire = sum(r["bytes_sent"] + r["bytes_received"] for r in runs)
    # errors: requests (RPCs) that failed for good; failed_steps: the pull or push steps a worker saw fail (one
    # failed RPC fails its step; a malformed reply fails a step without a failed RPC).
    errors, failed_steps = sum(rpc_errors.values()), sum(step_errors.values())
    return {
        "benchmark": "load",
        "spec": asdict(spec),
        "seconds": round(secs, 3), "wall_seconds": round(wall_s, 3),
        "steps": int(total["steps"]), "push_steps": int(total["push_steps"]),
        "steps_per_second": round(total["steps"] / secs, 1),
        "requests": requests, "requests_per_second": round(requests / secs, 1),
        "rows_pulled": int(total["rows_pulled"]), "rows_pushed": int(total["rows_pushed"]),
        "rows_per_second": round((total["rows_pulled"] + total["rows_pushed"]) / secs, 1),
        "pulled_rows_per_second": round(total["rows_pulled"] / secs, 1),
        "unique_share": round(total["rows_pulled"] / max(total["lookups"], 1), 4),
        "wire_bytes": wire, "wire_mb_per_second": round(wire / secs / 1e6, 3),
        "latency_ms": {op: _latency(lat[op]) for op in OPS},
        "errors": errors, "errors_by_kind": dict(rpc_errors),
        "failed_steps": failed_steps, "failed_steps_by_kind": dict(step_errors),
        "retries": sum(r["retries"] for r in runs),
        "client_cpu_seconds": round(sum(r["cpu_s"] for r in runs), 2),
        "per_client": [{"pid": r["pid"], "steps": int(r["counts"].get("steps", 0)), "cpu_s": round(r["cpu_s"], 2),
                        "errors": sum(r["rpc_errors"].values()) + sum(r["step_errors"].values()),
                        "retries": r["retries"]} for r in runs],
        "consistency": checks,
        "shards": [{"address": a, "pid": p} for a, p in zip(addresses, shard_pids)],
        "client_pids": client_pids, "processes_left": left,
        "ok": errors == 0 and failed_steps == 0 and checks["ok"] and not left,
        "cpu_count": os.cpu_count(),
        "threads": "each client: its PSClient's pools (2 x shards pull + push threads) and one loop thread; "
                   f"each shard: {spec.grpc_workers} gRPC server threads",
        **env,
    }


def format_load(result: dict[str, Any]) -> str:
    s = result["spec"]
    lines = [(f"bench load: {s['clients']} client processes x {s['shards']} shard processes (Ray actors, "
              f"loopback), {result['seconds']:.1f} s; {s['tables']} tables x dim {s['dim']}, {s['ids']} "
              f"lookups/table/step (zipf {s['zipf']} over {s['id_space']:,} ids, "
              f"{100 * result['unique_share']:.0f}% unique), read fraction {s['read_fraction']}, staleness "
              f"{s['staleness']}, token {'on' if s['token'] else 'off'}"),
             (f"  steps/s {result['steps_per_second']:,.1f}   requests/s {result['requests_per_second']:,.1f}   "
              f"rows/s {result['rows_per_second']:,.0f}   wire {result['wire_mb_per_second']:,.1f} MB/s   "
              f"retries {result['retries']}   errors {result['errors']} (failed steps {result['failed_steps']})"),
             f"  {'op':12}{'count':>10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}"]
    for op, l in result["latency_ms"].items():
        if l["count"]:
            lines.append(f"  {op:12}{l['count']:>10,}{l['p50_ms']:>10.2f}{l['p90_ms']:>10.2f}{l['p99_ms']:>10.2f}"
                         f"{l['max_ms']:>10.1f}")
        else:
            lines.append(f"  {op:12}{0:>10}")
    for kind, n in sorted(result["errors_by_kind"].items()):
        lines.append(f"  failed requests {kind}: {n}")
    for kind, n in sorted(result["failed_steps_by_kind"].items()):
        lines.append(f"  failed steps {kind}: {n}")
    c = result["consistency"]
    lines.append(f"  shards consistent: {'yes' if c['ok'] else 'NO'} (rows per table "
                 + ", ".join(f"{n:,}" for n in c["rows_per_table"].values()) + " = distinct ids pulled"
                 + ("; a client without the token refused" if c["token_refused_without_it"] else "") + ")")
    lines.extend(f"  problem: {p}" for p in c["problems"])
    lines.append(f"  CPU seconds over the run: clients {result['client_cpu_seconds']:.1f} ({s['clients']} processes), "
                 f"shards " + " + ".join(f"{x:.1f}" for x in result["shard_cpu_seconds"])
                 + f" (of {result['cpu_count']} CPUs x {result['seconds']:.0f} s = "
                 f"{result['cpu_count'] * result['seconds']:.0f} available)")
    lines.append(f"  processes left: {len(result['processes_left'])}; load average before/after "
                 f"{result['load_average_before'][0]:.1f}/{result['load_average_after'][0]:.1f} on "
                 f"{result['cpu_count']} CPUs (shared machine)")
    return "\n".join(lines)
