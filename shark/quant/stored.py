"""StoredRows: rows in the precision a shard stores them in, for the wire (F-Quantization's compressed pulls).

The shard sends each row's tier plus the raw bytes of each tier's pool (fp32, fp16, int8 with its per-row scale);
`decode_stored` turns them into float32 with the same codecs the store uses to read, so a pull in stored precision
gives exactly the floats a float32 pull would, for a fraction of the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shark.quant.codecs import fp16_decode, int8_decode
from shark.quant.tiers import TIER_FP16, TIER_FP32, TIER_INT8


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
    def all_fp32(rows: np.ndarray) -> "StoredRows":
        d = rows.shape[1]
        return StoredRows(np.zeros(rows.shape[0], np.uint8), rows, np.zeros((0, d), np.float16),
                          np.zeros((0, d), np.int8), np.zeros(0, np.float32))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.tiers, self.fp32, self.fp16, self.int8, self.scales))


def check_stored(rows: StoredRows, n: int) -> None:
    """Shapes and tier counts must agree before decoding (a malformed reply is refused, not misread)."""
    t = rows.tiers
    if t.shape != (n,) or t.dtype != np.uint8 or (t.size and int(t.max()) > TIER_INT8):
        raise ValueError(f"tiers must be ({n},) uint8 in {{0, 1, 2}}")
    counts = np.bincount(t, minlength=3)
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
    out[t == TIER_FP32] = rows.fp32
    if rows.fp16.shape[0]:
        out[t == TIER_FP16] = fp16_decode(rows.fp16)
    if rows.int8.shape[0]:
        out[t == TIER_INT8] = int8_decode(rows.int8, rows.scales)
    return out
