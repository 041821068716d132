"""Deterministic train/test split keyed on the source line number.

Hashing the line number (not the row's position in a batch) makes the split independent of the batch size, of
which lines were skipped as malformed, and of how many workers read the file.
"""

from __future__ import annotations

import numpy as np

from shark.data.hashing import mix64

_U64 = (1 << 64) - 1


def test_mask(lines: np.ndarray, seed: int, test_fraction: float) -> np.ndarray:
    """(B,) line numbers -> (B,) bool, True for rows in the test set (about `test_fraction` of all lines)."""
    if not 0.0 <= float(test_fraction) <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    salt = mix64(np.uint64(int(seed) & _U64))  # any Python int seed, negative included
    h = mix64(np.asarray(lines).astype(np.uint64) ^ salt)
    u = (h >> np.uint64(11)).astype(np.float64) * 2.0**-53  # top 53 bits -> uniform in [0, 1)
    return u < float(test_fraction)


test_mask.__test__ = False  # type: ignore[attr-defined]  # its name starts with "test": keep pytest from collecting it
