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


# Finite is not enough: a push's gradients are summed per id and squared in float32 (Adagrad's accumulator, Adam's
# second moment) or added to the rows (SGD), so |g| near 1.8e19 wrote Inf/NaN into the row or its optimizer state,
# which froze the row and made every later checkpoint of the shard unrestorable (found by test_servicer_fuzz).
# Bounding n * sum(g^2) by 2^96 bounds every per-id sum by 2^48 (Cauchy-Schwarz), so one push adds at most 2^96 to
# a square and even 2^32 such pushes stay finite. Real gradients and dense parameters are far below it.
MAX_SUM_SQ = float(2**96)


def check_grads(g: object, n: int, dim: int, what: str = "grads") -> np.ndarray:
    """-> (n, dim) float32, all finite and n * sum(values^2) <= MAX_SUM_SQ (gradients, or an assign's values)."""
    a = np.asarray(g)
    if a.dtype != np.float32 or a.shape != (n, dim):
        raise InvalidRequest(f"{what} must be float32 of shape ({n}, {dim}), got {a.dtype} {a.shape}")
    flat = a.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        sq = float(np.dot(flat, flat))  # one BLAS pass; NaN/Inf (and overflow) make it NaN/Inf, failing the test
    if not n * sq <= MAX_SUM_SQ:
        if not np.isfinite(a).all():
            raise InvalidRequest(f"{what} contain NaN or Inf")
        raise InvalidRequest(f"{what} too large: {n} rows with sum of squares {sq:g} could sum to more than 2^48 "
                             f"per id, which would overflow float32 optimizer state")
    return a


# lr and init_scale scale float32 rows and gradients: above 2^48 (e.g. a learning rate of 1e30, or 1e300 that is
# Inf as float32) the first pull or push of an accepted table wrote Inf/NaN rows. At most 2^48, a step of an
# accepted push (per-id gradient sums <= 2^48) stays <= 2^96. Positive, finiteness is TableConfig's check.
MAX_SCALE = float(2**48)


def check_scales(lr: float, init_scale: float) -> None:
    """A table's learning rate and init scale must be <= MAX_SCALE (rows stay finite in float32)."""
    for what, v in (("lr", lr), ("init_scale", init_scale)):
        if not v <= MAX_SCALE:
            raise InvalidRequest(f"{what} must be at most 2^48, got {v!r}")


def check_unique(ids: np.ndarray, what: str = "ids") -> None:
    """ids (N,) int64 must hold no duplicates."""
    if ids.shape[0] > 1 and not np.all(ids[1:] > ids[:-1]) and np.unique(ids).shape[0] != ids.shape[0]:
        raise InvalidRequest(f"{what} must be unique")


def check_worker_seq(worker_id: object, seq: object) -> None:
    """worker_id and seq: ints in [0, 2^63) (not bools, not floats)."""
    for name, v in (("worker_id", worker_id), ("seq", seq)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) < 2**63:
            raise InvalidRequest(f"{name} must be an int in [0, 2^63), got {v!r}")
