"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_data import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_data_dir()
