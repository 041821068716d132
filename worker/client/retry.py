"""Deadlines and retries for PS calls (DESIGN.md section 7: every call has a deadline; retries are safe because
every RPC is idempotent or carries (worker_id, seq)).

Only UNAVAILABLE (shard restarting, restoring, connection reset) and DEADLINE_EXCEEDED (slow shard) are retried:
every other status is the caller's bug or the shard's verdict, and retrying it would only repeat it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc

__all__ = ["RETRYABLE", "PSClientError", "RetryPolicy", "call_with_retry"]

T = TypeVar("T")
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; each try has its own deadline of ``deadline_s`` seconds (gRPC ``timeout=``);
    between tries, a jittered exponential backoff: uniform in [b/2, b] with b = min(max_backoff,
    initial_backoff * multiplier**retry)."""

    attempts: int = 5
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    multiplier: float = 2.0
    deadline_s: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, got {self.attempts!r}")
        for name in ("initial_backoff", "max_backoff", "deadline_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0, got {self.deadline_s!r}")
        if self.max_backoff < self.initial_backoff:
            raise ValueError(f"max_backoff ({self.max_backoff}) must be >= initial_backoff ({self.initial_backoff})")
        m = self.multiplier
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 1 <= m < float("inf"):
            raise ValueError(f"multiplier must be a finite number >= 1, got {m!r}")

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to sleep before retry number ``retry`` (0 = the first retry)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** retry)
        return base * (0.5 + 0.5 * (rng or random).random())


class PSClientError(Exception):
    """A PS call failed for good. Plain and picklable (it crosses Ray actor boundaries): it keeps the status code's
    name and details as strings, never the grpc.RpcError object."""

    def __init__(self, message: str, *, address: str = "", rpc: str = "", tables: Sequence[str] = (),
                 code: str = "", details: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.address = address
        self.rpc = rpc
        self.tables = tuple(tables)
        self.code = code
        self.details = details
        self.attempts = attempts

    def __reduce__(self) -> tuple:
        return (_rebuild, (self.message, self.address, self.rpc, self.tables, self.code, self.details,
                           self.attempts))


def _rebuild(message: str, address: str, rpc: str, tables: tuple[str, ...], code: str, details: str,
             attempts: int) -> PSClientError:
    return PSClientError(message, address=address, rpc=rpc, tables=tables, code=code, details=details,
                         attempts=attempts)


def call_with_retry(call: Callable[[float], T], policy: RetryPolicy, *, address: str, rpc: str,
                    tables: Sequence[str] = (), on_retry: Callable[[], None] | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``call(timeout)`` until it succeeds, fails with a non-retryable status, or runs out of attempts; then
    raise PSClientError naming the shard address, the RPC and the tables. ``on_retry`` runs before each retry."""
    for attempt in range(policy.attempts):
        try:
            return call(policy.deadline_s)
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            details = (exc.details() if callable(getattr(exc, "details", None)) else str(exc)) or ""
            retryable = code in RETRYABLE
            if not retryable or attempt + 1 == policy.attempts:
                name = code.name if code is not None else "UNKNOWN"
                what = f" for table(s) {', '.join(repr(t) for t in tables)}" if tables else ""
                tried = f" after {attempt + 1} attempts" if retryable else ""
                raise PSClientError(f"{rpc} to shard {address}{what} failed{tried}: {name}: {details}",
                                    address=address, rpc=rpc, tables=tables, code=name, details=details,
                                    attempts=attempt + 1) from None
        if on_retry is not None:
            on_retry()
        sleep(policy.backoff(attempt))
    raise AssertionError("unreachable: the loop returns or raises")
