"""The worker's PS client: shard routing, deadlines and retries, a bounded window of asynchronous pushes."""

from worker.client.push_window import PushWindow
from worker.client.retry import RETRYABLE, PSClientError, RetryPolicy, call_with_retry
from worker.client.routing import ShardRouter

__all__ = ["RETRYABLE", "PSClient", "PSClientError", "PushWindow", "RetryPolicy", "ShardRouter", "call_with_retry"]


def __getattr__(name: str) -> object:
    # PSClient pulls in ps.store and grpc stubs; routing/window users (and unit tests) need not import them.
    if name == "PSClient":
        from worker.client.ps_client import PSClient
        return PSClient
    raise AttributeError(name)
