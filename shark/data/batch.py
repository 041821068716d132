"""The two batch types that flow through the data pipeline.

A reader yields `RawBatch` (raw values, as in the file); `FeatureTransform` turns it into `Batch`
(model inputs: transformed dense features and per-table row ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

# Key used for a missing categorical value: it hashes to its own row like any other value.
MISSING_KEY = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True)
class RawBatch:
    labels: np.ndarray  # (B,) float32, 0.0 or 1.0
    dense: np.ndarray  # (B, D) float32 raw values, NaN = missing
    keys: np.ndarray  # (B, C) uint64 raw categorical keys, MISSING_KEY = missing
    lines: np.ndarray  # (B,) int64 1-based physical line number in the source (row index for generated data)

    def __post_init__(self) -> None:
        b = self.labels.shape[0]
        if self.dense.shape[0] != b or self.keys.shape[0] != b or self.lines.shape[0] != b:
            raise ValueError(
                f"RawBatch arrays disagree on batch size: labels {self.labels.shape}, dense {self.dense.shape}, "
                f"keys {self.keys.shape}, lines {self.lines.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, mask_or_index: np.ndarray) -> "RawBatch":
        """Rows selected by a boolean mask or an index array (used by train/test splits)."""
        return RawBatch(
            labels=self.labels[mask_or_index],
            dense=self.dense[mask_or_index],
            keys=self.keys[mask_or_index],
            lines=self.lines[mask_or_index],
        )


@dataclass(frozen=True)
class Batch:
    labels: np.ndarray  # (B,) float32
    dense: np.ndarray  # (B, D) float32, transformed (finite)
    ids: np.ndarray  # (B, C) int64, row id in [0, capacity[t]) of table t

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def first_rows(batches: Iterable[RawBatch], n: int) -> Iterator[RawBatch]:
    """The first n rows of a batch stream (the last batch cut); stops reading once they are out."""
    for raw in batches:
        if n <= 0:
            return
        if len(raw) > n:
            raw = raw.take(np.arange(len(raw)) < n)
        n -= len(raw)
        yield raw


def after_rows(batches: Iterable[RawBatch], n: int) -> Iterator[RawBatch]:
    """A batch stream without its first n rows."""
    for raw in batches:
        if n >= len(raw):
            n -= len(raw)
            continue
        if n > 0:
            raw, n = raw.take(np.arange(len(raw)) >= n), 0
        yield raw
