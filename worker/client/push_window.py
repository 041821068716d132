"""A bounded window of in-flight push steps (DESIGN.md section 4: push without waiting, but not unboundedly).

A step is the list of futures of one push (one future per shard). ``submit`` returns at once while fewer than
``limit`` steps are in flight; otherwise it first waits for the OLDEST in-flight step. ``limit == 0`` is synchronous:
``submit`` waits for the step it was given. A failed push is never lost: its exception is raised by the next
``submit`` or ``flush`` (one failed step per call, oldest first; the rest stay queued). When several shards of one
step fail, the first shard's exception is raised, carrying the others as notes.

Not thread-safe: one window belongs to one pushing thread (PSClient serialises push() with a lock).
"""

from __future__ import annotations

import concurrent.futures as cf
from collections import deque
from collections.abc import Iterable

__all__ = ["PushWindow"]


class PushWindow:
    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be an int >= 0, got {limit!r}")
        self.limit = limit
        self.steps_waited = 0   # submits (or flushes) that had to block for a step to finish
        self.max_in_flight = 0  # most steps in flight at once, counting the one just submitted
        self._steps: deque[list[cf.Future]] = deque()
        self._errors: deque[BaseException] = deque()

    @property
    def in_flight(self) -> int:
        """Steps submitted and not yet finished (finished ones are reaped first)."""
        self._reap()
        return len(self._steps)

    @property
    def pending_errors(self) -> int:
        return len(self._errors)

    def submit(self, step: Iterable[cf.Future]) -> None:
        """Add one push step (its futures already running). Blocks only as described in the module docstring.
        The step is accepted even when an earlier step's error is raised here."""
        futures = list(step)
        self._reap()
        while self._steps and len(self._steps) >= self.limit:
            self._wait_oldest()
        self._steps.append(futures)
        self.max_in_flight = max(self.max_in_flight, len(self._steps))
        if self.limit == 0:
            self._wait_oldest()
        self._raise_one()

    def flush(self) -> None:
        """Wait for every in-flight step; then raise the oldest unreported error, if any."""
        self._reap()
        if self._steps:
            self.steps_waited += 1
        while self._steps:
            self._finish(self._steps.popleft())
        self._raise_one()

    # --- internals -----------------------------------------------------------------------------------------------
    def _wait_oldest(self) -> None:
        oldest = self._steps.popleft()
        if not all(f.done() for f in oldest):
            self.steps_waited += 1
        self._finish(oldest)

    def _finish(self, step: list[cf.Future]) -> None:
        cf.wait(step)
        failures = [exc for exc in (f.exception() for f in step) if exc is not None]
        if failures:  # one error per failed step; the other shards' errors ride along as notes
            first = failures[0]
            for other in failures[1:]:
                if hasattr(first, "add_note"):  # Python >= 3.11
                    first.add_note(f"also failed in the same push step: {type(other).__name__}: {other}")
            self._errors.append(first)

    def _reap(self) -> None:
        if not self._steps:
            return
        keep: deque[list[cf.Future]] = deque()
        for step in self._steps:  # a loop over <= limit + 1 steps
            if all(f.done() for f in step):
                self._finish(step)
            else:
                keep.append(step)
        self._steps = keep

    def _raise_one(self) -> None:
        if self._errors:
            raise self._errors.popleft()
