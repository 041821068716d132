"""Exceptions the gRPC layer maps to status codes. Raised before any mutation: a rejected request changes nothing."""

from __future__ import annotations


class UnknownTable(KeyError):
    """No table of that name on this shard -> NOT_FOUND."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "unknown table"


class InvalidRequest(ValueError):
    """Malformed request (ids out of range, wrong shapes/dtypes, NaN/Inf, negative counts) -> INVALID_ARGUMENT."""


class TableExists(InvalidRequest):
    """create_table/restore_table of a name already present -> ALREADY_EXISTS (or INVALID_ARGUMENT)."""


class SeqOutOfWindow(InvalidRequest):
    """A push seq too far beyond the worker's high-water mark (a lost push would stall the window forever if
    we accepted it silently) -> FAILED_PRECONDITION (or INVALID_ARGUMENT)."""
