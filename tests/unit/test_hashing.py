"""Properties of the stable hashing helpers and the hashing-trick transform."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shark.data.batch import MISSING_KEY, RawBatch
from shark.data.hashing import hash_strings, mix64
from shark.data.transforms import FeatureTransform

def _fnv1a_reference(data: bytes) -> int:
    """Plain-Python FNV-1a 64 + length + splitmix64: what hash_strings promises, salt-free in every process."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFF_FFFF_FFFF_FFFF
    z = ((h ^ len(data)) + 0x9E3779B97F4A7C15) & 0xFFFF_FFFF_FFFF_FFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFF_FFFF_FFFF_FFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFF_FFFF_FFFF_FFFF
    return z ^ (z >> 31)


# NUL is left out: numpy's fixed-width strings drop trailing NULs, so "a\0" and "a" share a key (harmless for text).
text_no_nul = st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12)


@given(st.lists(text_no_nul, min_size=1, max_size=40))
def test_hash_strings_stable_and_equal_for_equal_strings(values: list[str]) -> None:
    keys = hash_strings(np.array(values, dtype=object))
    assert keys.dtype == np.uint64 and keys.shape == (len(values),)
    assert [int(k) for k in keys] == [_fnv1a_reference(v.encode("utf-8")) for v in values]
    # Equal strings -> equal keys, whatever the array's width, dtype or position.
    again = hash_strings(np.array(list(reversed(values)) + ["x" * 40]))[: len(values)][::-1]
    assert (again == keys).all()
    as_bytes = hash_strings(np.array([v.encode("utf-8") for v in values], dtype=object))
    assert (as_bytes == keys).all()


def test_hash_strings_known_values_distinct() -> None:
    keys = hash_strings(np.array(["", "a", "b", "ab", "ba", "1", "01"]))
    assert len(set(int(k) for k in keys)) == 7


@settings(max_examples=50)
@given(st.lists(st.integers(1, 2**40), min_size=1, max_size=8), st.integers(0, 2**31), st.integers(1, 64))
def test_feature_transform_ids_in_range(capacities: list[int], seed: int, rows: int) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**63, size=(rows, len(capacities)), dtype=np.uint64)
    keys[0, 0] = MISSING_KEY
    ft = FeatureTransform(capacities=tuple(capacities), seed=seed)
    ids = ft.table_ids(keys)
    assert ids.dtype == np.int64 and ids.shape == keys.shape
    assert (ids >= 0).all() and (ids < np.array(capacities)[None, :]).all()
    assert (ft.table_ids(keys) == ids).all()  # deterministic


def test_feature_transform_batch() -> None:
    raw = RawBatch(labels=np.array([1, 0], np.float32), dense=np.array([[np.nan, -1.0], [3.0, 0.0]], np.float32),
                   keys=np.array([[1, MISSING_KEY], [2, 3]], np.uint64), lines=np.array([1, 2]))
    batch = FeatureTransform.uniform(2, 10)(raw)
    assert np.isfinite(batch.dense).all() and batch.dense[0, 0] == 0.0
    assert ((batch.ids >= 0) & (batch.ids < 10)).all()


def test_mix64_bijective_sample() -> None:
    x = np.arange(100_000, dtype=np.uint64)
    assert np.unique(mix64(x)).shape[0] == x.shape[0]
