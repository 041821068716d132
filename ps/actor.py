"""ShardActor: one PS shard as a Ray actor. It owns a RowStore behind a ParameterServerServicer and serves it over
gRPC (the data plane); Ray only places, restarts and introspects it (the control plane), DESIGN.md section 2.

Start-up order (DESIGN.md section 7: "a restarted shard actor restores itself in its constructor and reports
NOT_SERVING until it has"): servicer (serving=False) -> gRPC server bound on host:0 -> restore from the newest
complete checkpoint of this shard under checkpoint_dir (or `restore_tag`) -> set_serving(True). The constructor
returns only after that, so an actor restarted by Ray (max_restarts) comes back with its checkpointed rows and a
new port; ask `address()` again after a restart.

Use:
    actor = RayShardActor.options(name="shard-0").remote(0, 4, checkpoint_dir="/ckpt")  # host: this node's IP
    addr = ray.get(actor.address.remote())          # "host:port" of its gRPC server

`RayShardActor` = ray.remote(ShardActor) with max_concurrency=8 (gRPC serves from its own threads anyway; this
lets info()/stop() and the bench's direct calls run while another call waits), num_cpus=0.5 (a shard mostly
waits on the network; S shards + W workers + a coordinator must fit a 2-core machine) and max_restarts=3.
Override any of them with .options(...).

Nothing but plain exceptions leaves the actor: gRPC and store exceptions do not all pickle through Ray, so every
public method raises ValueError (the caller's mistake) or RuntimeError (ours), with the original message.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import numpy as np
import ray

from ps.checkpoint import MANIFEST_NAME, latest_common_tag, read_shard_checkpoint, write_shard_checkpoint
from ps.checkpoint.manifest import shard_dir
from ps.checkpoint.reshard import read_resharded
from ps.checkpoint.writer import atomic_write
from ps.requests import worker_key
from ps.security import SecurityConfig
from ps.server.security import PortCredentials, server_interceptors, server_options
from ps.server.servicer import ParameterServerServicer
from ps.store import RowStore, TableConfig, TableExists
from ps.wal import PushLog, recover
from shark.cluster.ray_runtime import node_ip
from shark.wire.v1 import ps_pb2_grpc

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_MESSAGE_BYTES = 64 << 20
DEFAULT_SEQ_WINDOW = 4096


def _plain_errors(fn: F) -> F:
    """Re-raise anything as ValueError (caller's mistake: bad arguments, unknown table, ...) or RuntimeError."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, KeyError) as exc:  # InvalidRequest, WireError, UnknownTable, TableExists, ...
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - must not carry unpicklable state through Ray
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
    return wrapper  # type: ignore[return-value]


def shard_name(shard_index: int) -> str:
    """The shard's name: its folder in a checkpoint and its servicer's `shard`."""
    return f"shard-{shard_index}"


class ShardActor:
    """One shard: RowStore + servicer + threaded gRPC server, restored from a checkpoint before it serves."""

    @_plain_errors
    def __init__(self, shard_index: int, num_shards: int, host: str | None = None, checkpoint_dir: str | None = None,
                 restore_tag: str | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 seq_window: int = DEFAULT_SEQ_WINDOW, grpc_workers: int = 4, wal_dir: str | None = None,
                 wal_fsync: bool = True, security: SecurityConfig | None = None,
                 restore_source_shards: int | None = None) -> None:
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index must be in [0, {num_shards}), got {shard_index}")
        if restore_tag is not None and checkpoint_dir is None:
            raise ValueError("restore_tag needs a checkpoint_dir")
        # restore_source_shards: the checkpoint was written by that many shards (not num_shards): this shard
        # restores the rows the new layout routes to it from all of them (ps.checkpoint.reshard). A tag is needed:
        # the newest tag of one shard says nothing about the others (the coordinator passes RUN.json's).
        if restore_source_shards is not None:
            if isinstance(restore_source_shards, bool) or not isinstance(restore_source_shards, int) \
                    or restore_source_shards < 1:
                raise ValueError(f"restore_source_shards must be an int >= 1, got {restore_source_shards!r}")
            if restore_tag is None:
                raise ValueError("restore_source_shards needs a restore_tag (and a checkpoint_dir)")
        self.restore_source_shards = None if restore_source_shards == num_shards else restore_source_shards
        # host None: this node's address as Ray knows it (127.0.0.2 on a local instance), resolved here, on the
        # node the actor was placed on, not on the driver's.
        self.shard_index, self.num_shards, self.host = shard_index, num_shards, host or node_ip()
        self.shard = shard_name(shard_index)
        self.checkpoint_dir = checkpoint_dir
        self.restored_tag: str | None = None
        self.replayed = 0
        self.seq_window = seq_window
        self.max_message_bytes = max_message_bytes
        # Token, TLS and mutual TLS (paths only; the files and the token variable are read here, on this node).
        self.security = security if security is not None else SecurityConfig()
        # The push log lives in wal_dir/<shard>/ (one per run): with it, a restart recovers every acknowledged
        # update (newest checkpoint it knows + the log since), not just the last checkpoint.
        self.wal = PushLog(os.path.join(wal_dir, self.shard), fsync=wal_fsync) if wal_dir else None
        self.servicer = self._make_servicer(RowStore(seq_window=seq_window), max_message_bytes)
        self.server, self.port = self._start_server(max_message_bytes, grpc_workers)  # NOT_SERVING until restored
        try:
            self._restore(restore_tag)
        except BaseException:
            self.server.stop(0)
            raise
        self.servicer.set_serving(True)
        log.info("%s serving on %s:%d (restored %s, replayed %d)", self.shard, self.host, self.port,
                 self.restored_tag, self.replayed)

    def _make_servicer(self, store: RowStore, max_message_bytes: int) -> ParameterServerServicer:
        return ParameterServerServicer(store, max_tensor_bytes=max_message_bytes, shard=self.shard, serving=False)

    def _start_server(self, max_message_bytes: int, workers: int) -> tuple[grpc.Server, int]:
        # As ps.server.serve.start_server, but around our servicer (it builds its own from a store).
        ports = PortCredentials(self.security)  # certificates and token read before anything is bound
        interceptors = server_interceptors(self.security)
        server = grpc.server(ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{self.shard}-grpc"),
                             options=server_options(max_message_bytes), interceptors=interceptors or None)
        ps_pb2_grpc.add_ParameterServerServicer_to_server(self.servicer, server)
        # A restarted shard (same push log) binds its previous address again when it can, so clients keep their
        # channels: they see UNAVAILABLE / NOT_SERVING while it recovers and their retries reach it afterwards.
        port_file = self.wal.dir / "ADDRESS" if self.wal is not None else None
        port = 0
        if port_file is not None and port_file.is_file():
            host, _, old_port = port_file.read_text().strip().rpartition(":")
            if host == self.host and old_port.isdigit():
                try:
                    port = ports.add(server, f"{self.host}:{old_port}")
                except RuntimeError:  # grpc raises when the port is taken: fall back to a new one
                    port = 0
        if port == 0:
            port = ports.add(server, f"{self.host}:0")
        if port == 0:
            raise OSError(f"could not bind {self.host}:0")
        if port_file is not None:
            atomic_write(port_file, f"{self.host}:{port}".encode())
        server.start()
        return server, port

    def _restore(self, restore_tag: str | None) -> None:
        """Before serving. With a push log that knows a checkpoint (a restart): recover = that checkpoint + the
        log since. Otherwise: the checkpoint asked for (restore_tag, or the newest under checkpoint_dir), read as
        the Restore RPC reads it (verified, all-or-nothing), or an empty store. With restore_source_shards: this
        shard's rows of the new layout, gathered from every old shard's checkpoint (ps.checkpoint.reshard)."""
        # A restart: the log knows a checkpoint, or holds records. Earlier segments without either (a crash before
        # the first restore finished) acknowledged nothing: restore as on a first start, not an empty store.
        if self.wal is not None and (self.wal.starts() or next(self.wal.records_from(0), None) is not None):
            rec = recover(self.wal, self.shard, self.seq_window, self.max_message_bytes)
            self.servicer.replace_store(rec.store)
            self.restored_tag, self.replayed = (rec.point.tag if rec.point else None), rec.replayed
            if rec.point is not None and rec.replayed == 0:  # the state is that checkpoint's: a retry of it is fine
                self.servicer.remember_checkpoint(rec.point.directory, rec.point.tag)
        elif self.checkpoint_dir is not None:
            # No tag: the newest one EVERY shard of this cluster completed, not this shard's newest (after a crash
            # in the middle of a checkpoint that tag exists on some shards only, and they would disagree).
            tag = restore_tag if restore_tag is not None else \
                latest_common_tag(self.checkpoint_dir, [shard_name(i) for i in range(self.num_shards)])
            if tag is not None:
                if self.restore_source_shards is None:
                    store = read_shard_checkpoint(self.checkpoint_dir, self.shard, tag=tag)
                    point = self.checkpoint_dir
                else:
                    store = read_resharded(self.checkpoint_dir, tag, self.restore_source_shards, self.shard_index,
                                           self.num_shards)
                    point = self._save_resharded(store, tag)
                self.servicer.replace_store(store)
                self.restored_tag = tag
                if self.wal is not None:  # a later restart recovers from this checkpoint plus the log
                    self.wal.rotate(tag, point)
        self.servicer.wal = self.wal

    def _save_resharded(self, store: RowStore, tag: str) -> str | None:
        """With a push log: keep the resharded store as this shard's own checkpoint in the log's directory, and
        return that directory. A restart recovers from it (the checkpoint_dir's <tag>/<this shard> holds the OLD
        layout's rows, or does not exist). Without a push log there is no restart recovery: nothing to keep."""
        if self.wal is None:
            return None
        directory = self.wal.dir / "resharded"
        if not (shard_dir(directory, self.shard, tag) / MANIFEST_NAME).is_file():  # kept by an earlier attempt
            write_shard_checkpoint(store, directory, self.shard, tag=tag)
        return str(directory)

    # --- control ----------------------------------------------------------------------------------------------
    def address(self) -> str:
        """"host:port" of this shard's gRPC server."""
        return f"{self.host}:{self.port}"

    @_plain_errors
    def info(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context() if ray.is_initialized() else None
        with self.servicer.lock:
            tables = self.servicer.store.table_names()
            ledger = {w: {"applied": a, "duplicate": d} for w, (a, d) in self.servicer.push_ledger.items()}
            # the durable ledger (checkpointed and replayed, so it spans restarts): per table, per worker key
            durable = {t: {str(w): e for w, e in self.servicer.store.ledger(t).items()} for t in tables}
        return {"shard": self.shard, "shard_index": self.shard_index, "num_shards": self.num_shards,
                "address": self.address(), "node_id": ctx.get_node_id() if ctx else None,
                "node_ip": ray.util.get_node_ip_address() if ctx else None, "pid": os.getpid(),
                "restored_tag": self.restored_tag, "replayed": self.replayed, "checkpoint_dir": self.checkpoint_dir,
                "push_log": None if self.wal is None else str(self.wal.dir), "tables": tables,
                "restarted": bool(ctx and ctx.was_current_actor_reconstructed),
                "security": self.security.describe(), "pushes": ledger, "ledger": durable}

    def stop(self, grace: float = 0.5) -> None:
        """Stop the gRPC server (in-flight calls get `grace` seconds). The actor stays; ray.kill() it after."""
        self.server.stop(grace).wait()

    # --- direct data path (benchmarks only: the data plane is gRPC) ---------------------------------------------
    @_plain_errors
    def create_table(self, name: str, dim: int, capacity: int, optimizer: str = "adagrad", lr: float = 0.05,
                     init_scale: float = 0.05, seed: int = 0, **extra: Any) -> bool:
        """As the CreateTable RPC: True if created, False if an identical table exists, ValueError if a different
        one does. `extra`: the other TableConfig fields (eps, rounding, beta1, beta2)."""
        cfg = TableConfig(name=name, dim=dim, capacity=capacity, optimizer=optimizer, lr=lr, init_scale=init_scale,
                          seed=seed, **extra)
        with self.servicer.lock:
            store = self.servicer.store
            if store.has_table(name):
                if store.config(name) == cfg:
                    return False
                raise TableExists(f"table {name!r} exists with a different configuration")
            store.create_table(cfg)
        return True

    @_plain_errors
    def pull(self, table: str, ids: np.ndarray) -> np.ndarray:
        """(N,) int64 ids -> (N, dim) float32 rows, as the Pull RPC (absent rows are created)."""
        with self.servicer.lock:
            return self.servicer.store.pull(table, ids)

    @_plain_errors
    def push(self, table: str, ids: np.ndarray, grads: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray,
             worker_id: str, seq: int) -> bool:
        """As the Push RPC (same worker_id -> key mapping, so both paths share idempotency): True if applied,
        False if (worker_id, seq) was already applied."""
        worker = worker_key(worker_id)
        with self.servicer.lock:
            res = self.servicer.store.push(table, ids, grads, c_pos, c_neg, worker_id=worker, seq=seq)
        return res.applied


RayShardActor = ray.remote(num_cpus=0.5, max_concurrency=8, max_restarts=3)(ShardActor)
