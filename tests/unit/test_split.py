"""The seeded, line-keyed train/test split."""

from __future__ import annotations

import numpy as np
import pytest

from shark.data.split import test_mask as split_mask  # aliased: pytest must not collect it as a test


def test_deterministic_and_seeded() -> None:
    lines = np.arange(1, 100_001, dtype=np.int64)
    a = split_mask(lines, seed=7, test_fraction=0.2)
    assert a.dtype == bool and a.shape == lines.shape
    assert (a == split_mask(lines, seed=7, test_fraction=0.2)).all()
    assert abs(a.mean() - 0.2) < 0.005
    b = split_mask(lines, seed=8, test_fraction=0.2)
    assert 0.05 < (a != b).mean() < 0.6  # another seed, another split
    assert not (split_mask(lines, -3, 0.2) == split_mask(lines, 7, 0.2)).all()  # any int seed works


def test_independent_of_batching_and_skipped_lines() -> None:
    lines = np.arange(1, 10_001, dtype=np.int64)
    whole = split_mask(lines, 1, 0.3)
    chunks = np.concatenate([split_mask(c, 1, 0.3) for c in np.array_split(lines, 7)])
    assert (chunks == whole).all()
    kept = lines[lines % 13 != 0]  # some lines skipped as malformed: the others keep their side
    assert (split_mask(kept, 1, 0.3) == whole[kept - 1]).all()


def test_fraction_edges_and_nesting() -> None:
    lines = np.arange(1, 5001)
    assert not split_mask(lines, 0, 0.0).any() and split_mask(lines, 0, 1.0).all()
    small, big = split_mask(lines, 0, 0.1), split_mask(lines, 0, 0.2)
    assert (big | ~small).all()  # a larger test fraction only adds lines
    with pytest.raises(ValueError):
        split_mask(lines, 0, 1.5)
