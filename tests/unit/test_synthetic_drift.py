"""Concept drift in the synthetic generator: drift-free configs give exactly the data they gave before, rows stay a
function of (seed, split, position), and from the drift point on the hot values and the teacher change."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from shark.data.batch import MISSING_KEY, RawBatch
from shark.data.synthetic import SynthConfig, SyntheticCriteo
from shark.metrics import auc
from shark.train.data_plan import DataPlan, DataSpec

DRIFT_AT = 40_000  # not a multiple of the block size: one block holds rows of both concepts


def _digest(gen: SyntheticCriteo, n: int, start: int, skip: tuple[str, ...] = ()) -> str:
    """sha256 of labels, dense, keys and lines of both splits; `skip` leaves those fields' columns out."""
    cfg = gen.config
    cat = [j for j, name in enumerate(cfg.cat_names) if name not in skip]
    dense = [j for j, name in enumerate(cfg.dense_names) if name not in skip]
    h = hashlib.sha256()
    for split in ("train", "test"):
        for raw in gen.batches(n, 7000, split=split, start=start):
            for a in (raw.labels, raw.dense[:, dense], raw.keys[:, cat], raw.lines):
                h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _rows(gen: SyntheticCriteo, n: int, start: int) -> RawBatch:
    parts = list(gen.batches(n, n, start=start))
    assert len(parts) == 1
    return parts[0]


@pytest.fixture(scope="module")
def drifting() -> SyntheticCriteo:
    return SyntheticCriteo(SynthConfig(seed=3, drift_at=DRIFT_AT))


def test_drift_free_data_is_unchanged() -> None:
    # Pinned before drift existed (same seed, rows, splits and batch size): the default data did not change,
    # except the columns of the noise fields C20, C21, C26, I4 and I10, whose missingness was made independent of
    # the fields the teacher reads: the second digest (everything else: labels, other columns, lines) was pinned
    # before that change, the first after it.
    # (The digests cover float bytes: a numpy whose exp/log round differently would change them too.)
    gen = SyntheticCriteo(SynthConfig(seed=3))
    assert gen.drift is None
    assert _digest(gen, 40_000, 30_000) == "183ec4837d0d30c1f6bfea3ae939d923185a5cbe039aa253a1fdedf76b111e46"
    moved = ("C20", "C21", "C26", "I4", "I10")
    assert _digest(gen, 40_000, 30_000, moved) == "b6a50353489d1e36ba85613e98a85188daffe833af903163dd56ea3760f870ac"


