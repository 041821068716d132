"""The progressive (test-then-train) log of every committed training segment, on disk beside the journal.

A restarted coordinator resumes an epoch from a mid-epoch checkpoint; the labels and predictions of the segments
committed before it were in its predecessor's memory. Each segment's arrays are written (atomically, .npz, no
pickle) when the segment returns, before the checkpoint that commits it, so the resumed epoch reports its
progressive AUC over every example once. Files of segments after the resume point are overwritten when those
segments run again.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ps.checkpoint.writer import atomic_write


class SegmentLogs:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def _path(self, epoch: int, worker: int, segment: int) -> Path:
        return self.dir / f"epoch{epoch}-worker{worker}-segment{segment:06d}.npz"

    def save(self, epoch: int, worker: int, segment: int, labels: np.ndarray, probs: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, labels=labels, probs=probs)
        atomic_write(self._path(epoch, worker, segment), buf.getvalue())

    def load(self, epoch: int, worker: int, segment: int) -> tuple[np.ndarray, np.ndarray]:
        with np.load(self._path(epoch, worker, segment), allow_pickle=False) as z:
            return z["labels"], z["probs"]
