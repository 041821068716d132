"""Start/stop a threaded gRPC server for one shard. Loopback by default (DESIGN.md section 7)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc

from ps.security import SecurityConfig
from ps.server.security import PortCredentials, server_interceptors, server_options
from ps.server.servicer import ParameterServerServicer
from ps.store import RowStore
from shark.wire.v1 import ps_pb2_grpc


def start_server(store: RowStore, host: str = "127.0.0.1", port: int = 0, max_message_bytes: int = 64 << 20,
                 workers: int = 4, servicer: ParameterServerServicer | None = None,
                 security: SecurityConfig | None = None,
                 interceptors: list[grpc.ServerInterceptor] | None = None) -> tuple[grpc.Server, int]:
    """Serve `store` on host:port (port 0 = a free one) and return (server, bound port). Messages larger than
    max_message_bytes either way are refused by grpc with RESOURCE_EXHAUSTED before reaching the servicer.
    `servicer`: serve this one instead (its own store, shard name and serving flag; the caller keeps the handle
    to call set_serving / replace_store), and `store` is ignored.
    `security`: token interceptor and TLS / mutual TLS (ps.security.SecurityConfig; files read here).
    `interceptors`: extra server interceptors, run after the token check (tests use them to count calls)."""
    chain = [*server_interceptors(security), *(interceptors or [])]
    ports = PortCredentials(security)  # reads the certificates before anything is bound
    server = grpc.server(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ps-grpc"),
                         options=server_options(max_message_bytes), interceptors=chain or None)
    # A decoded tensor cannot be larger than the message that carried it unless lz4 inflated it: bound that too.
    if servicer is None:
        servicer = ParameterServerServicer(store, max_tensor_bytes=max_message_bytes)
    ps_pb2_grpc.add_ParameterServerServicer_to_server(servicer, server)
    bound = ports.add(server, f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    server.start()
    return server, bound


def stop_server(server: grpc.Server, grace: float = 0.5) -> None:
    """Stop accepting calls, let in-flight ones finish for up to `grace` seconds, and wait until stopped."""
    server.stop(grace).wait()