def test_rows_before_the_drift_point_are_the_drift_free_rows(drifting: SyntheticCriteo) -> None:
    plain = SyntheticCriteo(SynthConfig(seed=3))
    a, b = _rows(plain, DRIFT_AT, 0), _rows(drifting, DRIFT_AT, 0)
    for name in ("labels", "dense", "keys", "lines"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    after_a, after_b = _rows(plain, 5000, DRIFT_AT), _rows(drifting, 5000, DRIFT_AT)
    np.testing.assert_array_equal(after_a.dense, after_b.dense)  # same draws ...
    present = after_a.keys != MISSING_KEY
    assert np.array_equal(present, after_b.keys != MISSING_KEY)
    assert (after_a.keys[present] != after_b.keys[present]).mean() > 0.9  # ... other values


def test_drifting_rows_are_a_function_of_position(drifting: SyntheticCriteo) -> None:
    again = SyntheticCriteo(SynthConfig(seed=3, drift_at=DRIFT_AT))
    whole = _rows(drifting, 20_000, DRIFT_AT - 10_000)
    pieces = list(again.batches(20_000, 3000, start=DRIFT_AT - 10_000))
    for name in ("labels", "keys", "lines"):
        np.testing.assert_array_equal(getattr(whole, name), np.concatenate([getattr(p, name) for p in pieces]))
    resumed = _rows(again, 4000, DRIFT_AT + 1234)  # resuming mid-stream (a checkpoint) gives the same rows
    np.testing.assert_array_equal(resumed.keys, whole.keys[11_234:15_234])
    np.testing.assert_array_equal(resumed.labels, whole.labels[11_234:15_234])


def test_hot_values_swap_at_the_drift(drifting: SyntheticCriteo) -> None:
    n = 30_000
    before, after = _rows(drifting, n, DRIFT_AT - n), _rows(drifting, n, DRIFT_AT)
    old, new = drifting.hot_keys(8), drifting.hot_keys(8, second_concept=True)
    for f, name in enumerate(drifting.config.cat_names):
        if name not in old or drifting.config.cat[f].cardinality < 100:
            continue
        assert not np.intersect1d(old[name], new[name]).size
        def share(raw: RawBatch, keys: np.ndarray, f: int = f) -> float:
            return float(np.isin(raw.keys[:, f], keys).mean())

        assert share(before, old[name]) > 0.05 and share(before, new[name]) < 0.005, name
        assert share(after, new[name]) > 0.05 and share(after, old[name]) < 0.005, name


def test_second_teacher_has_other_effects(drifting: SyntheticCriteo) -> None:
    n = 60_000
    raw, p_new = next(drifting.batches_with_truth(n, n, start=DRIFT_AT))
    assert abs(raw.labels.mean() - drifting.config.positive_rate) < 0.02  # its own calibrated bias
    assert auc(raw.labels, p_new) > 0.75  # as learnable as the first concept
    # The first teacher's view of the same draws (the drift-free generator) predicts the new labels far worse:
    # only the dense features' effects (set by the config, not the seed) are shared.
    _, p_old = next(SyntheticCriteo(SynthConfig(seed=3)).batches_with_truth(n, n, start=DRIFT_AT))
    assert auc(raw.labels, p_old) < auc(raw.labels, p_new) - 0.12
    assert drifting.field_ranking(20_000)[0].role == "strong"  # the ground truth is the first concept's


def test_drift_every_flips_back_and_forth() -> None:
    cfg = SynthConfig(seed=1, drift_at=1000, drift_every=500)
    rows = np.array([0, 999, 1000, 1499, 1500, 1999, 2000, 2499, 2500])
    assert cfg.concept_of(rows).tolist() == [False, False, True, True, False, False, True, True, False]
    assert not SynthConfig(seed=1).concept_of(rows).any()
    gen = SyntheticCriteo(cfg)
    base = SyntheticCriteo(SynthConfig(seed=1))
    np.testing.assert_array_equal(_rows(gen, 500, 1500).keys, _rows(base, 500, 1500).keys)  # back to the first


@pytest.mark.parametrize("kw, match", [
    ({"drift_at": -1}, "drift_at"), ({"drift_at": 1.5}, "drift_at"), ({"drift_at": True}, "drift_at"),
    ({"drift_every": 10}, "drift_every needs drift_at"), ({"drift_at": 5, "drift_every": -2}, "drift_every"),
])
def test_drift_knobs_are_validated(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SynthConfig(**kw)


def test_data_spec_carries_drift_to_the_generator() -> None:
    plan = DataPlan(DataSpec(stream=True, drift_at=5000, drift_every=7000), 1000, 1000)
    assert plan.generator.config.drift_at == 5000 and plan.generator.config.drift_every == 7000
    assert plan.describe()["drift_at"] == 5000
    assert DataPlan(DataSpec(stream=True), 1000, 1000).generator.drift is None
    with pytest.raises(ValueError, match="needs --data synthetic"):
        DataSpec(source="x.tsv", drift_at=5)
    with pytest.raises(ValueError, match="drift_every needs drift_at"):
        DataSpec(drift_every=5)


@pytest.mark.parametrize("row", [0, 4000, 64_000, 100_000, 128_000, 197_000])
def test_stream_examples_at_matches_the_workers_streams(row: int) -> None:
    """Where each worker first takes a row >= `row`, scaled to the merged curve (parts x local examples)."""
    import itertools

    plan = DataPlan(DataSpec(stream=True), 1000, 1000)  # groups of 32 batches of 1000 rows
    parts, local = 3, []
    for w in range(parts):
        for k, b in enumerate(itertools.islice(plan.stream_batches(w, parts), 200)):
            if b.lines.max() > row:  # lines are row + 1
                local.append(k * 1000 + int(np.argmax(b.lines > row)))
                break
    assert plan.stream_examples_at(row, parts) == (parts * min(local), parts * max(local))
    assert plan.stream_examples_at(2 * 32_000 * 4, 2) == (256_000, 256_000)  # a multiple of parts x group rows
