"""Request checks, all done before any mutation so that a rejected request leaves the store byte-identical."""

from __future__ import annotations

import numpy as np

from ps.store.errors import InvalidRequest


def check_ids(ids: object, capacity: int, what: str = "ids") -> np.ndarray:
    """-> (N,) int64 ids, each in [0, capacity)."""
    a = np.asarray(ids)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise InvalidRequest(f"{what} must be a 1-D integer array, got dtype {a.dtype} shape {a.shape}")
    if a.shape[0] and (int(a.min()) < 0 or int(a.max()) >= capacity):
        raise InvalidRequest(f"{what} must lie in [0, {capacity}), got range [{int(a.min())}, {int(a.max())}]")
    return a.astype(np.int64, copy=False)


def check_counts(c: object, n: int, what: str) -> np.ndarray:
    """-> (n,) int64 non-negative counts."""
    a = np.asarray(c)
    if a.shape != (n,) or a.dtype.kind not in "iu":
        raise InvalidRequest(f"{what} must be a ({n},) integer array, got dtype {a.dtype} shape {a.shape}")
    if a.dtype == np.uint32:  # the wire's dtype: in range by construction, skip the two reductions
        return a.astype(np.int64)
    if n and (int(a.min()) < 0 or int(a.max()) >= 2**32):  # < 2^32 each: their sums cannot overflow int64
        raise InvalidRequest(f"{what} must lie in [0, 2^32)")
    return a.astype(np.int64, copy=False)


def check_grads(g: object, n: int, dim: int, what: str = "grads") -> np.ndarray:
    """-> (n, dim) float32, all finite (gradients, or the values of an assign)."""
    a = np.asarray(g)
    if a.dtype != np.float32 or a.shape != (n, dim):
        raise InvalidRequest(f"{what} must be float32 of shape ({n}, {dim}), got {a.dtype} {a.shape}")
    if not np.isfinite(a).all():
        raise InvalidRequest(f"{what} contain NaN or Inf")
    return a


def check_unique(ids: np.ndarray, what: str = "ids") -> None:
    """ids (N,) int64 must hold no duplicates."""
    if ids.shape[0] > 1 and not np.all(ids[1:] > ids[:-1]) and np.unique(ids).shape[0] != ids.shape[0]:
        raise InvalidRequest(f"{what} must be unique")


def check_worker_seq(worker_id: object, seq: object) -> None:
    """worker_id and seq: ints in [0, 2^63) (not bools, not floats)."""
    for name, v in (("worker_id", worker_id), ("seq", seq)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) < 2**63:
            raise InvalidRequest(f"{name} must be an int in [0, 2^63), got {v!r}")
