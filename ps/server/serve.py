"""Start/stop a threaded gRPC server for one shard. Loopback by default (DESIGN.md section 7)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc

from ps.server.servicer import ParameterServerServicer
from ps.store import RowStore
from shark.wire.v1 import ps_pb2_grpc


def start_server(store: RowStore, host: str = "127.0.0.1", port: int = 0, max_message_bytes: int = 64 << 20,
                 workers: int = 4, servicer: ParameterServerServicer | None = None) -> tuple[grpc.Server, int]:
    """Serve `store` on host:port (port 0 = a free one) and return (server, bound port). Messages larger than
    max_message_bytes either way are refused by grpc with RESOURCE_EXHAUSTED before reaching the servicer.
    `servicer`: serve this one instead (its own store, shard name and serving flag; the caller keeps the handle
    to call set_serving / replace_store), and `store` is ignored."""
    options = [("grpc.max_send_message_length", max_message_bytes),
               ("grpc.max_receive_message_length", max_message_bytes)]
    server = grpc.server(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ps-grpc"), options=options)
    # A decoded tensor cannot be larger than the message that carried it unless lz4 inflated it: bound that too.
    if servicer is None:
        servicer = ParameterServerServicer(store, max_tensor_bytes=max_message_bytes)
    ps_pb2_grpc.add_ParameterServerServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    server.start()
    return server, bound


def stop_server(server: grpc.Server, grace: float = 0.5) -> None:
    """Stop accepting calls, let in-flight ones finish for up to `grace` seconds, and wait until stopped."""
    server.stop(grace).wait()
