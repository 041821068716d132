"""Property-based fuzzing of the PS servicer, in process (no network): every RPC either succeeds or ends with a
documented gRPC status, never another exception, and a rejected request leaves the store byte-identical (rows,
tiers, free-lists, optimizer state, priorities, idempotency state, growth slack, the id index).

Inputs: (a) random and mutated bytes parsed as each request type, and random messages built from the descriptors,
(b) structurally valid requests with one defect each (wrong dtype/shape/length, lying raw_size or lz4 payload,
NaN/Inf, unknown tables, out-of-range or duplicate ids, bad worker/seq), gradients and values of any float32 bits,
CreateTable of any fields, Restore of missing or corrupt checkpoints, (c) a (worker_id, seq) replayed with a
different payload, and random interleavings of good calls (pushes, drops, re-creations) and bad ones. An accepted
call must leave every table finite and restorable from its snapshot. The servicer is driven with a fake
ServicerContext whose abort() raises, as grpc's does.
"""

from __future__ import annotations

import copy
import functools
import math
import tempfile
from pathlib import Path
from typing import Any

import grpc
import lz4.block
import numpy as np
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ps import requests as rq
from ps.server import ParameterServerServicer
from ps.store import RowStore, TableConfig
from ps.store.snapshot import table_from_arrays, table_to_arrays
from shark.wire.tensors import DTYPES, decode_tensor, encode_tensor
from shark.wire.v1 import ps_pb2

S = grpc.StatusCode
# What a caller may legitimately be told (the servicer's _status_of); INTERNAL/UNKNOWN would be a bug of ours.
ALLOWED = {S.INVALID_ARGUMENT, S.NOT_FOUND, S.FAILED_PRECONDITION, S.ALREADY_EXISTS, S.RESOURCE_EXHAUSTED,
           S.OUT_OF_RANGE}
MAX_BYTES = 1 << 16  # the servicer's per-tensor limit here: "huge declared size" cases stay cheap
WINDOW = 8  # the store's seq window: "seq beyond the window" is easy to reach
# name -> (dim, capacity, config extras). An F-Q table that re-tiers every 2 pushes (rows in all three tiers), an
# fp32 Adagrad table (made tiered by a set_tiers, which leaves free slots), a uniform int8 SGD one, an Adam one.
TABLES: dict[str, tuple[int, int, dict[str, Any]]] = {
    "fq": (8, 64, {"quant": "fq", "fq_t8": 0.5, "fq_t16": 2.0, "fq_retier_every": 2, "fq_beta": 0.5, "seed": 1}),
    "f32": (4, 32, {"seed": 2}),
    "i8": (4, 32, {"optimizer": "sgd", "quant": "int8", "lr": 0.1, "seed": 3}),
    "adam": (3, 4, {"optimizer": "adam", "lr": 0.01}),
}
NAMES = sorted(TABLES)
_BASE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def fuzz(examples: int) -> settings:
    return settings(_BASE, max_examples=examples)


# --- the servicer under test -----------------------------------------------------------------------------------

class Aborted(Exception):
    """What grpc's ServicerContext.abort raises (it raises a bare Exception after setting the status)."""


class FakeContext:
    """The part of grpc.ServicerContext the servicer uses, recording the status it is given."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        if self.code is not None:
            raise AssertionError("abort called twice")
        self.code, self.details = code, details
        raise Aborted(details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def invocation_metadata(self) -> tuple:
        return ()

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float:
        return 60.0


def call(sv: ParameterServerServicer, method: str, request: Any) -> tuple[Any, grpc.StatusCode | None]:
    """-> (response, None) or (None, status code). Any exception but the context's abort fails the test."""
    ctx = FakeContext()
    try:
        reply = getattr(sv, method)(request, ctx)
    except Aborted:
        assert ctx.code in ALLOWED, f"{method} answered {ctx.code}: {ctx.details}"
        return None, ctx.code
    assert ctx.code in (None, S.OK), f"{method} set {ctx.code} without aborting"
    return reply, None


def t(a: Any) -> ps_pb2.Tensor:
    return encode_tensor(np.asarray(a))


def ids_t(ids: Any) -> ps_pb2.Tensor:
    return t(np.asarray(ids, np.int64))


def push_part(table: str, ids: Any, grads: np.ndarray, c_pos: Any = None, c_neg: Any = None) -> ps_pb2.PushRequest:
    n = len(ids)
    c_pos = np.ones(n, np.uint32) if c_pos is None else c_pos
    c_neg = np.zeros(n, np.uint32) if c_neg is None else c_neg
    return ps_pb2.PushRequest(table=table, ids=ids_t(ids), grads=t(np.asarray(grads, np.float32)),
                              c_pos=t(np.asarray(c_pos, np.uint32)), c_neg=t(np.asarray(c_neg, np.uint32)))


