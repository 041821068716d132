"""ParameterServerServicer: translation only. Wire tensors -> numpy (validated by the codec), store exceptions ->
gRPC status codes, numpy -> wire tensors. All row logic and validation live in ps.store and shark.wire.tensors."""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

import grpc
import numpy as np

from ps import requests as rq
from ps.checkpoint import (
    MANIFEST_NAME,
    CheckpointError,
    load_manifest,
    read_shard_checkpoint,
    snapshot_store,
    write_snapshots,
)
from ps.checkpoint.manifest import shard_dir
from ps.store import InvalidRequest, PushResult, RowStore, SeqOutOfWindow, TableExists, UnknownTable
from ps.wal import LogError, PushLog
from shark.wire.tensors import DEFAULT_MAX_BYTES, WireError, decode_tensor, encode_tensor
from shark.wire.v1 import ps_pb2, ps_pb2_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

_TIER_NAMES = ("fp32", "fp16", "int8")  # RowStore.stats() reports rows_<tier> under these names


def _status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    # Subclasses before their bases: SeqOutOfWindow and TableExists are InvalidRequests.
    if isinstance(exc, SeqOutOfWindow):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, TableExists):
        return grpc.StatusCode.ALREADY_EXISTS, str(exc)
    if isinstance(exc, UnknownTable):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, (CheckpointError, LogError)):  # missing, incomplete, corrupt or existing checkpoint/log
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, (WireError, InvalidRequest)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    # A bug of ours, not the caller's: say INTERNAL rather than let grpc report UNKNOWN.
    log.exception("unexpected error in PS servicer")
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


