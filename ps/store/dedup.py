"""Segment-sum a push by row id: sort once, then np.add.reduceat over the runs of equal ids."""

from __future__ import annotations

import numpy as np


def segment_sum(ids: np.ndarray, grads: np.ndarray, *cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """ids (N,) int64, grads (N, d), cols each (N,) -> (unique ids (U,) sorted, summed grads (U, d), [summed cols]).

    Sums run in id order, then push order within an id (stable sort), so results do not depend on the hash layout.
    reduceat over a sorted copy is several times faster than np.add.at on scattered rows."""
    if ids.shape[0] == 0:
        return ids.copy(), grads.copy(), [c.copy() for c in cols]
    if ids.shape[0] == 1 or np.all(ids[1:] > ids[:-1]):  # sorted unique already (workers send np.unique output)
        return ids, grads, list(cols)
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    if s.shape[0] == 1 or np.all(s[1:] != s[:-1]):  # already unique: just reorder
        return s, grads[order], [c[order] for c in cols]
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    return (s[starts], np.add.reduceat(grads[order], starts, axis=0),
            [np.add.reduceat(c[order], starts) for c in cols])