@functools.lru_cache(maxsize=1)
def _template() -> ParameterServerServicer:
    """Four tables with history: rows in every tier, optimizer state, F-Q priorities and seqs of two workers."""
    store = RowStore(seq_window=WINDOW)
    for name, (dim, cap, extra) in TABLES.items():
        store.create_table(TableConfig(name, dim=dim, capacity=cap, **extra))
    sv = ParameterServerServicer(store, max_tensor_bytes=MAX_BYTES)
    rng = np.random.default_rng(0)
    for seq in range(3):
        parts = []
        for name in NAMES:
            dim, cap, _ = TABLES[name]
            ids = rng.choice(cap, size=min(cap, 6), replace=False)
            parts.append(push_part(name, ids, rng.normal(size=(len(ids), dim)), rng.integers(0, 3, len(ids)),
                                   rng.integers(0, 3, len(ids))))
        for worker in ("w0", "w1"):
            _, code = call(sv, "PushMany", ps_pb2.PushManyRequest(parts=parts, worker_id=worker, seq=seq))
            assert code is None
    store.push("fq", np.arange(4), np.zeros((4, 8), np.float32), np.full(4, 9), np.zeros(4, np.int64), 7, 0)
    store.retier("fq")
    store.set_tiers("f32", store._tables["f32"].row_ids()[:2], np.array([1, 2]))
    store.push("fq", np.arange(2, 40, 3), np.ones((13, 8), np.float32), np.ones(13, np.int64), np.ones(13, np.int64),
               7, 1)  # priorities move on, and the push re-tiers
    tiers = store.tiers("fq", store._tables["fq"].row_ids())
    assert set(tiers.tolist()) == {0, 1, 2}, "the F-Q table should hold rows in all three tiers"
    return sv


def make_servicer() -> ParameterServerServicer:
    """A fresh servicer over a deep copy of the template's store (building it anew costs ~30x more)."""
    tmpl = _template()
    sv = ParameterServerServicer(copy.deepcopy(tmpl.store), max_tensor_bytes=MAX_BYTES)
    sv.changes, sv.push_ledger = tmpl.changes, copy.deepcopy(tmpl.push_ledger)
    return sv


# --- byte-exact state ------------------------------------------------------------------------------------------

def _freeze(obj: Any, seen: frozenset[int] = frozenset()) -> Any:
    """Every array (dtype, shape, bytes, capacity slack included) and scalar reachable from obj, as comparable
    values. Generic on purpose: state a future change adds to Table is covered without editing this test."""
    if isinstance(obj, np.ndarray):
        return ("nd", obj.dtype.str, obj.shape, obj.tobytes())
    if isinstance(obj, np.generic):
        return ("np", obj.dtype.str, obj.tobytes())
    if obj is None or isinstance(obj, (bool, int, str, bytes)):
        return obj
    if isinstance(obj, float):
        return ("f", repr(obj))  # NaN == NaN here
    if id(obj) in seen:
        return ("cycle", type(obj).__name__)
    seen = seen | {id(obj)}
    if isinstance(obj, dict):
        return ("dict", tuple(sorted((repr(k), _freeze(v, seen)) for k, v in obj.items())))
    if isinstance(obj, (set, frozenset)):
        return ("set", tuple(sorted(repr(x) for x in obj)))
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, tuple(_freeze(x, seen) for x in obj))
    if hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
        fields = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
        for k in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, k):
                fields[k] = getattr(obj, k)
        return (type(obj).__name__, _freeze(fields, seen))
    return ("repr", repr(obj))


def state(sv: ParameterServerServicer) -> tuple:
    """The store's whole state (raw internals and each table's snapshot arrays) and the servicer's change count."""
    snaps = {name: sv.store.snapshot(name) for name in sv.store.table_names()}
    return _freeze(sv.store), _freeze(snaps), sv.changes


def assert_restorable(sv: ParameterServerServicer) -> None:
    """Every table's snapshot passes restore validation and restores to the same snapshot (no corrupt state)."""
    for name in sv.store.table_names():
        t_ = sv.store._tables[name]
        arrays = table_to_arrays(t_)
        again = table_to_arrays(table_from_arrays(t_.cfg, arrays, sv.store.seq_window))
        assert _freeze(arrays) == _freeze(again), name


def check_call(sv: ParameterServerServicer, method: str, request: Any, must_fail: bool = False
               ) -> tuple[Any, grpc.StatusCode | None]:
    """Call; on rejection the state must be unchanged; on success the store must still be consistent."""
    before = state(sv)
    reply, code = call(sv, method, request)
    if code is not None:
        assert state(sv) == before, f"rejected {method} ({code}) changed the store"
    else:
        assert not must_fail, f"{method} accepted a malformed request: {request}"
        assert_restorable(sv)
    return reply, code


# --- (a) random and mutated bytes ------------------------------------------------------------------------------

REQUESTS: dict[str, type] = {
    "Pull": ps_pb2.PullRequest, "PullMany": ps_pb2.PullManyRequest, "Push": ps_pb2.PushRequest,
    "PushMany": ps_pb2.PushManyRequest, "Assign": ps_pb2.AssignRequest, "CreateTable": ps_pb2.CreateTableRequest,
    "DropTable": ps_pb2.DropTableRequest, "TableStats": ps_pb2.TableStatsRequest,
}


