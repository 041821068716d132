"""Helpers for tests that kill Ray actors."""

from __future__ import annotations

import time

import ray


def new_incarnation(actor, old_pid: int, timeout_s: float = 60.0) -> dict:  # noqa: ANN001 - a Ray actor handle
    """The restarted actor's info() once a process other than `old_pid` answers (ray.kill is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            info = ray.get(actor.info.remote(), timeout=10)
            if info["pid"] != old_pid:
                return info
        except ray.exceptions.RayActorError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the actor did not come back within {timeout_s:.0f} s")
