"""Wire requests -> store calls: the translation shared by the gRPC servicer and the push-log replay.

Pure (numpy, protobuf messages and the wire codec; no grpc): decoding validates every tensor before the store is
called, and the `apply_*` functions perform one mutation and say whether it changed anything (only changes are
logged, and a replayed record changes the store exactly as the original request did).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ps.store import InvalidRequest, PushPart, PushResult, RowStore, TableConfig, TableExists
from shark.wire.tensors import decode_tensor
from shark.wire.v1 import ps_pb2

_INT63 = (1 << 63) - 1

# Push-log record kinds (ps.wal): the serialized request follows.
KIND_CREATE, KIND_DROP, KIND_ASSIGN, KIND_PUSH = 1, 2, 3, 4


def worker_key(worker_id: str) -> int:
    """The wire's string worker_id -> the store's int worker id. blake2b-64 masked to 63 bits: stable across
    processes and Python versions (unlike hash()), and exact on any str (no NUL-stripping, unlike numpy bytes
    arrays). A collision of two incarnations (p ~ k^2 / 2^64) would only merge their seq windows."""
    if not worker_id:
        raise InvalidRequest("worker_id must be a non-empty string (pushes are idempotent per worker)")
    digest = hashlib.blake2b(worker_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _INT63


def _decode(msg: ps_pb2.Tensor, name: str, dtype: str, shape: tuple[int | None, ...], max_bytes: int) -> np.ndarray:
    return decode_tensor(msg, name=name, expect_dtype=dtype, expect_shape=shape, max_bytes=max_bytes)


_QUANT_FIELDS = {"alpha": "fq_alpha", "beta": "fq_beta", "t8": "fq_t8", "t16": "fq_t16",
                 "budget_bytes": "fq_budget_bytes", "budget_fraction": "fq_budget_fraction",
                 "t16_ratio": "fq_t16_ratio", "retier_every": "fq_retier_every", "mpe_low": "mpe_low",
                 "mpe_cache_fraction": "mpe_cache_fraction"}


def quant_config(cfg: TableConfig) -> ps_pb2.QuantConfig:
    """Every quantization field of cfg, explicitly (so the shard builds exactly this TableConfig)."""
    return ps_pb2.QuantConfig(mode=cfg.quant, **{wire: getattr(cfg, ours) for wire, ours in _QUANT_FIELDS.items()})


def create_table_request(cfg: TableConfig) -> ps_pb2.CreateTableRequest:
    """The CreateTable message for cfg; table_config() of it gives cfg back (a test checks the round trip)."""
    req = ps_pb2.CreateTableRequest(name=cfg.name, dim=cfg.dim, capacity=cfg.capacity, optimizer=cfg.optimizer,
                                    learning_rate=cfg.lr, init_scale=cfg.init_scale, eps=cfg.eps,
                                    rounding=cfg.rounding, seed=cfg.seed, beta1=cfg.beta1, beta2=cfg.beta2)
    if cfg.quant != "none":
        req.quant.CopyFrom(quant_config(cfg))
    return req


def table_config(request: ps_pb2.CreateTableRequest) -> TableConfig:
    # eps/beta1/beta2 0 and rounding "" (proto3 defaults, i.e. unset) leave the store's defaults.
    extra = {k: getattr(request, k) for k in ("eps", "rounding", "beta1", "beta2") if getattr(request, k)}
    if request.HasField("quant"):
        q = request.quant
        extra["quant"] = q.mode or "none"
        extra.update({ours: getattr(q, wire) for wire, ours in _QUANT_FIELDS.items() if q.HasField(wire)})
    return TableConfig(name=request.name, dim=request.dim, capacity=request.capacity, optimizer=request.optimizer,
                       lr=request.learning_rate, init_scale=request.init_scale, seed=request.seed, **extra)


def push_part(p: ps_pb2.PushRequest, max_bytes: int) -> PushPart:
    ids = _decode(p.ids, "ids", "int64", (None,), max_bytes)
    n = ids.shape[0]
    grads = _decode(p.grads, "grads", "float32", (n, None), max_bytes)  # dim is checked by the store
    c_pos = _decode(p.c_pos, "c_pos", "uint32", (n,), max_bytes)
    c_neg = _decode(p.c_neg, "c_neg", "uint32", (n,), max_bytes)
    return (p.table, ids, grads, c_pos, c_neg)


def push_many(request: ps_pb2.PushManyRequest, max_bytes: int) -> tuple[int, int, list[PushPart]]:
    """-> (worker key, seq, decoded parts); every part checked before anything is applied."""
    worker = worker_key(request.worker_id)
    for i, p in enumerate(request.parts):
        # A part naming another (worker_id, seq) would be applied under the wrong idempotency key.
        if (p.worker_id and p.worker_id != request.worker_id) or (p.seq and p.seq != request.seq):
            raise InvalidRequest(f"parts[{i}]: worker_id/seq must be unset or equal the request's")
    return worker, request.seq, [push_part(p, max_bytes) for p in request.parts]


def as_push_many(request: ps_pb2.PushRequest) -> ps_pb2.PushManyRequest:
    """A single-table Push as the one-part PushMany it is equivalent to (one log and replay path for both)."""
    return ps_pb2.PushManyRequest(parts=[request], worker_id=request.worker_id, seq=request.seq)


def assign_args(request: ps_pb2.AssignRequest, max_bytes: int) -> tuple[str, np.ndarray, np.ndarray]:
    ids = _decode(request.ids, "ids", "int64", (None,), max_bytes)
    rows = _decode(request.rows, "rows", "float32", (ids.shape[0], None), max_bytes)
    return request.table, ids, rows


def apply_create(store: RowStore, cfg: TableConfig) -> bool:
    """Create the table; False if an identical one exists (a safe retry); TableExists if a different one does."""
    if store.has_table(cfg.name):
        if store.config(cfg.name) == cfg:
            return False
        raise TableExists(f"table {cfg.name!r} exists with a different configuration")
    store.create_table(cfg)
    return True


def apply_drop(store: RowStore, name: str) -> bool:
    """Drop the table; False if it does not exist (an idempotent retry)."""
    if not store.has_table(name):
        return False
    store.drop_table(name)
    return True


def apply_push(store: RowStore, worker: int, seq: int, parts: list[PushPart]) -> PushResult:
    return store.push_many(parts, worker_id=worker, seq=seq)


def replay_record(store: RowStore, kind: int, payload: bytes, max_bytes: int) -> None:
    """Apply one push-log record to `store` as the original request was applied."""
    if kind == KIND_CREATE:
        apply_create(store, table_config(ps_pb2.CreateTableRequest.FromString(payload)))
    elif kind == KIND_DROP:
        apply_drop(store, ps_pb2.DropTableRequest.FromString(payload).name)
    elif kind == KIND_ASSIGN:
        store.assign(*assign_args(ps_pb2.AssignRequest.FromString(payload), max_bytes))
    elif kind == KIND_PUSH:
        apply_push(store, *push_many(ps_pb2.PushManyRequest.FromString(payload), max_bytes))
    else:
        raise InvalidRequest(f"unknown push-log record kind {kind}")
