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


def parse_hex(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse an array of hex strings (1..16 chars) into uint64, vectorised.

    values: (N,) str/bytes. Returns (keys uint64 (N,), ok bool (N,)); ok is False for empty strings,
    strings longer than 16 characters and strings with a non-hex character.
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "U":
        arr = np.char.encode(arr, "ascii", errors="replace") if arr.size else arr.astype("S1")
    elif arr.dtype.kind == "O":
        arr = np.array([v.encode("ascii", "replace") if isinstance(v, str) else bytes(v) for v in arr], dtype=bytes)
    n = arr.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    width = max(arr.dtype.itemsize, 1)
    chars = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=np.uint8).reshape(n, width)
    lengths = np.char.str_len(arr) if arr.dtype.itemsize else np.zeros(n, dtype=np.int64)
    digit = _HEX_LUT[chars]  # (N, width) int16, -1 = not a hex digit
    pos = np.arange(width)[None, :]
    inside = pos < lengths[:, None]
    ok = (lengths > 0) & (lengths <= 16) & ~np.any(inside & (digit < 0), axis=1)
    keys = np.zeros(n, dtype=np.uint64)
    for j in range(min(width, 16)):  # loop over character positions, not rows
        live = (lengths > j) & ok
        keys = np.where(live, (keys << np.uint64(4)) | digit[:, j].clip(0).astype(np.uint64), keys)
    return keys, ok


_HEX_LUT = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_LUT[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_LUT[_c] = 10 + _i
