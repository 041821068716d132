"""Errors a user can cause with their data: one clear line, naming the file and line."""

from __future__ import annotations


class DataError(Exception):
    """Bad or unreadable input. `str(err)` is a complete, user-facing message."""
