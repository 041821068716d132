"""Per-shard request building and response reassembly: routing + wire tensors, vectorised per table.

A pull sends each shard only the tables it owns rows of (a table with no ids at all still goes to shard 0, so the
shard validates the table and reports its dim). A push sends EVERY table's part to EVERY shard, empty where the
shard owns none of the rows: a shard tracks (worker_id, seq) per table, and a seq it never saw would stay a gap
below which its idempotency window never advances (after `seq_window` steps it would refuse the worker's pushes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from shark.quant.stored import TIER_ABSENT, StoredRows, check_stored, decode_stored
from shark.wire.tensors import DEFAULT_MAX_BYTES, WireError, decode_tensor, encode_tensor
from shark.wire.v1 import ps_pb2
from worker.client.routing import ShardRouter

__all__ = ["PullPlan", "as_unique_ids", "assemble_pull", "assemble_tiers", "assign_requests", "plan_pull",
           "push_requests"]

PushPart = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # ids, grads, c_pos, c_neg


@dataclass
class PullPlan:
    requests: dict[int, ps_pb2.PullManyRequest]   # shard -> its request (only shards with parts)
    positions: dict[int, list[tuple[str, np.ndarray]]]  # shard -> per part: (table, positions in the input)
    sizes: dict[str, int]                          # table -> number of ids asked for


def as_unique_ids(ids: object, what: str) -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim != 1 or (a.dtype.kind not in "iu" and a.size):
        raise ValueError(f"{what}: ids must be a 1-D integer array, got dtype {a.dtype} shape {a.shape}")
    return a.astype(np.int64, copy=False)


def plan_pull(router: ShardRouter, ids_by_table: dict[str, np.ndarray], read_only: bool,
              stored_precision: bool = False) -> PullPlan:
    plan = PullPlan({}, {}, {})
    for table, raw in ids_by_table.items():
        ids = as_unique_ids(raw, table)
        plan.sizes[table] = ids.shape[0]
        splits = router.split(table, ids) if ids.shape[0] else [(ids, ids)]  # empty: ask shard 0 for the dim
        for shard, (pos, part) in enumerate(splits):
            if part.shape[0] == 0 and ids.shape[0]:
                continue
            req = plan.requests.setdefault(shard, ps_pb2.PullManyRequest())
            req.parts.add(table=table, ids=encode_tensor(part), read_only=read_only,
                          stored_precision=stored_precision)
            plan.positions.setdefault(shard, []).append((table, pos))
    return plan


def assemble_pull(plan: PullPlan, replies: dict[int, ps_pb2.PullManyResponse],
                  max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
    """Scatter every shard's rows back into (n, dim) float32 arrays in the input order of each table.
    Raises WireError if a reply is malformed (wrong part count, dtype, shape, or dims that disagree)."""
    out: dict[str, np.ndarray] = {}
    for table, pos, part in _reply_parts(plan, replies):
        if part.HasField("tiers"):  # stored precision: decode exactly as the shard reads its pools
            rows = _decode_stored(part, table, pos.shape[0], max_bytes)
        else:
            rows = decode_tensor(part.rows, name=f"{table} rows", expect_dtype="float32",
                                 expect_shape=(pos.shape[0], None), max_bytes=max_bytes)
        dest = out.get(table)
        if dest is None:
            dest = out[table] = np.empty((plan.sizes[table], rows.shape[1]), dtype=np.float32)
        elif dest.shape[1] != rows.shape[1]:
            raise WireError(f"{table}: shards disagree on dim ({dest.shape[1]} vs {rows.shape[1]})")
        dest[pos] = rows
    return out


def assemble_tiers(plan: PullPlan, replies: dict[int, ps_pb2.PullManyResponse],
                   max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
    """From stored-precision replies, each asked id's tier in the input order: (n,) uint8 per table, TIER_FP32 /
    TIER_FP16 / TIER_INT8, or TIER_ABSENT for an id not in the store (read-only pulls)."""
    out: dict[str, np.ndarray] = {}
    for table, pos, part in _reply_parts(plan, replies):
        if not part.HasField("tiers"):
            raise WireError(f"{table}: the reply carries no tiers (not a stored-precision pull)")
        tiers = decode_tensor(part.tiers, name=f"{table} tiers", expect_dtype="uint8",
                              expect_shape=(pos.shape[0],), max_bytes=max_bytes)
        if tiers.size and int(tiers.max()) > TIER_ABSENT:
            raise WireError(f"{table}: tier codes must be in 0..{TIER_ABSENT}")
        out.setdefault(table, np.empty(plan.sizes[table], np.uint8))[pos] = tiers
    return out


def _reply_parts(plan: PullPlan, replies: dict[int, ps_pb2.PullManyResponse],
                 ) -> Iterator[tuple[str, np.ndarray, ps_pb2.PullResponse]]:
    """(table, positions in the input, reply part) for every part asked of every shard; a reply with another
    part count is refused."""
    for shard, parts in plan.positions.items():
        reply = replies[shard]
        if len(reply.parts) != len(parts):
            raise WireError(f"shard {shard}: {len(reply.parts)} parts in the reply, {len(parts)} asked for")
        for (table, pos), part in zip(parts, reply.parts):
            yield table, pos, part


def _decode_stored(part: ps_pb2.PullResponse, table: str, n: int, max_bytes: int) -> np.ndarray:
    def dec(msg: ps_pb2.Tensor, what: str, dtype: str, ndim: int) -> np.ndarray:
        return decode_tensor(msg, name=f"{table} {what}", expect_dtype=dtype, expect_ndim=ndim, max_bytes=max_bytes)

    packed = StoredRows(tiers=dec(part.tiers, "tiers", "uint8", 1), fp32=dec(part.rows, "rows", "float32", 2),
                        fp16=dec(part.rows_fp16, "fp16 rows", "float16", 2),
                        int8=dec(part.rows_int8, "int8 rows", "int8", 2),
                        scales=dec(part.int8_scales, "int8 scales", "float32", 1))
    try:
        check_stored(packed, n)
    except ValueError as exc:
        raise WireError(f"{table}: {exc}") from None
    return decode_stored(packed)


def push_requests(router: ShardRouter, parts: dict[str, PushPart], worker_id: str,
                  seq: int) -> list[ps_pb2.PushManyRequest]:
    """One PushManyRequest per shard, each with a part for every table (see the module docstring)."""
    reqs = [ps_pb2.PushManyRequest(worker_id=worker_id, seq=seq) for _ in range(router.num_shards)]
    for table, (raw_ids, grads, c_pos, c_neg) in parts.items():
        ids = as_unique_ids(raw_ids, table)
        n = ids.shape[0]
        g = np.asarray(grads, dtype=np.float32)
        cp, cn = np.asarray(c_pos), np.asarray(c_neg)
        if g.ndim != 2 or g.shape[0] != n or cp.shape != (n,) or cn.shape != (n,):
            raise ValueError(f"{table}: push of {n} ids needs grads (n, dim) and c_pos/c_neg (n,), got "
                             f"{g.shape}, {cp.shape}, {cn.shape}")
        if (cp.dtype.kind not in "iu" and cp.size) or (cn.dtype.kind not in "iu" and cn.size):
            raise ValueError(f"{table}: c_pos/c_neg must be integer counts")
        for c in (cp, cn):
            if c.dtype != np.uint32 and c.size and (int(c.min()) < 0 or int(c.max()) >= 2**32):
                raise ValueError(f"{table}: c_pos/c_neg must lie in [0, 2^32)")
        cp, cn = cp.astype(np.uint32, copy=False), cn.astype(np.uint32, copy=False)
        for shard, (pos, part_ids) in enumerate(router.split(table, ids)):
            reqs[shard].parts.add(table=table, ids=encode_tensor(part_ids), grads=encode_tensor(g[pos]),
                                  c_pos=encode_tensor(cp[pos]), c_neg=encode_tensor(cn[pos]))
    return reqs


def assign_requests(router: ShardRouter, table: str, ids: object, rows: object) -> dict[int, ps_pb2.AssignRequest]:
    a = as_unique_ids(ids, table)
    r = np.asarray(rows, dtype=np.float32)
    if r.ndim != 2 or r.shape[0] != a.shape[0]:
        raise ValueError(f"{table}: assign of {a.shape[0]} ids needs rows (n, dim), got {r.shape}")
    return {shard: ps_pb2.AssignRequest(table=table, ids=encode_tensor(part), rows=encode_tensor(r[pos]))
            for shard, (pos, part) in enumerate(router.split(table, a)) if part.shape[0]}
