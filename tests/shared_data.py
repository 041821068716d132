"""Where the real data samples live. They are never copied into the project (their terms forbid it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARK_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data_dir() -> Path:
    """The samples folder; skips the test when it is absent, except on CI where that is a failure."""
    if not SHARED_DATA.is_dir():
        message = f"real data samples not found at {SHARED_DATA} (set SHARK_SHARED_DATA)"
        if os.environ.get("CI"):  # CI has shared/ beside the clone: its absence is a failure, not a skip
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


def shared_file(rel: str) -> Path:
    return shared_data_dir() / rel
