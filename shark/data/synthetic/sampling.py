"""Vectorised building blocks: bounded power-law sampling, value -> key mapping, hash-derived random effects."""

from __future__ import annotations

import math

import numpy as np

from shark.data.batch import MISSING_KEY
from shark.data.hashing import mix64


class PowerLaw:
    """Bounded discrete power law on value indices 0..n-1, sampled in closed form (no per-value tables).

    index = floor(X) - 1 where X has density proportional to x^-s on [1, n + 1). So P(index v) = F(v+2) - F(v+1)
    with F(x) = (x^(1-s) - 1) / ((n+1)^(1-s) - 1) (F(x) = ln x / ln(n+1) when s = 1): a Zipf-like law with
    P(v) ~ (v+1)^-s for large v, index 0 the most frequent, s = 0 the uniform law. O(1) memory for any n.
    """

    def __init__(self, n: int, s: float) -> None:
        self.n, self.s = int(n), float(s)
        self._g = 1.0 - self.s
        self._log_top = math.log(self.n + 1.0)
        self._unit = abs(self._g) < 1e-9  # s == 1: the log form
        self._den = self._log_top if self._unit else math.expm1(self._g * self._log_top)

    def sample(self, u: np.ndarray) -> np.ndarray:
        """u: uniforms in [0, 1) (float64, any shape) -> int64 indices in [0, n), by the inverse CDF."""
        if self._unit:
            x = np.exp(u * self._log_top)
        else:
            x = np.exp(np.log1p(u * self._den) / self._g)
        return np.minimum(x.astype(np.int64) - 1, self.n - 1)  # min: guards rounding at u -> 1

    def cdf(self, x: np.ndarray | float) -> np.ndarray:
        """F(x) for x in [1, n + 1]."""
        lx = np.log(np.asarray(x, dtype=np.float64))
        return lx / self._den if self._unit else np.expm1(self._g * lx) / self._den

    def pmf(self, v: np.ndarray | int) -> np.ndarray:
        """P(index == v) for v in [0, n)."""
        v = np.asarray(v, dtype=np.float64)
        return self.cdf(v + 2.0) - self.cdf(v + 1.0)

    def head_size(self, p_min: float) -> int:
        """How many leading indices have probability >= p_min (the pmf is non-increasing in v)."""
        lo, hi = 0, self.n  # invariant: pmf(v) >= p_min for v < lo; pmf(v) < p_min for v >= hi
        while lo < hi:
            mid = (lo + hi) // 2
            if float(self.pmf(mid)) >= p_min:
                lo = mid + 1
            else:
                hi = mid
        return lo


_C1 = np.uint32(0x85EBCA6B)
_C2 = np.uint32(0xC2B2AE35)


def fmix32(x: np.ndarray) -> np.ndarray:
    """murmur3's 32-bit finaliser: a bijection on uint32 (xorshifts and odd multipliers are invertible)."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * _C1
        x = x ^ (x >> np.uint32(13))
        x = x * _C2
    return x ^ (x >> np.uint32(16))


def field_salts(seed: int, n_fields: int, tag: int) -> np.ndarray:
    """(n_fields,) uint64 pseudo-random salts, one per field, for a given seed and purpose tag."""
    base = mix64(np.array([seed], dtype=np.uint64) ^ mix64(np.array([tag], dtype=np.uint64)))
    return mix64(base + np.arange(1, n_fields + 1, dtype=np.uint64))


def value_keys(idx: np.ndarray, salts: np.ndarray) -> np.ndarray:
    """Value indices -> 32-bit categorical keys (as uint64), MISSING_KEY where idx < 0.

    idx: (C, B) int64, row f holding field f's indices in [0, 2^32); salts: (C,) uint64. Within a field the map
    is a bijection (offset, fmix32, xor), so distinct values never collide; keys look random and differ by field.
    """
    offset = (salts & np.uint64(0xFFFFFFFF)).astype(np.uint32)[:, None]
    flip = (salts >> np.uint64(32)).astype(np.uint32)[:, None]
    with np.errstate(over="ignore"):
        k = fmix32(idx.astype(np.uint32) + offset) ^ flip
    return np.where(idx < 0, MISSING_KEY, k.astype(np.uint64))


def hash_uniforms(v: np.ndarray, salt: int | np.uint64, k: int) -> np.ndarray:
    """(N,) value indices -> (N, k) float32 pseudo-random values, uniform on [-sqrt3, sqrt3) (mean 0, var 1).

    A fixed function of (salt, v): lets the teacher give every one of millions of tail values its own random
    effect without storing a table. Four 16-bit lanes per mix64 call.
    """
    v = np.asarray(v, dtype=np.uint64)
    out = np.empty((v.shape[0], k), dtype=np.float32)
    for j in range(0, k, 4):
        h = mix64(v ^ mix64(np.array([salt], dtype=np.uint64) + np.uint64(j)))
        for lane in range(min(4, k - j)):
            bits = (h >> np.uint64(16 * lane)) & np.uint64(0xFFFF)
            out[:, j + lane] = bits.astype(np.float32) * np.float32(1.0 / 65536.0)
    return (out - np.float32(0.5)) * np.float32(math.sqrt(12.0))


def hash_normals(v: np.ndarray, salt: int | np.uint64) -> np.ndarray:
    """(N,) value indices -> (N,) float32 approximately N(0, 1): a scaled sum of 4 hashed uniforms."""
    return hash_uniforms(v, salt, 4).sum(axis=1) * np.float32(0.5)
