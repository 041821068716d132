"""Deterministic initial values of embedding rows, shared by every store that creates rows.

A row's first value depends only on (table name, local row id, dim, scale, seed), never on which process or shard
creates it or when; so the single-process store and any parameter-server layout start from identical weights.
Pure numpy: parameter-server shards import this without torch.
"""

from __future__ import annotations

import functools

import numpy as np

from shark.data.hashing import hash_strings, mix64


def hashed_uniform(keys: np.ndarray, dim: int, scale: float, seed: int) -> np.ndarray:
    """(N,) uint64 row keys -> (N, dim) float32 uniform in [-scale, scale), deterministic per (seed, key)."""
    k = np.asarray(keys, dtype=np.uint64)[:, None] * np.uint64(dim) + np.arange(dim, dtype=np.uint64)
    bits = mix64(k ^ mix64(np.uint64(seed)))
    unit = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))  # [0, 1)
    return ((unit * 2.0 - 1.0) * scale).astype(np.float32)


def table_salts(names: list[str]) -> np.ndarray:
    """(T,) uint64 per-table salts, from the table names."""
    return hash_strings(np.asarray(names))


def row_keys(salts: np.ndarray, local_ids: np.ndarray) -> np.ndarray:
    """Broadcast (salt, local row id) -> uint64 init key: local row ^ (salt << 24)."""
    return np.asarray(local_ids).astype(np.uint64) ^ (np.asarray(salts, dtype=np.uint64) << np.uint64(24))


@functools.lru_cache(maxsize=4096)
def _salt(name: str) -> np.uint64:
    return table_salts([name])[0]


def initial_rows(name: str, local_ids: np.ndarray, dim: int, scale: float, seed: int) -> np.ndarray:
    """(N,) local row ids of table `name` -> (N, dim) float32 initial values."""
    return hashed_uniform(row_keys(_salt(name), local_ids), dim, scale, seed)