def seed_request(method: str) -> Any:
    """A valid request of each kind, to mutate."""
    fq_ids = [1, 5, 9]
    if method == "Pull":
        return ps_pb2.PullRequest(table="fq", ids=ids_t(fq_ids))
    if method == "PullMany":
        return ps_pb2.PullManyRequest(parts=[ps_pb2.PullRequest(table="fq", ids=ids_t(fq_ids)),
                                             ps_pb2.PullRequest(table="i8", ids=ids_t([0, 3]))])
    if method == "Push":
        req = push_part("fq", fq_ids, np.full((3, 8), 0.5))
        req.worker_id, req.seq = "w0", 3
        return req
    if method == "PushMany":
        return ps_pb2.PushManyRequest(parts=[push_part("fq", fq_ids, np.full((3, 8), 0.5)),
                                             push_part("f32", [2], np.ones((1, 4)))], worker_id="w1", seq=3)
    if method == "Assign":
        return ps_pb2.AssignRequest(table="adam", ids=ids_t([0, 2]), rows=t(np.ones((2, 3), np.float32)))
    if method == "CreateTable":
        return ps_pb2.CreateTableRequest(name="new", dim=4, capacity=16, optimizer="adagrad", learning_rate=0.1,
                                         quant=ps_pb2.QuantConfig(mode="fq", t8=0.1, t16=1.0))
    if method == "DropTable":
        return ps_pb2.DropTableRequest(name="i8")
    return ps_pb2.TableStatsRequest(name="fq")


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """data with a few random byte edits: overwrite, insert, delete, truncate."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "set" and buf:
            buf[i] = draw(st.integers(0, 255))
        elif op == "insert":
            buf[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and buf:
            del buf[i: i + draw(st.integers(1, 4))]
        elif op == "truncate":
            del buf[i:]
    return bytes(buf)


@st.composite
def wire_bytes(draw: st.DrawFn) -> tuple[str, bytes]:
    method = draw(st.sampled_from(sorted(REQUESTS)))
    if draw(st.integers(0, 3)) == 0:
        return method, draw(st.binary(max_size=300))
    return method, draw(mutated(seed_request(method).SerializeToString()))


@fuzz(150)
@given(wire_bytes())
def test_random_and_mutated_bytes_never_crash_and_rejections_change_nothing(case: tuple[str, bytes]) -> None:
    method, payload = case
    try:
        request = REQUESTS[method].FromString(payload)
    except DecodeError:
        return  # grpc answers INTERNAL ("could not deserialize") before the servicer runs; nothing to test here
    sv = make_servicer()
    check_call(sv, method, request)
    # The shard still serves a good request afterwards.
    _, code = call(sv, "Pull", ps_pb2.PullRequest(table="f32", ids=ids_t([0, 1]), read_only=True))
    assert code is None


_STRINGS = {"table": NAMES + ["", "nope"], "name": NAMES + ["", "new"], "worker_id": ["w0", "w1", ""],
            "dtype": sorted(DTYPES) + ["", "bool"], "optimizer": ["adagrad", "sgd", "adam", ""],
            "rounding": ["", "nearest", "stochastic"], "mode": ["", "none", "fq", "fp16", "int8", "mpe"],
            "mpe_low": ["int8", "fp16", ""]}
_INT_RANGES = {FD.TYPE_INT32: (-2**31, 2**31 - 1), FD.TYPE_INT64: (-2**63, 2**63 - 1), FD.TYPE_UINT64: (0, 2**64 - 1),
               FD.TYPE_UINT32: (0, 2**32 - 1), FD.TYPE_ENUM: (-2**31, 2**31 - 1)}


def _scalar(draw: st.DrawFn, f: Any) -> Any:
    """A random value for a scalar field, biased towards the values that reach deep into the servicer."""
    if f.type == FD.TYPE_STRING:
        return draw(st.one_of(st.sampled_from(_STRINGS.get(f.name, [""])), st.text(max_size=6)))
    if f.type == FD.TYPE_BYTES:
        return draw(st.binary(max_size=64))
    if f.type == FD.TYPE_BOOL:
        return draw(st.booleans())
    if f.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return draw(st.one_of(st.floats(), st.floats(0, 2)))
    lo, hi = _INT_RANGES[f.type]
    return draw(st.one_of(st.integers(max(lo, -2), 80), st.integers(lo, hi)))


@st.composite
def well_formed_tensor(draw: st.DrawFn, field: str) -> ps_pb2.Tensor:
    """A tensor the codec accepts, of the dtype and rank its field wants (ids small, so tables find them)."""
    n = draw(st.integers(0, 5))
    if field == "ids":
        return ids_t(draw(st.lists(st.integers(0, 70), min_size=n, max_size=n)))
    if field in ("c_pos", "c_neg"):
        return t(np.asarray(draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n)), np.uint32))
    dim = draw(st.sampled_from([3, 4, 8]))
    raw = draw(st.binary(min_size=4 * n * dim, max_size=4 * n * dim))  # any float32 bits: NaN, Inf, subnormals
    return t(np.frombuffer(raw, np.float32).reshape(n, dim))


@st.composite
def random_message(draw: st.DrawFn, cls: type, depth: int = 0) -> Any:
    """Any message of cls, built from its descriptor: each field set or not, to anything of its wire type."""
    msg = cls()
    for f in cls.DESCRIPTOR.fields:
        if not draw(st.integers(0, 3)):  # leave unset
            continue
        if f.message_type is not None and f.message_type.name == "Tensor" and draw(st.booleans()):
            getattr(msg, f.name).CopyFrom(draw(well_formed_tensor(f.name)))
        elif f.message_type is not None:
            if depth >= 3:
                continue
            sub = f.message_type._concrete_class
            if f.is_repeated:
                getattr(msg, f.name).extend(draw(st.lists(random_message(sub, depth + 1), max_size=3)))
            else:
                getattr(msg, f.name).CopyFrom(draw(random_message(sub, depth + 1)))
        elif f.is_repeated:
            getattr(msg, f.name).extend([_scalar(draw, f) for _ in range(draw(st.integers(0, 3)))])
        else:
            setattr(msg, f.name, _scalar(draw, f))
    return msg


@fuzz(150)
@given(st.sampled_from(sorted(REQUESTS)).flatmap(lambda m: st.tuples(st.just(m), random_message(REQUESTS[m]))))
def test_random_messages_never_crash_and_rejections_change_nothing(case: tuple[str, Any]) -> None:
    method, request = case
    check_call(make_servicer(), method, request)


# --- (b) structurally valid requests, one defect each ----------------------------------------------------------

TENSOR_DEFECTS = ["dtype_same_size", "dtype_unknown", "extra_dim", "negative_dim", "huge_shape", "overflow_shape",
                  "raw_size_lie", "data_short", "data_long", "lz4_declares_more", "lz4_declares_less",
                  "lz4_garbage", "unknown_compression", "missing", "one_more", "one_less"]
_SAME_SIZE = {"int64": "float64", "float32": "int32", "uint32": "float32", "float64": "int64"}


def break_tensor(msg: ps_pb2.Tensor, defect: str, draw: st.DrawFn) -> ps_pb2.Tensor:
    """A copy of a valid, non-empty tensor message with one defect the codec (or the store) must refuse."""
    a = decode_tensor(msg)
    out = ps_pb2.Tensor()
    out.CopyFrom(msg)
    item = a.dtype.itemsize
    if defect == "dtype_same_size":  # bytes still add up: only the dtype check can catch it
        out.dtype = _SAME_SIZE[msg.dtype]
    elif defect == "dtype_unknown":
        out.dtype = draw(st.sampled_from(["", "bool", "object", "complex64", "<f4", "float32 ", "FLOAT32"]))
    elif defect == "extra_dim":
        out.shape.append(1)
    elif defect == "negative_dim":
        out.shape[0] = -out.shape[0]
    elif defect == "huge_shape":  # raw_size consistent, far beyond the limit: refused before any allocation
        out.shape[0] = draw(st.sampled_from([MAX_BYTES, 2**40, 2**62]))
        out.raw_size = min(math.prod(out.shape) * item, 2**63 - 1)  # int64 on the wire
    elif defect == "overflow_shape":  # the product overflows int64
        out.shape[:] = [2**62, 2**62] + list(msg.shape[1:])
        out.raw_size = 0
    elif defect == "raw_size_lie":
        out.raw_size = msg.raw_size + draw(st.sampled_from([-item, item, 1, -1, 2**40]))
    elif defect == "data_short":
        out.data = msg.data[: -draw(st.integers(1, item))]
    elif defect == "data_long":
        out.data = msg.data + b"\0" * draw(st.integers(1, item))
    elif defect in ("lz4_declares_more", "lz4_declares_less"):
        # A real lz4 block of the array's bytes, with shape/raw_size describing one more or one fewer row.
        out.data = lz4.block.compress(a.tobytes(), store_size=False)
        out.compression = ps_pb2.COMPRESSION_LZ4
        out.shape[0] = msg.shape[0] + (1 if defect == "lz4_declares_more" else -1)
        out.raw_size = msg.raw_size // msg.shape[0] * out.shape[0]
    elif defect == "lz4_garbage":
        out.data = draw(st.binary(min_size=0, max_size=64))
        out.compression = ps_pb2.COMPRESSION_LZ4
    elif defect == "unknown_compression":
        out.compression = draw(st.sampled_from([2, 7, 2**31 - 1, -1]))
    elif defect == "missing":
        out = ps_pb2.Tensor()
    elif defect in ("one_more", "one_less"):  # well-formed, but the wrong length for its request
        k = a.shape[0] + (1 if defect == "one_more" else -1)
        out = encode_tensor(np.resize(a, (k,) + a.shape[1:]))
    return out


@st.composite
def good_push_arrays(draw: st.DrawFn, table: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A valid push for table: ids (duplicates allowed), moderate gradients, any uint32 counts."""
    dim, cap, _ = TABLES[table]
    n = draw(st.integers(1, min(cap, 6)))
    ids = np.asarray(draw(st.lists(st.integers(0, cap - 1), min_size=n, max_size=n)), np.int64)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))  # values from a seed: cheap to generate
    grads = rng.normal(0, draw(st.sampled_from([1e-3, 1.0, 1e3])), size=(n, dim)).astype(np.float32)
    return ids, grads, rng.integers(0, 2**32, n, dtype=np.uint32), rng.integers(0, 2**32, n, dtype=np.uint32)


