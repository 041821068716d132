"""StoredRows: rows in the precision a shard stores them in, for the wire (F-Quantization's compressed pulls).

The shard sends each row's tier plus the raw bytes of each tier's pool (fp32, fp16, int8 with its per-row scale);
`decode_stored` turns them into float32 with the same codecs the store uses to read, so a pull in stored precision
gives exactly the floats a float32 pull would, for a fraction of the bytes.

On the wire only, tier code TIER_ABSENT (3) marks a row a read-only pull asked for that is not in the store: its
initial value travels as an fp32 row, so a reader can tell "not created yet" from "stored in fp32".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shark.quant.codecs import fp16_decode, int8_decode
from shark.quant.tiers import TIER_FP16, TIER_FP32, TIER_INT8

TIER_ABSENT = 3  # wire-only: not in the store (read-only pull); the initial value is among the fp32 rows


@dataclass(frozen=True)
class StoredRows:
    tiers: np.ndarray  # (n,) uint8: TIER_FP32 / TIER_FP16 / TIER_INT8 per requested row
    fp32: np.ndarray  # (n_fp32, d) float32: the fp32 rows, in request order
    fp16: np.ndarray  # (n_fp16, d) float16
    int8: np.ndarray  # (n_int8, d) int8
    scales: np.ndarray  # (n_int8,) float32

    @property
    def dim(self) -> int:
        return int(self.fp32.shape[1])

    @staticmethod
    def all_fp32(rows: np.ndarray, tier: int = TIER_FP32) -> StoredRows:
        """Every row as fp32 (tier TIER_ABSENT: none of them is in the store)."""
        d = rows.shape[1]
        return StoredRows(np.full(rows.shape[0], tier, np.uint8), rows, np.zeros((0, d), np.float16),
                          np.zeros((0, d), np.int8), np.zeros(0, np.float32))

    @staticmethod
    def with_absent(present: StoredRows, absent: np.ndarray, initial: np.ndarray) -> StoredRows:
        """Merge the stored rows of the present ids with the initial values of the absent ones: absent (n,) bool
        over the request, present in request order of the ~absent ids, initial (absent.sum(), d) float32."""
        n = absent.shape[0]
        tiers = np.empty(n, np.uint8)
        tiers[~absent], tiers[absent] = present.tiers, TIER_ABSENT
        as_fp32 = (tiers == TIER_FP32) | absent  # the fp32 rows travel in request order, absent ones included
        fp32 = np.empty((int(np.count_nonzero(as_fp32)), initial.shape[1]), np.float32)
        where = np.cumsum(as_fp32) - 1
        fp32[where[absent]] = initial
        fp32[where[(tiers == TIER_FP32) & ~absent]] = present.fp32
        return StoredRows(tiers, fp32, present.fp16, present.int8, present.scales)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.tiers, self.fp32, self.fp16, self.int8, self.scales))


def check_stored(rows: StoredRows, n: int) -> None:
    """Shapes and tier counts must agree before decoding (a malformed reply is refused, not misread)."""
    t = rows.tiers
    if t.shape != (n,) or t.dtype != np.uint8 or (t.size and int(t.max()) > TIER_ABSENT):
        raise ValueError(f"tiers must be ({n},) uint8 in {{0, 1, 2, 3}}")
    counts = np.bincount(t, minlength=4)
    counts[TIER_FP32] += counts[TIER_ABSENT]  # absent rows travel as fp32
    d = rows.fp32.shape[1] if rows.fp32.ndim == 2 else -1
    for name, a, k, dtype in (("fp32", rows.fp32, counts[TIER_FP32], np.float32),
                              ("fp16", rows.fp16, counts[TIER_FP16], np.float16),
                              ("int8", rows.int8, counts[TIER_INT8], np.int8)):
        if a.dtype != dtype or a.ndim != 2 or a.shape != (k, d):
            raise ValueError(f"{name} rows must be {np.dtype(dtype).name} ({k}, {d}), got {a.dtype} {a.shape}")
    if rows.scales.shape != (counts[TIER_INT8],) or rows.scales.dtype != np.float32:
        raise ValueError(f"int8 scales must be float32 ({counts[TIER_INT8]},)")


def decode_stored(rows: StoredRows) -> np.ndarray:
    """-> (n, d) float32, identical to what the store's own read() returns for those rows."""
    t = rows.tiers
    out = np.empty((t.shape[0], rows.dim), dtype=np.float32)
    out[(t == TIER_FP32) | (t == TIER_ABSENT)] = rows.fp32
    if rows.fp16.shape[0]:
        out[t == TIER_FP16] = fp16_decode(rows.fp16)
    if rows.int8.shape[0]:
        out[t == TIER_INT8] = int8_decode(rows.int8, rows.scales)
    return out
