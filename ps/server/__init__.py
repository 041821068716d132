"""The gRPC face of a PS shard: a thin servicer that translates wire messages to ps.store.RowStore calls."""

from ps.requests import worker_key
from ps.server.serve import start_server, stop_server
from ps.server.servicer import ParameterServerServicer

__all__ = ["ParameterServerServicer", "start_server", "stop_server", "worker_key"]