VALUE_DEFECTS = ["nan", "inf", "id_at_capacity", "id_negative", "id_huge", "unknown_table", "empty_table"]
PUSH_DEFECTS = VALUE_DEFECTS + ["worker_empty", "seq_2_63", "seq_max", "seq_beyond_window", "part_worker_differs",
                                "part_seq_differs", "table_twice"]


def _value_defect(part: ps_pb2.PushRequest | ps_pb2.AssignRequest | ps_pb2.PullRequest, defect: str,
                  draw: st.DrawFn) -> None:
    ids = decode_tensor(part.ids).copy()
    i = draw(st.integers(0, ids.shape[0] - 1))
    field = "grads" if isinstance(part, ps_pb2.PushRequest) else "rows"
    if defect in ("nan", "inf"):
        v = decode_tensor(getattr(part, field)).copy()
        v[i, draw(st.integers(0, v.shape[1] - 1))] = np.nan if defect == "nan" else draw(
            st.sampled_from([np.inf, -np.inf]))
        getattr(part, field).CopyFrom(t(v))
    elif defect.startswith("id_"):
        ids[i] = {"id_at_capacity": TABLES[part.table][1], "id_negative": draw(st.sampled_from([-1, -2**63])),
                  "id_huge": draw(st.sampled_from([2**31, 2**62, 2**63 - 1]))}[defect]
        part.ids.CopyFrom(ids_t(ids))
    elif defect == "unknown_table":
        part.table = draw(st.sampled_from(["nope", "FQ", "fq ", "f32\0", "é"]))
    elif defect == "empty_table":
        part.table = ""


