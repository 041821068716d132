"""`shark bench ps`: the shard's data plane, gRPC against Ray actor calls, with the in-process store as ceiling.

One ShardActor (ps.actor) on a local loopback Ray instance (or a cluster given by address). For batches of
`rows` unique ids x `dim` float32, three sides do the same sequence of pulls, then pushes (grads + c_pos/c_neg):
  in_process  RowStore.pull / RowStore.push in this process: no wire at all (the ceiling);
  grpc        the actor's gRPC server, stub calls from this driver, tensors through shark.wire.tensors (encode and
              decode are timed: they are part of what a worker pays);
  ray         ray.get(actor.pull.remote(...)) / actor.push.remote(...) on the same actor (Ray serialisation and
              its object store for payloads over ~100 KB).
One client thread, one call in flight (latency-bound, as a worker's single pull per shard); the server uses its
gRPC thread pool. Each side gets a fresh table per repeat (so the "random" variant's first-touch row creation
costs every side the same) and untimed warm-up calls; the order of the sides rotates across repeats, and medians
are reported.

Variants: "dense" pulls/pushes the same ids 0..rows-1 every call (hot rows); "random" draws each call's ids
(sorted, unique, as workers send them) uniformly from a large id space, so rows are created as they are first
touched and the store's index is spread out. There the store's own work (row creation, the same on every side)
is a large share of a call, so the JSON also gives each transport's time per call minus the in-process time.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SIDES = ("in_process", "grpc", "ray")
VARIANTS = ("dense", "random")
TIMEOUT_S = 30.0
TARGET_GRPC_OVER_RAY = 2.0


@dataclass(frozen=True)
class PsBenchSpec:
    rows: int = 4096
    dim: int = 16
    calls: int = 200
    repeats: int = 3
    warmup_calls: int = 3
    variants: tuple[str, ...] = VARIANTS
    id_space: int = 10_000_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rows < 1 or self.dim < 1 or self.calls < 1 or self.repeats < 1 or self.warmup_calls < 0:
            raise ValueError("rows, dim, calls and repeats must be >= 1, warmup_calls >= 0")
        if not self.variants or any(v not in VARIANTS for v in self.variants):
            raise ValueError(f"variants must be a non-empty subset of {VARIANTS}, got {self.variants}")
        if self.id_space < self.rows:
            raise ValueError(f"id_space ({self.id_space}) must be >= rows ({self.rows})")


@dataclass
class _Batches:
    capacity: int
    ids: list[np.ndarray]    # one per call (warm-up calls reuse the first ones)
    grads: list[np.ndarray]
    c_pos: np.ndarray
    c_neg: np.ndarray


def _batches(spec: PsBenchSpec, variant: str) -> _Batches:
    rng = np.random.default_rng(spec.seed)
    n = spec.calls
    if variant == "dense":
        ids = [np.arange(spec.rows, dtype=np.int64)] * n
        capacity = spec.rows
    else:
        capacity = spec.id_space
        ids = []
        for _ in range(n):
            draw = np.unique(rng.integers(0, capacity, size=spec.rows + spec.rows // 8 + 16, dtype=np.int64))
            while draw.shape[0] < spec.rows:  # a few collisions more than expected: top up
                draw = np.unique(np.concatenate([draw, rng.integers(0, capacity, size=spec.rows, dtype=np.int64)]))
            ids.append(np.sort(rng.choice(draw, size=spec.rows, replace=False)))
    grads = [rng.standard_normal((spec.rows, spec.dim), dtype=np.float32) * np.float32(1e-3) for _ in range(min(n, 8))]
    return _Batches(capacity, ids, [grads[i % len(grads)] for i in range(n)],
                    np.ones(spec.rows, np.uint32), np.zeros(spec.rows, np.uint32))


class _Side:
    """pull(table, ids) / push(table, ids, grads, c_pos, c_neg, worker, seq) / create(table) / drop(table)."""
    pull: Callable[[str, np.ndarray], Any]
    push: Callable[..., Any]
    create: Callable[[str], None]
    drop: Callable[[str], None]


def _time(fn: Callable[[int], Any], warm: int, n: int) -> float:
    for i in range(warm):
        fn(i)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return time.perf_counter() - t0


def _run_side(side: _Side, table: str, b: _Batches, spec: PsBenchSpec, worker: str) -> tuple[float, float]:
    side.create(table)
    try:
        warm = min(spec.warmup_calls, spec.calls)
        pull_s = _time(lambda i: side.pull(table, b.ids[i]), warm, spec.calls)
        # Warm-up pushes use seqs beyond the timed ones' (all distinct, so every push is applied, none duplicate).
        for i in range(warm):
            side.push(table, b.ids[i], b.grads[i], b.c_pos, b.c_neg, worker, spec.calls + i)
        push_s = _time(lambda i: side.push(table, b.ids[i], b.grads[i], b.c_pos, b.c_neg, worker, i), 0, spec.calls)
    finally:
        side.drop(table)
    return pull_s, push_s


def _sides(actor: Any, stub: Any, spec: PsBenchSpec, capacity_of: Callable[[], int]) -> dict[str, _Side]:
    import ray

    from ps.requests import worker_key
    from ps.store import RowStore, TableConfig
    from shark.wire.tensors import decode_tensor, encode_tensor
    from shark.wire.v1 import ps_pb2

    def cfg(table: str) -> TableConfig:
        return TableConfig(name=table, dim=spec.dim, capacity=capacity_of(), optimizer="adagrad", lr=0.05,
                           init_scale=0.05, seed=1)

    # in-process ceiling
    store = RowStore(seq_window=max(4096, 2 * spec.calls))
    local = _Side()
    local.create = lambda t: store.create_table(cfg(t))
    local.drop = store.drop_table
    local.pull = store.pull
    local.push = lambda t, ids, g, cp, cn, w, seq: store.push(t, ids, g, cp, cn, worker_id=worker_key(w), seq=seq)

    # gRPC (the shard's real data plane)
    def g_create(t: str) -> None:
        c = cfg(t)
        stub.CreateTable(ps_pb2.CreateTableRequest(name=t, dim=c.dim, capacity=c.capacity, optimizer=c.optimizer,
                                                   learning_rate=c.lr, init_scale=c.init_scale, seed=c.seed),
                         timeout=TIMEOUT_S)

    def g_pull(t: str, ids: np.ndarray) -> np.ndarray:
        rep = stub.Pull(ps_pb2.PullRequest(table=t, ids=encode_tensor(ids)), timeout=TIMEOUT_S)
        return decode_tensor(rep.rows, name="rows", expect_dtype="float32", expect_shape=(ids.shape[0], spec.dim))

    def g_push(t: str, ids: np.ndarray, g: np.ndarray, cp: np.ndarray, cn: np.ndarray, w: str, seq: int) -> int:
        req = ps_pb2.PushRequest(table=t, ids=encode_tensor(ids), grads=encode_tensor(g), c_pos=encode_tensor(cp),
                                 c_neg=encode_tensor(cn), worker_id=w, seq=seq)
        return stub.Push(req, timeout=TIMEOUT_S).status

    grpc_side = _Side()
    grpc_side.create, grpc_side.pull, grpc_side.push = g_create, g_pull, g_push
    grpc_side.drop = lambda t: stub.DropTable(ps_pb2.DropTableRequest(name=t), timeout=TIMEOUT_S)

    # Ray actor method calls on the same actor
    ray_side = _Side()
    ray_side.create = lambda t: ray.get(actor.create_table.remote(t, spec.dim, capacity_of(), "adagrad", 0.05,
                                                                  0.05, 1), timeout=TIMEOUT_S)
    ray_side.pull = lambda t, ids: ray.get(actor.pull.remote(t, ids), timeout=TIMEOUT_S)
    ray_side.push = lambda t, ids, g, cp, cn, w, seq: ray.get(actor.push.remote(t, ids, g, cp, cn, w, seq),
                                                              timeout=TIMEOUT_S)
    ray_side.drop = grpc_side.drop
    return {"in_process": local, "grpc": grpc_side, "ray": ray_side}


def bench_ps(spec: PsBenchSpec, address: str | None = None, progress: bool = True) -> dict[str, Any]:
    import grpc
    import ray
    from tqdm import tqdm

    from ps.actor import RayShardActor
    from shark.cluster import start_ray
    from shark.wire.v1 import ps_pb2, ps_pb2_grpc

    max_msg = max(64 << 20, 4 * spec.rows * (spec.dim * 4 + 16))
    handle = start_ray(address)
    actor = channel = None
    try:
        actor = RayShardActor.options(num_cpus=0).remote(0, 1, None, None, max_message_bytes=max_msg,
                                                         seq_window=max(4096, 2 * spec.calls))
        addr = ray.get(actor.address.remote(), timeout=120)
        info = ray.get(actor.info.remote(), timeout=TIMEOUT_S)
        opts = [("grpc.max_send_message_length", max_msg), ("grpc.max_receive_message_length", max_msg)]
        channel = grpc.insecure_channel(addr, options=opts)
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
        stub = ps_pb2_grpc.ParameterServerStub(channel)
        health = stub.Health(ps_pb2.HealthRequest(), timeout=TIMEOUT_S).status
        if health != ps_pb2.HealthResponse.SERVING:
            raise RuntimeError(f"shard at {addr} is not serving (status {health})")
        current = {"capacity": spec.rows}
        sides = _sides(actor, stub, spec, lambda: current["capacity"])
        times: dict[str, dict[str, dict[str, list[float]]]] = {
            v: {op: {s: [] for s in SIDES} for op in ("pull", "push")} for v in spec.variants}
        bar = tqdm(total=len(spec.variants) * spec.repeats * len(SIDES), desc="bench ps", unit="side",
                   file=sys.stderr, disable=not progress, leave=False)
        with bar:
            for variant in spec.variants:
                batches = _batches(spec, variant)
                current["capacity"] = batches.capacity
                for r in range(spec.repeats):
                    order = SIDES[r % 3:] + SIDES[:r % 3]
                    for side in order:
                        bar.set_postfix_str(f"{variant} {side} repeat {r + 1}/{spec.repeats}")
                        pull_s, push_s = _run_side(sides[side], f"bench-{variant}-{side}-{r}", batches, spec,
                                                   worker=f"bench-{side}-{r}")
                        times[variant]["pull"][side].append(pull_s)
                        times[variant]["push"][side].append(push_s)
                        bar.update()
    finally:
        if channel is not None:
            channel.close()  # before the server stops (no GOAWAY noise)
        if actor is not None:
            try:
                ray.get(actor.stop.remote(), timeout=TIMEOUT_S)
            finally:
                ray.kill(actor)
        handle.shutdown()
    return _summary(spec, times, info, handle.address, handle.started)


def _summary(spec: PsBenchSpec, times: dict[str, Any], info: dict[str, Any], ray_address: str,
             ray_started: bool) -> dict[str, Any]:
    variants: dict[str, Any] = {}
    for variant, ops in times.items():
        out: dict[str, Any] = {}
        for op, by_side in ops.items():
            med = {s: statistics.median(v) for s, v in by_side.items()}
            rate = {s: spec.rows * spec.calls / med[s] for s in SIDES}
            ms = {s: 1e3 * med[s] / spec.calls for s in SIDES}
            # What the transport adds to the store's own work (the in-process time of the same call).
            overhead = {s: max(ms[s] - ms["in_process"], 1e-9) for s in ("grpc", "ray")}
            out[op] = {"rows_per_second": {s: round(rate[s], 1) for s in SIDES},
                       "ms_per_call": {s: round(ms[s], 4) for s in SIDES},
                       "seconds": {s: [round(x, 4) for x in by_side[s]] for s in SIDES},
                       "ratio_grpc_over_ray": round(rate["grpc"] / rate["ray"], 3),
                       "ratio_in_process_over_grpc": round(rate["in_process"] / rate["grpc"], 3),
                       "transport_ms_per_call": {s: round(v, 4) for s, v in overhead.items()},
                       "ratio_ray_over_grpc_transport": round(overhead["ray"] / overhead["grpc"], 3)}
        variants[variant] = out
    ratios = [variants[v][op]["ratio_grpc_over_ray"] for v in variants for op in ("pull", "push")]
    return {
        "benchmark": "ps",
        "baseline": "Ray actor method calls (ray.get(actor.pull/push.remote)) to the same shard actor; "
                    "ceiling: in-process RowStore calls",
        "rows_per_call": spec.rows, "dim": spec.dim, "calls": spec.calls, "repeats": spec.repeats,
        "warmup_calls": spec.warmup_calls, "id_space": spec.id_space,
        "payload_bytes_per_call": {"pull_rows": spec.rows * spec.dim * 4, "pull_ids": spec.rows * 8,
                                   "push": spec.rows * (spec.dim * 4 + 8 + 4 + 4)},
        "client": "one thread, one call in flight; gRPC server: 4 threads in the actor",
        "cpu_count": os.cpu_count(),
        "shard": {"address": info["address"], "node_ip": info["node_ip"], "pid": info["pid"]},
        "ray": {"address": ray_address, "started_here": ray_started},
        "variants": variants,
        "target_grpc_over_ray": TARGET_GRPC_OVER_RAY,
        "min_ratio_grpc_over_ray": min(ratios),
        "target_met": min(ratios) >= TARGET_GRPC_OVER_RAY,
    }


def format_bench(result: dict[str, Any]) -> str:
    lines = [(f"bench ps: {result['rows_per_call']:,} rows x dim {result['dim']} per call "
              f"({result['payload_bytes_per_call']['pull_rows'] / 1024:,.0f} KB of rows), {result['calls']} calls x "
              f"{result['repeats']} repeats, one client thread; shard at {result['shard']['address']}"),
             f"{'variant':8}{'op':6}{'side':12}{'rows/s (median)':>18}{'ms/call':>10}"]
    for variant, ops in result["variants"].items():
        for op, r in ops.items():
            for side in SIDES:
                lines.append(f"{variant:8}{op:6}{side:12}{r['rows_per_second'][side]:>18,.0f}"
                             f"{r['ms_per_call'][side]:>10.3f}")
            lines.append(f"{'':14}ratios: grpc/ray {r['ratio_grpc_over_ray']:.2f}x, "
                         f"in-process/grpc {r['ratio_in_process_over_grpc']:.1f}x; transport ms/call (minus "
                         f"in-process): grpc {r['transport_ms_per_call']['grpc']:.3f}, "
                         f"ray {r['transport_ms_per_call']['ray']:.3f} ({r['ratio_ray_over_grpc_transport']:.2f}x)")
    verdict = "met" if result["target_met"] else "NOT met"
    lines.append(f"target grpc/ray >= {result['target_grpc_over_ray']:.1f}x on every line: {verdict} "
                 f"(lowest {result['min_ratio_grpc_over_ray']:.2f}x)")
    return "\n".join(lines)
