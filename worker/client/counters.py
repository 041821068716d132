"""Thread-safe running totals of a PS client (calls, bytes, retries, time spent waiting)."""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["ClientCounters"]


class ClientCounters:
    """Named int/float totals, incremented from the caller's thread and from the client's pool threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()

    def add(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)