@st.composite
def bad_push(draw: st.DrawFn) -> tuple[str, Any]:
    """A Push or PushMany (worker w0, next seq 3) of good parts, one of which (or the envelope) has a defect."""
    single = draw(st.integers(0, 2)) == 0  # a Push: one part, which is also the envelope
    tables = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=1 if single else 4, unique=True))
    parts = [push_part(name, *draw(good_push_arrays(name))) for name in tables]
    victim = draw(st.integers(0, len(parts) - 1))
    worker, seq = "w0", 3
    if draw(st.booleans()):
        field = draw(st.sampled_from(["ids", "grads", "c_pos", "c_neg"]))
        defect = draw(st.sampled_from(TENSOR_DEFECTS))
        getattr(parts[victim], field).CopyFrom(break_tensor(getattr(parts[victim], field), defect, draw))
    else:
        envelope_only = ("part_worker_differs", "part_seq_differs", "table_twice")
        defect = draw(st.sampled_from([d for d in PUSH_DEFECTS if not (single and d in envelope_only)]))
        if defect in VALUE_DEFECTS:
            _value_defect(parts[victim], defect, draw)
        elif defect == "worker_empty":
            worker = ""
        elif defect == "seq_2_63":
            seq = 2**63
        elif defect == "seq_max":
            seq = 2**64 - 1
        elif defect == "seq_beyond_window":
            seq = 2 + WINDOW + draw(st.integers(1, 100))  # w0's high-water mark is 2
        elif defect == "part_worker_differs":
            parts[victim].worker_id = "w1"
        elif defect == "part_seq_differs":
            parts[victim].seq = 4
        elif defect == "table_twice":
            parts.append(push_part(tables[0], *draw(good_push_arrays(tables[0]))))
    if single:
        parts[0].worker_id, parts[0].seq = worker, seq
        return "Push", parts[0]
    return "PushMany", ps_pb2.PushManyRequest(parts=parts, worker_id=worker, seq=seq)


