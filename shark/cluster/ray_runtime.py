"""Start a local Ray instance (all traffic on loopback) or join an existing cluster, and say which address a
server on this node should bind.

API:
    start_ray(address=None, num_cpus=None, object_store_bytes=256 << 20, node_ip_address=LOCAL_NODE_IP) -> RayHandle
    RayHandle.started: bool      True when start_ray started the instance (then shutdown() stops it)
    RayHandle.connected: bool    True when start_ray connected this process (ray.init); shutdown() then
                                 disconnects it (and stops the instance only if `started`)
    RayHandle.address: str       the GCS address of the instance ("127.0.0.2:port" for a local one)
    RayHandle.local: bool        a local, loopback-only instance (ours, or an already initialised local one)
    RayHandle.shutdown()         ray.shutdown() if we started it, else nothing (idempotent); also a context manager
    node_ip() -> str             the address a server started on this node (driver or actor) should bind

Address resolution: `address` argument, else the RAY_ADDRESS environment variable, else a new local instance;
address="local" always starts a new local instance (tests, whatever RAY_ADDRESS says).
If this process is already connected to Ray, that connection is reused and never shut down by us.

Local instance (ENVIRONMENT.md): Ray rewrites 127.0.0.1 to the machine's external address, so the node is given
127.0.0.2, which Ray keeps; the dashboard is off, logging quiet, the object store small (Ray would claim ~30% of
RAM) and the logical CPU count max(os.cpu_count(), 8), so that S shards + W workers + the coordinator, each
asking for a fraction of a CPU or one CPU, fit on a 2-core machine (they are mostly waiting on I/O).

Token auth: kept ON (Ray 2.60's default) for the local instance too, unless the user chose RAY_AUTH_MODE
themselves. Ray creates ~/.ray/auth_token on first use and sets RAY_AUTH_MODE=token in this process (inherited
by its children); nothing is to be configured; `ray status` against it needs the same token.
Loopback alone is not a security boundary on a shared machine (any local user can reach 127.0.0.2), which is why
we do not disable it. Joining a cluster: RAY_AUTH_MODE is set to "token" when a token is at hand (RAY_AUTH_TOKEN,
RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and the user did not set a mode; a cluster started with
RAY_AUTH_MODE=disabled needs RAY_AUTH_MODE=disabled here too.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import ray

LOCAL_NODE_IP = "127.0.0.2"
DEFAULT_OBJECT_STORE_BYTES = 256 << 20
_AUTH_ENV = "RAY_AUTH_MODE"


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path).is_file() if path else (Path.home() / ".ray" / "auth_token").is_file()


@dataclass
class RayHandle:
    started: bool
    connected: bool
    address: str
    local: bool
    _env_set: dict[str, str | None] = field(default_factory=dict, repr=False)
    _closed: bool = field(default=False, repr=False)

    def shutdown(self) -> None:
        """Disconnect if start_ray connected (stopping the instance if it started it); idempotent. Restores
        the environment variables it set."""
        if self._closed:
            return
        self._closed = True
        if self.connected and ray.is_initialized():
            ray.shutdown()
        for k, old in self._env_set.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.shutdown()


def _set_env(env_set: dict[str, str | None], key: str, value: str) -> None:
    env_set.setdefault(key, os.environ.get(key))
    os.environ[key] = value


def _current_address() -> str:
    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - informational only
        return ""


def start_ray(address: str | None = None, num_cpus: int | None = None,
              object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES,
              node_ip_address: str = LOCAL_NODE_IP) -> RayHandle:
    """Connect this process to Ray: reuse an existing connection, join `address` (or RAY_ADDRESS), or start a
    local loopback-only instance. Returns a handle whose shutdown() stops only what this call started.

    num_cpus / object_store_bytes / node_ip_address apply to a local instance only (a cluster has its own)."""
    if ray.is_initialized():
        addr = _current_address()
        return RayHandle(started=False, connected=False, address=addr, local=addr.split(":")[0].startswith("127."))
    address = address or os.environ.get("RAY_ADDRESS") or None
    env_set: dict[str, str | None] = {}
    if address in ("local",):
        address = None
    if address is None:
        # RAY_AUTH_MODE unset: Ray enables token auth for a new local instance itself, creating the token file if
        # needed (setting the variable ourselves would skip that creation); only its warning is silenced.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        cpus = num_cpus if num_cpus is not None else max(os.cpu_count() or 1, 8)
        ctx = ray.init(address="local", num_cpus=cpus, object_store_memory=object_store_bytes,
                       _node_ip_address=node_ip_address, include_dashboard=False,
                       logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
        return RayHandle(started=True, connected=True, address=ctx.address_info.get("gcs_address", ""), local=True, _env_set=env_set)
    _check_reachable(address)
    if _AUTH_ENV not in os.environ and _token_available():
        _set_env(env_set, _AUTH_ENV, "token")
    kwargs = {}
    host = address.rsplit(":", 1)[0] if ":" in address else ""
    if host.startswith("127."):  # a cluster on loopback: this driver must stay on loopback too
        kwargs["_node_ip_address"] = node_ip_address
    ctx = ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, **kwargs)
    return RayHandle(started=False, connected=True, address=ctx.address_info.get("gcs_address", address),
                     local=host.startswith("127."), _env_set=env_set)


class RayUnreachable(ConnectionError):
    """The Ray address given cannot be reached (ray.init would retry for minutes before failing)."""


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, with the address in the message, when nothing listens at host:port ("auto" and ray:// are
    left to Ray)."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise RayUnreachable(f"cannot reach the Ray cluster at {address}: {exc} (is `ray start --head` running "
                             "there, and is the port the GCS port?)") from None


def node_ip() -> str:
    """The address a server on this node should bind: Ray's IP of the current node (127.0.0.2 for a local
    instance, the node's cluster IP otherwise); 127.0.0.1 when Ray is not running (plain loopback default)."""
    if not ray.is_initialized():
        return "127.0.0.1"
    try:
        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001
        return "127.0.0.1"