class ParameterServerServicer(ps_pb2_grpc.ParameterServerServicer):
    """One shard's RowStore behind gRPC. A single lock serialises store calls (the store is not thread-safe);
    decoding and encoding run outside it so that several requests' (de)serialisation overlaps."""

    def __init__(self, store: RowStore, max_tensor_bytes: int = DEFAULT_MAX_BYTES, shard: str = "shard-0",
                 serving: bool = True, wal: PushLog | None = None) -> None:
        self.store = store
        return_freed_memory()  # the shard process's RSS follows the store's arrays (F-Q compactions shrink them)
        # With a push log, every mutation is appended (and fsynced) under the lock after it is applied and before
        # it is acknowledged: a shard restored from its last checkpoint plus the log has every acknowledged update.
        self.wal = wal
        self.shard = shard  # the name of this shard's folder in a checkpoint
        self.checkpoint_lock = threading.Lock()
        self.max_tensor_bytes = max_tensor_bytes  # bounds what one decoded (decompressed) tensor may allocate
        self.lock = threading.Lock()
        # False while the hosting actor restores the shard: Health says NOT_SERVING and every other call fails
        # UNAVAILABLE (retryable), so no client reads or updates a half-restored store.
        self.serving = serving
        # Mutations applied so far (every logged kind and Restore). A Checkpoint retried with a tag this servicer
        # already wrote, and nothing changed since, gets the first attempt's reply again (its reply was lost).
        self.changes = 0
        # PushMany steps seen per worker id since this process started: [applied, answered as duplicates]. A
        # worker's applied count equal to its steps means each step landed once (duplicates are never applied).
        self.push_ledger: dict[str, list[int]] = {}
        self._checkpointed: dict[tuple[str, str], tuple[int, ps_pb2.CheckpointResponse]] = {}

    def set_serving(self, flag: bool) -> None:
        self.serving = bool(flag)

    def replace_store(self, store: RowStore) -> None:
        """Swap in another store (e.g. one read from a checkpoint) once in-flight store calls have finished."""
        with self.lock:
            self.store = store

    def _run(self, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
        if not self.serving:
            _abort(context, grpc.StatusCode.UNAVAILABLE, f"shard {self.shard} is restoring")
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status code, never UNKNOWN
            code, message = _status_of(exc)
        _abort(context, code, message)  # outside the except: abort raises, and must not be caught above

    def _log(self, kind: int, request: object) -> None:
        """Under self.lock, after a mutation was applied: append it to the push log (in application order)."""
        self.changes += 1
        if self.wal is not None:
            self.wal.append(kind, request.SerializeToString(), sync=False)

    def _sync(self) -> None:
        """After releasing self.lock and before replying: the logged mutation is on disk when acknowledged."""
        if self.wal is not None:
            self.wal.sync()

    def _decode(self, msg: ps_pb2.Tensor, name: str, dtype: str, shape: tuple[int | None, ...]) -> np.ndarray:
        return decode_tensor(msg, name=name, expect_dtype=dtype, expect_shape=shape, max_bytes=self.max_tensor_bytes)

    # --- rows -------------------------------------------------------------------------------------------------
    def Pull(self, request: ps_pb2.PullRequest, context: grpc.ServicerContext) -> ps_pb2.PullResponse:
        def go() -> ps_pb2.PullResponse:
            return self._pull_many([request])[0]
        return self._run(context, go)

    def PullMany(self, request: ps_pb2.PullManyRequest, context: grpc.ServicerContext) -> ps_pb2.PullManyResponse:
        def go() -> ps_pb2.PullManyResponse:
            return ps_pb2.PullManyResponse(parts=self._pull_many(request.parts))
        return self._run(context, go)

    def _pull_many(self, parts: Sequence[ps_pb2.PullRequest]) -> list[ps_pb2.PullResponse]:
        # Decode everything before taking the lock; one acquisition for all parts (a consistent view, and the
        # store validates every part before creating any row).
        decoded = [(p.table, self._decode(p.ids, "ids", "int64", (None,)), not p.read_only) for p in parts]
        stored = {p.stored_precision for p in parts}
        if len(stored) > 1:
            raise InvalidRequest("parts must all ask for stored precision, or none")
        if stored == {True}:
            with self.lock:
                packed = self.store.pull_many_stored(decoded)
            return [ps_pb2.PullResponse(rows=encode_tensor(r.fp32), tiers=encode_tensor(r.tiers),
                                        rows_fp16=encode_tensor(r.fp16), rows_int8=encode_tensor(r.int8),
                                        int8_scales=encode_tensor(r.scales)) for r in packed]
        with self.lock:
            rows = self.store.pull_many(decoded)
        return [ps_pb2.PullResponse(rows=encode_tensor(r)) for r in rows]

    def Push(self, request: ps_pb2.PushRequest, context: grpc.ServicerContext) -> ps_pb2.PushResponse:
        return self._run(context, lambda: self._push_many(rq.as_push_many(request)))

    def PushMany(self, request: ps_pb2.PushManyRequest, context: grpc.ServicerContext) -> ps_pb2.PushResponse:
        return self._run(context, lambda: self._push_many(request))

    def _push_many(self, request: ps_pb2.PushManyRequest) -> ps_pb2.PushResponse:
        worker, seq, parts = rq.push_many(request, self.max_tensor_bytes)  # decoded outside the lock
        with self.lock:
            res = rq.apply_push(self.store, worker, seq, parts)
            if res.applied:
                self._log(rq.KIND_PUSH, request)
            counts = self.push_ledger.setdefault(request.worker_id, [0, 0])
            counts[0 if res.applied else 1] += 1
        # Also for a duplicate: its first delivery may have been logged by another thread and not yet synced.
        self._sync()
        return _push_response(res)

    def Assign(self, request: ps_pb2.AssignRequest, context: grpc.ServicerContext) -> ps_pb2.AssignResponse:
        def go() -> ps_pb2.AssignResponse:
            table, ids, rows = rq.assign_args(request, self.max_tensor_bytes)
            with self.lock:
                self.store.assign(table, ids, rows)
                self._log(rq.KIND_ASSIGN, request)
            self._sync()
            return ps_pb2.AssignResponse(rows=ids.shape[0])
        return self._run(context, go)

    # --- tables -----------------------------------------------------------------------------------------------
    def CreateTable(self, request: ps_pb2.CreateTableRequest,
                    context: grpc.ServicerContext) -> ps_pb2.CreateTableResponse:
        def go() -> ps_pb2.CreateTableResponse:
            cfg = rq.table_config(request)
            with self.lock:
                # The proto: an identical table makes CreateTable a no-op (safe retry); a different one is a
                # conflict the caller must resolve.
                created = rq.apply_create(self.store, cfg)
                if created:
                    self._log(rq.KIND_CREATE, request)
            self._sync()
            return ps_pb2.CreateTableResponse(created=created)
        return self._run(context, go)

    def DropTable(self, request: ps_pb2.DropTableRequest, context: grpc.ServicerContext) -> ps_pb2.DropTableResponse:
        def go() -> ps_pb2.DropTableResponse:
            with self.lock:
                dropped = rq.apply_drop(self.store, request.name)  # False: an idempotent retry, as the proto says
                if dropped:
                    self._log(rq.KIND_DROP, request)
            self._sync()
            return ps_pb2.DropTableResponse(dropped=dropped)
        return self._run(context, go)

    def TableStats(self, request: ps_pb2.TableStatsRequest,
                   context: grpc.ServicerContext) -> ps_pb2.TableStatsResponse:
        def go() -> ps_pb2.TableStatsResponse:
            out = ps_pb2.TableStatsResponse()
            with self.lock:
                names = [request.name] if request.name else self.store.table_names()
                for name in names:
                    stats, mem = self.store.stats(name), self.store.memory_bytes(name)
                    out.tables.add(name=name, rows=stats["rows"], bytes_by_kind=mem,
                                   rows_by_tier={t: stats[f"rows_{t}"] for t in _TIER_NAMES})
            out.process_rss_bytes = process_rss_bytes()
            return out
        return self._run(context, go)

    # --- durability and health --------------------------------------------------------------------------------
    def Checkpoint(self, request: ps_pb2.CheckpointRequest,
                   context: grpc.ServicerContext) -> ps_pb2.CheckpointResponse:
        # The directory is a path on the shard's machine, taken as given: the server binds loopback unless told
        # otherwise, and anything wider needs the TLS/token work of the reliability issue.
        def go() -> ps_pb2.CheckpointResponse:
            key = (request.directory, request.tag)
            with self.checkpoint_lock:  # one checkpoint at a time: a retry sees the first attempt's outcome
                done = self._checkpointed.get(key)
                if done is not None and done[0] == self.changes and _manifest_path(request, self.shard).is_file():
                    return done[1]
                # The push log already has this tag's start but no manifest was written: an attempt of ours died
                # half-way. Take the checkpoint again (its start moves to now, with the new snapshot).
                redo = (self.wal is not None and self.wal.has_start(request.tag, request.directory)
                        and not _manifest_path(request, self.shard).is_file())
                with self.lock:  # copies of every table: pushes wait only for the copy, not for the disk
                    tables = snapshot_store(self.store)
                    seq_window, changes = self.store.seq_window, self.changes
                    if self.wal is not None:  # pushes after this snapshot go to a new segment, replayed after it
                        self.wal.rotate(request.tag, request.directory, overwrite=redo)
                path = write_snapshots(tables, request.directory, shard=self.shard, tag=request.tag,
                                       seq_window=seq_window)
                written = sum(t["bytes"] for t in load_manifest(request.directory, self.shard,
                                                                tag=request.tag)["tables"])
                reply = ps_pb2.CheckpointResponse(manifest_path=str(path), bytes_written=written)
                self._checkpointed[key] = (changes, reply)
                return reply
        return self._run(context, go)

    def remember_checkpoint(self, directory: str, tag: str) -> None:
        """The store was just restored from checkpoint (directory, tag) with nothing replayed after it: a retried
        Checkpoint of that tag (its first reply lost when the previous process died) is answered from its files."""
        request = ps_pb2.CheckpointRequest(directory=directory, tag=tag)
        manifest = load_manifest(directory, self.shard, tag=tag)
        reply = ps_pb2.CheckpointResponse(manifest_path=str(_manifest_path(request, self.shard)),
                                          bytes_written=sum(t["bytes"] for t in manifest["tables"]))
        with self.checkpoint_lock:
            self._checkpointed[(directory, tag)] = (self.changes, reply)

    def Restore(self, request: ps_pb2.RestoreRequest, context: grpc.ServicerContext) -> ps_pb2.RestoreResponse:
        def go() -> ps_pb2.RestoreResponse:
            # Read and verify everything first; the live store is swapped only when the whole checkpoint loaded.
            restored = read_shard_checkpoint(request.directory, self.shard, tag=request.tag)
            with self.lock:
                self.store = restored
                self.changes += 1
                if self.wal is not None:  # a deliberate rollback: the abandoned timeline is never replayed
                    self.wal.rotate(request.tag, request.directory, overwrite=True)
            return ps_pb2.RestoreResponse(tables_restored=len(restored.table_names()))
        return self._run(context, go)

    def Health(self, request: ps_pb2.HealthRequest, context: grpc.ServicerContext) -> ps_pb2.HealthResponse:
        # Answers even while not serving: that is how a client learns to wait for a restoring shard.
        status = ps_pb2.HealthResponse.SERVING if self.serving else ps_pb2.HealthResponse.NOT_SERVING
        return ps_pb2.HealthResponse(status=status)


def _manifest_path(request: ps_pb2.CheckpointRequest, shard: str) -> Path:
    return shard_dir(request.directory, shard, request.tag) / MANIFEST_NAME


def _push_response(res: PushResult) -> ps_pb2.PushResponse:
    status = ps_pb2.PushResponse.STATUS_DUPLICATE if res.duplicate else ps_pb2.PushResponse.STATUS_APPLIED
    return ps_pb2.PushResponse(status=status)


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


def return_freed_memory() -> bool:
    """Make glibc give freed large blocks back to the OS (fixed mmap and trim thresholds of 128 KiB). Its default
    raises the mmap threshold to the size of any mmapped block freed (up to 32 MiB), after which a shard's table
    arrays come from the heap, and the memory an F-Q compaction frees stays resident: measured on 1.4M rows at
    dim 32, an F-Q store of 75 MiB held 149 MiB of RSS by default, 84 MiB with this. Idempotent; False (nothing
    changed) off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, 128 << 10)) and bool(libc.mallopt(m_trim_threshold, 128 << 10))
    except (OSError, AttributeError):
        return False


def process_rss_bytes() -> int:
    """This process's resident memory now (VmRSS from /proc/self/status), 0 where /proc is unavailable: what the
    shard really holds, arrays, allocator slack and interpreter included, beside the tables' own byte counts."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return 0