@st.composite
def bad_pull(draw: st.DrawFn) -> tuple[str, Any]:
    tables = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    stored = draw(st.booleans())
    parts = []
    for name in tables:
        cap = TABLES[name][1]
        ids = draw(st.lists(st.integers(0, cap - 1), min_size=1, max_size=6, unique=stored))
        parts.append(ps_pb2.PullRequest(table=name, ids=ids_t(ids), read_only=draw(st.booleans()),
                                        stored_precision=stored))
    victim = draw(st.integers(0, len(parts) - 1))
    defects = (["tensor"] + VALUE_DEFECTS[2:] + ["table_twice", "mixed_precision"]
               + (["duplicate_stored_ids"] if stored else []))
    defect = draw(st.sampled_from(defects))
    if defect == "tensor":
        parts[victim].ids.CopyFrom(break_tensor(parts[victim].ids, draw(st.sampled_from(
            [d for d in TENSOR_DEFECTS if d not in ("one_more", "one_less")])), draw))
    elif defect in VALUE_DEFECTS:
        _value_defect(parts[victim], defect, draw)
    elif defect == "table_twice":
        parts.append(ps_pb2.PullRequest(table=tables[0], ids=ids_t([0]), stored_precision=stored))
    elif defect == "mixed_precision":
        parts.append(ps_pb2.PullRequest(table="missing-or-not", ids=ids_t([0]), stored_precision=not stored))
        if len(tables) < len(NAMES):  # a real table, so only the precision mix is wrong
            parts[-1].table = next(n for n in NAMES if n not in tables)
    elif defect == "duplicate_stored_ids":
        ids = decode_tensor(parts[victim].ids)
        parts[victim].ids.CopyFrom(ids_t(np.concatenate([ids, ids[:1]])))
    if len(parts) == 1 and draw(st.booleans()):
        return "Pull", parts[0]
    return "PullMany", ps_pb2.PullManyRequest(parts=parts)


@st.composite
def bad_assign(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(NAMES))
    dim, cap, _ = TABLES[name]
    ids = draw(st.lists(st.integers(0, cap - 1), min_size=1, max_size=min(cap, 5), unique=True))
    rows = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).uniform(-2, 2, (len(ids), dim)).astype(np.float32)
    req = ps_pb2.AssignRequest(table=name, ids=ids_t(ids), rows=t(rows))
    defect = draw(st.sampled_from(["tensor", "duplicate_ids", "wrong_dim"] + VALUE_DEFECTS))
    if defect == "tensor":
        field = draw(st.sampled_from(["ids", "rows"]))
        getattr(req, field).CopyFrom(break_tensor(getattr(req, field), draw(st.sampled_from(TENSOR_DEFECTS)), draw))
    elif defect == "duplicate_ids":
        req.ids.CopyFrom(ids_t(ids + ids[:1]))
        req.rows.CopyFrom(t(np.concatenate([rows, rows[:1]])))
    elif defect == "wrong_dim":
        req.rows.CopyFrom(t(np.ones((len(ids), dim + draw(st.sampled_from([-1, 1]))), np.float32)))
    else:
        _value_defect(req, defect, draw)
    return "Assign", req


@fuzz(200)
@given(st.one_of(bad_push(), bad_pull(), bad_assign()))
def test_malformed_requests_are_rejected_with_a_documented_code_and_change_nothing(case: tuple[str, Any]) -> None:
    method, request = case
    check_call(make_servicer(), method, request, must_fail=True)


