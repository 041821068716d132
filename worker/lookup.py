"""BatchRows: one batch's row ids deduplicated per table, with the inverse map the model needs.

All tables are deduplicated with a single np.unique over "global" ids (table offset + local id), then cut back
into per-table segments: one sort per batch, not one per table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchRows:
    tables: tuple[str, ...]
    ids: dict[str, np.ndarray]  # table -> (U_t,) sorted unique local row ids (int64)
    inverse: np.ndarray  # (B, T) int64 index into the concatenation of the per-table segments, table order
    c_pos: dict[str, np.ndarray]  # table -> (U_t,) uint32 positive examples per row in this batch
    c_neg: dict[str, np.ndarray]  # table -> (U_t,) uint32 negative examples per row

    @property
    def n_unique(self) -> int:
        return int(self.inverse.max()) + 1 if self.inverse.size else 0

    def split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """(U, ...) concatenated per-row values -> table -> its segment (views)."""
        out, lo = {}, 0
        for t in self.tables:
            hi = lo + self.ids[t].shape[0]
            out[t] = rows[lo:hi]
            lo = hi
        return out


def batch_rows(tables: tuple[str, ...], ids: np.ndarray, capacities: tuple[int, ...],
               labels: np.ndarray | None = None) -> BatchRows:
    """ids (B, T) local row ids of `tables` (column t belongs to tables[t]), labels (B,) 0/1 or None."""
    b, n_t = ids.shape
    if n_t != len(tables) or len(capacities) != n_t:
        raise ValueError(f"ids have {n_t} columns for {len(tables)} tables and {len(capacities)} capacities")
    offsets = np.concatenate([[0], np.cumsum(np.asarray(capacities, dtype=np.int64))])
    glob = ids.astype(np.int64) + offsets[None, :-1]
    uniq, inverse = np.unique(glob, return_inverse=True)
    inverse = inverse.reshape(b, n_t)
    bounds = np.searchsorted(uniq, offsets)  # (T+1,) segment starts of each table in uniq
    if labels is None:
        pos = np.zeros(uniq.shape[0], dtype=np.uint32)
        neg = pos
    else:
        y = np.repeat(np.asarray(labels) > 0.5, n_t)  # (B*T,) label of each occurrence, row-major like inverse
        flat = inverse.reshape(-1)
        total = np.bincount(flat, minlength=uniq.shape[0])
        pos_all = np.bincount(flat[y], minlength=uniq.shape[0])
        pos = pos_all.astype(np.uint32)
        neg = (total - pos_all).astype(np.uint32)
    ids_t, cp, cn = {}, {}, {}
    for k, t in enumerate(tables):  # T segments, not rows
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        ids_t[t] = uniq[lo:hi] - offsets[k]
        cp[t], cn[t] = pos[lo:hi], neg[lo:hi]
    return BatchRows(tables=tuple(tables), ids=ids_t, inverse=inverse, c_pos=cp, c_neg=cn)
