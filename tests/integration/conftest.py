"""Integration fixtures: one local Ray instance (loopback only) shared by the whole test session.

`ray.init()` costs about 4 s and shutdown 1.5 s (ENVIRONMENT.md), so tests that need Ray take `ray_session`
instead of starting their own; it yields the shark.cluster RayHandle and shuts Ray down when the session ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_session() -> Iterator[object]:
    from shark.cluster import start_ray

    handle = start_ray("local")  # always a fresh loopback instance, even if RAY_ADDRESS is set
    try:
        yield handle
    finally:
        handle.shutdown()