@st.composite
def any_float32(draw: st.DrawFn, shape: tuple[int, int]) -> np.ndarray:
    """Any float32 bit patterns (NaN, Inf, subnormals, +-3e38), or moderate values scaled by a power of two."""
    n = shape[0] * shape[1]
    if draw(st.booleans()):
        return np.frombuffer(draw(st.binary(min_size=4 * n, max_size=4 * n)), np.float32).reshape(shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    with np.errstate(over="ignore"):  # beyond float32's range is Inf, which is one of the cases
        return (rng.normal(size=shape) * 2.0 ** draw(st.integers(-20, 127))).astype(np.float32)


@fuzz(80)
@given(st.data())
def test_pushes_and_assigns_of_any_float_values_never_leave_non_finite_state(data: st.DataObject) -> None:
    """Gradients and assigned values of any magnitude: each call is refused (and changes nothing) or applied, and
    then every row, optimizer state and priority is finite, so the shard's checkpoints stay restorable."""
    sv = make_servicer()
    for seq in range(3, 3 + data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(NAMES))
        dim, cap, _ = TABLES[name]
        ids = data.draw(st.lists(st.integers(0, cap - 1), min_size=1, max_size=min(cap, 5), unique=True))
        values = data.draw(any_float32((len(ids), dim)))
        if data.draw(st.booleans()):
            req = ps_pb2.AssignRequest(table=name, ids=ids_t(ids), rows=t(values))
            check_call(sv, "Assign", req)
        else:
            req = push_part(name, ids, values)
            req.worker_id, req.seq = "w0", seq
            check_call(sv, "Push", req)  # on success: assert_restorable, i.e. everything finite and consistent


def test_finite_but_overflowing_gradients_and_scales_are_refused() -> None:
    """Regressions the fuzzing found: |g| ~ 1e20 (finite) made Adagrad's accumulator Inf, and a CreateTable with
    learning_rate 1e30 or init_scale 1e300 wrote Inf rows; both left checkpoints that could not be restored."""
    sv = make_servicer()
    big = push_part("f32", [0, 1], np.full((2, 4), 1e20, np.float32))
    big.worker_id, big.seq = "w0", 3
    check_call(sv, "Push", big, must_fail=True)
    assert "too large" in details_of(sv, "Push", big)
    ok = push_part("f32", [0, 1], np.full((2, 4), 1e6, np.float32))  # large, but far from overflowing
    ok.worker_id, ok.seq = "w0", 3
    assert check_call(sv, "Push", ok)[1] is None
    for field, value in (("learning_rate", 1e30), ("init_scale", 1e300)):
        req = ps_pb2.CreateTableRequest(name="huge", dim=2, capacity=4, optimizer="sgd", **{field: value})
        assert check_call(sv, "CreateTable", req, must_fail=True)[1] == S.INVALID_ARGUMENT


def details_of(sv: ParameterServerServicer, method: str, request: Any) -> str:
    """The details of the status a (failing) call ends with."""
    ctx = FakeContext()
    try:
        getattr(sv, method)(request, ctx)
    except Aborted:
        return ctx.details
    raise AssertionError(f"{method} succeeded")


# --- (c) a (worker_id, seq) replayed with a different payload ----------------------------------------------------

@fuzz(60)
@given(st.data())
def test_duplicate_seq_with_a_different_payload_is_a_duplicate_and_changes_nothing(data: st.DataObject) -> None:
    sv = make_servicer()
    draw = data.draw
    tables = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    first = ps_pb2.PushManyRequest(parts=[push_part(n, *draw(good_push_arrays(n))) for n in tables],
                                   worker_id="w0", seq=3)
    reply, code = call(sv, "PushMany", first)
    assert code is None and reply.status == ps_pb2.PushResponse.STATUS_APPLIED
    after_first = state(sv)
    # Any subset of the same tables, new ids/grads/counts; the seq just applied or an older one (below hw).
    again = draw(st.lists(st.sampled_from(tables), min_size=1, max_size=len(tables), unique=True))
    seq = draw(st.sampled_from([3, 0, 1, 2]))
    parts = [push_part(n, *draw(good_push_arrays(n))) for n in again]
    if len(parts) == 1 and draw(st.booleans()):
        parts[0].worker_id, parts[0].seq = "w0", seq
        method, req = "Push", parts[0]
    else:
        method, req = "PushMany", ps_pb2.PushManyRequest(parts=parts, worker_id="w0", seq=seq)
    reply, code = call(sv, method, req)
    assert code is None and reply.status == ps_pb2.PushResponse.STATUS_DUPLICATE
    assert state(sv) == after_first
    assert sv.push_ledger["w0"] == [4, 1]  # three setup pushes and `first` applied; this one a duplicate
    # A replay whose payload is also malformed changes nothing either (rejected, or answered as a duplicate).
    bad = push_part(again[0], *draw(good_push_arrays(again[0])))
    bad.grads.CopyFrom(break_tensor(bad.grads, draw(st.sampled_from(TENSOR_DEFECTS)), draw))
    check_call(sv, "PushMany", ps_pb2.PushManyRequest(parts=[bad], worker_id="w0", seq=seq))
    assert state(sv) == after_first


# --- tables: CreateTable / DropTable / TableStats / Restore ------------------------------------------------------

def mostly(valid: st.SearchStrategy, wild: st.SearchStrategy) -> st.SearchStrategy:
    """valid nine times in ten: each field of a request is usually sane, so some requests pass validation."""
    return st.integers(0, 9).flatmap(lambda k: wild if k == 0 else valid)


_WILD_FLOAT = st.one_of(st.floats(), st.sampled_from([-0.1, 1e30, 1e300, 2.0**49]))
_RATE = mostly(st.floats(0, 1, exclude_max=True), _WILD_FLOAT)


@st.composite
def create_requests(draw: st.DrawFn) -> ps_pb2.CreateTableRequest:
    req = ps_pb2.CreateTableRequest(
        name=draw(mostly(st.sampled_from(["new", "t2", "t3", "f32", "fq"]), st.text(max_size=8))),
        dim=draw(mostly(st.integers(1, 9), st.integers(-2**31, 2**31 - 1))),
        capacity=draw(mostly(st.integers(1, 100), st.integers(-2**63, 2**63 - 1))),
        optimizer=draw(mostly(st.sampled_from(["adagrad", "sgd", "adam"]), st.sampled_from(["", "Adam", "x"]))),
        learning_rate=draw(_RATE), init_scale=draw(_RATE), eps=draw(mostly(st.just(0.0), _WILD_FLOAT)),
        rounding=draw(mostly(st.sampled_from(["", "nearest", "stochastic"]), st.text(max_size=3))),
        seed=draw(st.integers(0, 2**64 - 1)), beta1=draw(_RATE), beta2=draw(_RATE))
    if draw(st.booleans()):
        q = req.quant
        q.mode = draw(mostly(st.sampled_from(["", "none", "fq", "fp16", "int8", "mpe"]), st.text(max_size=3)))
        for f in ("alpha", "beta", "t8", "t16", "budget_fraction", "t16_ratio"):
            if draw(st.integers(0, 3)) == 0:
                setattr(q, f, draw(_RATE))
        for f in ("budget_bytes", "retier_every"):
            if draw(st.integers(0, 3)) == 0:
                setattr(q, f, draw(mostly(st.integers(1, 1000), st.integers(-2**63, 2**63 - 1))))
    return req


@fuzz(120)
@given(create_requests())
def test_create_table_of_any_fields_creates_exactly_it_or_changes_nothing(req: ps_pb2.CreateTableRequest) -> None:
    sv = make_servicer()
    existed = sv.store.has_table(req.name)
    reply, code = check_call(sv, "CreateTable", req)
    if code is None:
        assert reply.created != existed
        cfg = sv.store.config(req.name)
        assert (cfg.dim, cfg.capacity) == (req.dim, req.capacity)
        # A created table serves pulls (creating rows) and pushes, and its state stays finite and restorable.
        ids = np.unique(np.array([0, cfg.capacity - 1], np.int64))  # one id when capacity is 1
        _, code = check_call(sv, "Pull", ps_pb2.PullRequest(table=req.name, ids=ids_t(ids)))
        assert code is None
        push = push_part(req.name, ids, np.ones((ids.size, cfg.dim), np.float32))
        push.worker_id = "w9"
        _, code = check_call(sv, "Push", push)
        assert code is None
    elif existed:
        assert code in (S.ALREADY_EXISTS, S.INVALID_ARGUMENT)


@fuzz(40)
@given(name=st.one_of(st.sampled_from(["", "nope", "FQ"]), st.text(max_size=6)).filter(lambda s: s not in TABLES))
def test_drop_and_stats_of_unknown_tables_change_nothing(name: str) -> None:
    sv = make_servicer()
    before = state(sv)
    reply, code = call(sv, "DropTable", ps_pb2.DropTableRequest(name=name))
    assert code is None and not reply.dropped  # an idempotent retry
    assert state(sv) == before
    reply, code = check_call(sv, "TableStats", ps_pb2.TableStatsRequest(name=name))
    assert (code is None) == (name == "") and state(sv) == before


@fuzz(20)
@given(tag=st.one_of(st.sampled_from(["", ".", "..", "../x", "a/b", "ok", "ok\0", "-x"]), st.text(max_size=10)),
       flip=st.integers(0, 2**20))
def test_restore_of_a_missing_bad_or_corrupt_checkpoint_changes_nothing(tag: str, flip: int) -> None:
    """Restore verifies everything before swapping the store; a Checkpoint only reads it."""
    sv = make_servicer()
    with tempfile.TemporaryDirectory() as d:
        _, code = check_call(sv, "Checkpoint", ps_pb2.CheckpointRequest(directory=d, tag="good"))
        assert code is None
        # Corrupt one byte of one file of the good checkpoint, then ask for it and for random tags.
        files = sorted(p for p in Path(d, "good").rglob("*") if p.is_file())
        victim = files[flip % len(files)]
        raw = bytearray(victim.read_bytes())
        raw[flip % len(raw)] ^= 0xFF
        victim.write_bytes(bytes(raw))
        for t_ in ("good", tag):  # the corrupt checkpoint, and a tag that is malformed or names nothing
            check_call(sv, "Restore", ps_pb2.RestoreRequest(directory=d, tag=t_), must_fail=True)
        # A Checkpoint under any tag is refused or written, and never changes the store.
        before = state(sv)
        call(sv, "Checkpoint", ps_pb2.CheckpointRequest(directory=d, tag=tag))
        assert state(sv)[:2] == before[:2]


# --- random interleavings --------------------------------------------------------------------------------------

GOOD_OPS = st.tuples(st.sampled_from(["push", "drop", "create"]), st.sampled_from(NAMES))


@fuzz(25)
@given(st.lists(st.one_of(bad_push(), bad_pull(), bad_assign(), GOOD_OPS), min_size=2, max_size=10))
def test_interleaved_good_and_bad_calls(calls: list[tuple[str, Any]]) -> None:
    """Bad calls between good ones (pushes, table drops and re-creations) change nothing: the store ends as if only
    the good calls had been made. Good pushes come from worker "g"; the bad ones are w0's, whose seqs they cannot
    disturb."""
    sv, ref = make_servicer(), make_servicer()
    seq = 0
    for method, request in calls:
        if method not in ("push", "drop", "create"):
            check_call(sv, method, request, must_fail=True)
            continue
        dim, cap, extra = TABLES[request]
        if method == "push":
            ids = np.arange(0, cap, 3)
            method, req = "PushMany", ps_pb2.PushManyRequest(
                parts=[push_part(request, ids, np.full((len(ids), dim), 0.25))], worker_id="g", seq=seq)
            seq += 1
        elif method == "drop":
            method, req = "DropTable", ps_pb2.DropTableRequest(name=request)
        else:
            method, req = "CreateTable", rq.create_table_request(TableConfig(request, dim=dim, capacity=cap, **extra))
        got, want = call(sv, method, req), call(ref, method, req)
        assert got == want and got[1] in (None, S.NOT_FOUND)  # NOT_FOUND: a push to a dropped table
    assert state(sv) == state(ref)
