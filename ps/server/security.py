"""The server side of ps.security.SecurityConfig: a token interceptor, TLS / mutual-TLS credentials, and the
channel options shared by shards (limits, keepalive) - DESIGN.md section 7.

The interceptor runs before gRPC looks up the servicer's handler: a call with a missing or wrong token is
answered UNAUTHENTICATED by a stand-in handler and the servicer never runs (no decode, no lock, no store access).
The token is compared with hmac.compare_digest (constant time for equal lengths; only the length can leak).
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from typing import Any

import grpc

from ps.security import SecurityConfig

__all__ = ["AUTH_METADATA_KEY", "TokenInterceptor", "add_port", "server_interceptors", "server_options"]

log = logging.getLogger(__name__)
AUTH_METADATA_KEY = "authorization"

# Keepalive: the server pings an idle-looking client every 60 s and drops it if no ack within 20 s (a frozen or
# vanished worker frees its stream); clients ping every 20 s (worker/client/ps_client.py), so allow pings that often.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.ping_timeout_ms", 20_000),  # grpcio 1.85 times pings out by this one (default 1 min)
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),  # never GOAWAY a client for pinging at the allowed rate
]


def server_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Explicit message limits both ways (larger requests get RESOURCE_EXHAUSTED from gRPC before any handler;
    the channel stays usable) and keepalive."""
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes), *KEEPALIVE_OPTIONS]


class TokenInterceptor(grpc.ServerInterceptor):
    """Every RPC must carry ``authorization: Bearer <token>``; else UNAUTHENTICATED, the handler never called."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("TokenInterceptor needs a non-empty token")
        self._expected = f"Bearer {token}".encode("ascii")
        self._lock = threading.Lock()
        self.rejected = 0  # calls refused (tests and stats)

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "missing or invalid bearer token (authorization metadata)")
        # No deserializer: a rejected request's bytes are never parsed.
        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        given = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == AUTH_METADATA_KEY:
                given = value.encode("utf-8", "replace") if isinstance(value, str) else bytes(value)
                break
        if hmac.compare_digest(given, self._expected):
            return continuation(handler_call_details)
        with self._lock:
            self.rejected += 1
        log.warning("rejected %s: %s bearer token", handler_call_details.method, "wrong" if given else "missing")
        return self._deny


def server_interceptors(security: SecurityConfig | None) -> list[grpc.ServerInterceptor]:
    """The interceptors a shard's server needs (reads the token here, on the shard's node)."""
    token = security.read_token() if security is not None else None
    return [TokenInterceptor(token)] if token else []


def server_credentials(security: SecurityConfig) -> grpc.ServerCredentials | None:
    if not security.server_tls:
        return None
    assert security.tls_cert and security.tls_key
    chain = SecurityConfig.read_pem(security.tls_cert, "TLS certificate")
    key = SecurityConfig.read_pem(security.tls_key, "TLS private key")
    roots = SecurityConfig.read_pem(security.tls_ca, "CA bundle") if security.require_client_cert else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=roots,
                                       require_client_auth=security.require_client_cert)


class PortCredentials:
    """Binds ports as `security` says: TLS (or mutual TLS) when it has a server certificate, else plaintext."""

    def __init__(self, security: SecurityConfig | None) -> None:
        self.credentials = server_credentials(security) if security is not None else None

    def add(self, server: grpc.Server, address: str) -> int:
        if self.credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, self.credentials)


def add_port(server: grpc.Server, address: str, security: SecurityConfig | None) -> int:
    return PortCredentials(security).add(server, address)
