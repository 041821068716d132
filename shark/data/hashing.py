"""Stable, vectorised 64-bit hashing (Python's hash() is salted per process, so it is never used here)."""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective avalanche mix of uint64 values (any shape)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash_strings(values: np.ndarray) -> np.ndarray:
    """FNV-1a 64 of each string (or bytes) in a 1-D array, vectorised over the characters' columns.

    values: (N,) array of str or bytes. Returns (N,) uint64. Equal strings give equal keys in every process.
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "U":
        arr = np.char.encode(arr, "utf-8")
    elif arr.dtype.kind == "O":
        arr = np.array([v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in arr], dtype=bytes)
    n = arr.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    width = max(arr.dtype.itemsize, 1)
    chars = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.uint8).reshape(n, width)
    lengths = np.char.str_len(arr) if arr.dtype.itemsize else np.zeros(n, dtype=np.int64)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):  # loop over character positions (<= longest value), not rows
            live = lengths > j
            hj = (h ^ chars[:, j].astype(np.uint64)) * _FNV_PRIME
            h = np.where(live, hj, h)
    # Mix the length in so that b"" and strings of NULs differ, then avalanche.
    return mix64(h ^ lengths.astype(np.uint64))
