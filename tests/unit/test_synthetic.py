"""The synthetic Criteo-like generator: determinism, schema, distributions, ground truth, TSV output."""

from __future__ import annotations

import dataclasses
import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shark.data.batch import MISSING_KEY, RawBatch
from shark.data.synthetic import CatSpec, DenseSpec, PowerLaw, SynthConfig, SyntheticCriteo, format_tsv


@pytest.fixture(scope="module")
def gen() -> SyntheticCriteo:
    return SyntheticCriteo(SynthConfig(seed=0))


def _concat(batches: list[RawBatch]) -> RawBatch:
    cat = lambda name: np.concatenate([getattr(b, name) for b in batches])  # noqa: E731
    return RawBatch(labels=cat("labels"), dense=cat("dense"), keys=cat("keys"), lines=cat("lines"))


def _assert_same(a: RawBatch, b: RawBatch) -> None:
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.dense, b.dense)  # NaNs compare equal here
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.lines, b.lines)


def test_schema_and_dtypes(gen: SyntheticCriteo) -> None:
    raw = next(iter(gen.batches(1000, 1000)))
    assert raw.labels.dtype == np.float32 and raw.labels.shape == (1000,)
    assert raw.dense.dtype == np.float32 and raw.dense.shape == (1000, 13)
    assert raw.keys.dtype == np.uint64 and raw.keys.shape == (1000, 26)
    assert set(np.unique(raw.labels)) <= {0.0, 1.0}
    present = raw.keys[raw.keys != MISSING_KEY]
    assert present.max() < 2**32  # 8 hex chars
    d = raw.dense[~np.isnan(raw.dense)]
    assert np.all(d == np.floor(d)) and d.min() >= -1  # integer counts; only -1 below zero
    assert np.any(raw.dense[:, 1] == -1)  # I2 is -1 sometimes
    assert (raw.dense[:, 1] < 0).mean() < 0.2 and np.all(np.nan_to_num(np.delete(raw.dense, 1, axis=1)) >= 0)


def test_deterministic_and_independent_of_batch_size(gen: SyntheticCriteo) -> None:
    n = 34_000  # crosses the 32768-row block boundary
    ref = _concat(list(gen.batches(n, 4096)))
    assert len(ref) == n
    np.testing.assert_array_equal(ref.lines, np.arange(1, n + 1))
    for bs in (1000, 7, n + 5):
        if bs == 7:
            got = _concat(list(gen.batches(300, bs)))
            _assert_same(got, _concat([ref.take(np.arange(300))]))
            continue
        batches = list(gen.batches(n, bs))
        assert all(len(b) == bs for b in batches[:-1]) and len(batches[-1]) <= bs
        _assert_same(_concat(batches), ref)
    again = _concat(list(SyntheticCriteo(SynthConfig(seed=0)).batches(n, 5000)))
    _assert_same(again, ref)
    # A row range starting mid-stream (and mid-block) is the same rows, with global line numbers.
    part = _concat(list(gen.batches(2000, 512, start=32_000)))
    _assert_same(part, ref.take(np.arange(32_000, 34_000)))


def test_truth_matches_batches(gen: SyntheticCriteo) -> None:
    pairs = list(gen.batches_with_truth(20_000, 3000, split="test"))
    raw = _concat([r for r, _ in pairs])
    p = np.concatenate([p for _, p in pairs])
    _assert_same(raw, _concat(list(gen.batches(20_000, 8192, split="test"))))
    assert p.dtype == np.float32 and p.shape == (20_000,) and np.all((p > 0) & (p < 1))
    assert abs(raw.labels.mean() - p.mean()) < 0.015  # labels ~ Bernoulli(p)


def test_train_and_test_streams_differ(gen: SyntheticCriteo) -> None:
    tr = next(iter(gen.batches(5000, 5000, split="train")))
    te = next(iter(gen.batches(5000, 5000, split="test")))
    np.testing.assert_array_equal(tr.lines, te.lines)  # both count their own rows from 1
    row = lambda b: {hash(k.tobytes()) for k in np.hstack([b.keys, b.dense.view(np.uint32)])}  # noqa: E731
    assert not row(tr) & row(te)
    assert (tr.keys == te.keys).mean() < 0.5  # frequent values coincide, streams do not


def test_positive_rate_and_teacher_auc(gen: SyntheticCriteo) -> None:
    labels = np.concatenate([b.labels for b in gen.batches(100_000, 50_000, split="test")])
    assert 0.23 <= labels.mean() <= 0.27
    assert 0.75 <= gen.teacher_auc(100_000) <= 0.85


def test_field_ranking_is_ground_truth(gen: SyntheticCriteo) -> None:
    ranking = gen.field_ranking(n_rows=40_000)
    assert len(ranking) == 39 and len({f.name for f in ranking}) == 39
    imps = [f.importance for f in ranking]
    assert imps == sorted(imps, reverse=True)
    by_role = {r: [f.importance for f in ranking if f.role == r] for r in ("strong", "weak", "noise", "duplicate")}
    assert all(by_role.values())
    assert min(by_role["strong"]) > max(by_role["weak"]) > 0
    assert min(by_role["weak"]) > 0 and max(by_role["noise"]) == 0 and max(by_role["duplicate"]) == 0
    dups = {f.name: f.duplicate_of for f in ranking if f.role == "duplicate"}
    assert dups == {"C9": "C6", "C12": "C3", "C16": "C4", "C25": "C19"}
    cards = {f.name: f.cardinality for f in ranking}
    assert cards["C3"] == 5_000_000 and cards["I1"] is None
    assert gen.field_ranking(n_rows=40_000) == ranking  # cached
    grouped = gen.field_ranking(n_rows=40_000, group_dense=True)
    assert [f.name for f in grouped].count("dense") == 1 and len(grouped) == 27
    assert ranking[0].to_dict()["name"] == ranking[0].name


def test_cardinality_skew_keys_and_duplicates(gen: SyntheticCriteo) -> None:
    cfg = gen.config
    idx = gen.value_indices(50_000)
    raw = _concat(list(gen.batches(50_000, 50_000)))
    for f, spec in enumerate(cfg.cat):
        col, keys = idx[:, f], raw.keys[:, f]
        assert col.min() >= -1 and col.max() < spec.cardinality
        np.testing.assert_array_equal(col < 0, keys == MISSING_KEY)
        # value -> key is a bijection within a field: as many distinct keys as distinct values
        assert np.unique(keys[col >= 0]).size == np.unique(col[col >= 0]).size
        if spec.role != "duplicate" and spec.cardinality >= 100:
            _, counts = np.unique(col[col >= 0], return_counts=True)
            assert np.argmax(np.bincount(col[col >= 0])) == 0  # index 0 is the most frequent value
            assert counts.max() >= 20 * np.median(counts)  # Zipf: a head and a long tail
    assert np.unique(idx[:, cfg.cat_index("C3")]).size > 10_000  # millions of values: a long tail shows up
    c6, c9 = idx[:, cfg.cat_index("C6")], idx[:, cfg.cat_index("C9")]
    for v in np.unique(c6):  # a duplicate is a function of its source
        assert np.unique(c9[c6 == v]).size == 1
    np.testing.assert_array_equal(idx[:, cfg.cat_index("C12")], idx[:, cfg.cat_index("C3")])  # relabelling
    assert not np.array_equal(raw.keys[:, cfg.cat_index("C12")], raw.keys[:, cfg.cat_index("C3")])


def test_missing_rates(gen: SyntheticCriteo) -> None:
    cfg = gen.config
    raw = _concat(list(gen.batches(50_000, 50_000)))
    for f, spec in enumerate(cfg.cat):
        src = cfg.cat[cfg.cat_index(spec.duplicate_of)] if spec.duplicate_of else spec
        assert abs((raw.keys[:, f] == MISSING_KEY).mean() - src.missing) < 0.01, spec.name
    for d, spec in enumerate(cfg.dense):
        assert abs(np.isnan(raw.dense[:, d]).mean() - spec.missing) < 0.01, spec.name
    miss = raw.keys == MISSING_KEY
    assert (miss[:, cfg.cat_index("C1")] == 0).all()  # some fields are never missing
    col = lambda name: miss[:, cfg.cat_index(name)]  # noqa: E731
    # A missing group goes missing together: C3, C4, C24 (~3.4%); the noise fields C20 and C26 (~45%).
    np.testing.assert_array_equal(col("C3"), col("C24"))
    np.testing.assert_array_equal(col("C20"), col("C26"))
    # Noise fields go missing independently of the fields the teacher reads (else they would carry their signal):
    # joint rates are the products of the marginals, not the marginals as for a shared group.
    nan = np.isnan(raw.dense)
    dcol = lambda name: nan[:, cfg.dense_names.index(name)]  # noqa: E731
    for noise, read in (("C20", "C19"), ("C26", "C19"), ("C21", "C3"), ("I4", "I3"), ("I10", "I1")):
        a, b = (col(noise), col(read)) if noise.startswith("C") else (dcol(noise), dcol(read))
        assert abs((a & b).mean() - a.mean() * b.mean()) < 0.01, (noise, read)


def test_noise_fields_missingness_is_independent_of_label(gen: SyntheticCriteo) -> None:
    raw = _concat(list(gen.batches(100_000, 50_000)))
    for name in ("C20", "C21", "C26", "C22"):
        missing = raw.keys[:, gen.config.cat_index(name)] == MISSING_KEY
        # positive rate ~0.25; the standard error of each side is < 0.005 at these counts (C21: ~3.4k missing rows)
        assert abs(raw.labels[missing].mean() - raw.labels[~missing].mean()) < 0.025, name
    missing = raw.keys[:, gen.config.cat_index("C19")] == MISSING_KEY  # a weak field: its missingness matters
    assert abs(raw.labels[missing].mean() - raw.labels[~missing].mean()) > 0.025


@pytest.mark.parametrize("suffix", [".tsv", ".tsv.gz"])
def test_write_tsv_round_trip(gen: SyntheticCriteo, tmp_path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    seen: list[int] = []
    assert gen.write_tsv(path, 3000, split="test", progress=seen.append) == 3000
    assert seen[-1] == 3000 and not (tmp_path / f"out{suffix}.part").exists()
    opener = gzip.open if suffix.endswith(".gz") else open
    with opener(path, "rt") as fh:
        lines = fh.read().split("\n")
    assert lines[-1] == "" and len(lines) == 3001
    ref = _concat(list(gen.batches(3000, 3000, split="test")))
    for i, line in enumerate(lines[:-1]):
        fields = line.split("\t")
        assert len(fields) == 40
        assert float(fields[0]) == ref.labels[i]
        for j, s in enumerate(fields[1:14]):
            x = ref.dense[i, j]
            assert (s == "") if np.isnan(x) else (int(s) == x)
        for j, s in enumerate(fields[14:]):
            k = ref.keys[i, j]
            if k == MISSING_KEY:
                assert s == ""
            else:
                assert len(s) == 8 and s == s.lower() and int(s, 16) == k


def test_format_tsv_vectorised_matches_simple_formatter(gen: SyntheticCriteo) -> None:
    raw = next(iter(gen.batches(500, 500, split="valid")))
    text = bytes(format_tsv(raw)).decode()

    def simple(i: int) -> str:
        dense = ["" if np.isnan(x) else str(int(x)) for x in raw.dense[i]]
        keys = ["" if k == MISSING_KEY else f"{int(k):08x}" for k in raw.keys[i]]
        return "\t".join([str(int(raw.labels[i]))] + dense + keys)

    assert text == "".join(simple(i) + "\n" for i in range(len(raw)))


def test_different_seeds_differ() -> None:
    a, b = SyntheticCriteo(SynthConfig(seed=1)), SyntheticCriteo(SynthConfig(seed=2))
    ra, rb = next(iter(a.batches(2000, 2000))), next(iter(b.batches(2000, 2000)))
    assert not np.array_equal(ra.keys, rb.keys) and not np.array_equal(ra.labels, rb.labels)
    assert a.teacher.bias != b.teacher.bias


def test_knobs_move_teacher_auc() -> None:
    weak = SyntheticCriteo(SynthConfig(signal_scale=0.5, calibration_rows=20_000))
    assert weak.teacher_auc(30_000) < 0.72
    assert abs(np.concatenate([b.labels for b in weak.batches(30_000, 30_000)]).mean() - 0.25) < 0.015
    rate = SyntheticCriteo(SynthConfig(positive_rate=0.1, calibration_rows=20_000))
    assert abs(np.concatenate([b.labels for b in rate.batches(30_000, 30_000)]).mean() - 0.1) < 0.01


def test_bad_arguments_raise(gen: SyntheticCriteo) -> None:
    with pytest.raises(ValueError, match="split"):
        gen.batches(10, split="validation")
    with pytest.raises(ValueError, match="batch_size"):
        gen.batches(10, batch_size=0)
    with pytest.raises(ValueError, match="n_rows"):
        gen.batches(-1)
    assert list(gen.batches(0)) == []


@pytest.mark.parametrize("change, match", [
    (dict(seed=-1), "seed"),
    (dict(positive_rate=1.0), "positive_rate"),
    (dict(tail_signal=-0.1), "tail_signal"),
    (dict(interactions=(("C1", "C8", 0.1),)), "strong or weak"),
    (dict(cat=(CatSpec("C1", 10, role="duplicate", duplicate_of="C9"),)), "duplicate_of"),
    (dict(cat=(CatSpec("A", 10, role="strong", scale=0.5), CatSpec("B", 11, role="duplicate", duplicate_of="A"))),
     "more values"),
    (dict(dense=(DenseSpec("I1", 1.0, 1.0), DenseSpec("I1", 1.0, 1.0))), "unique"),
    (dict(cat=(CatSpec("A", 10, role="weak", scale=0.3, missing=0.1, missing_group=1),
               CatSpec("N", 10, role="noise", missing=0.1, missing_group=1))), r"group 1 mixes noise fields \['N'\]"),
    (dict(dense=(DenseSpec("X", 1.0, 1.0, missing=0.2, role="weak", scale=0.2, missing_group=4),
                 DenseSpec("Y", 1.0, 1.0, missing=0.2, missing_group=4))), r"\['Y'\] with fields the teacher reads"),
])
def test_config_validation(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(SynthConfig(), **change)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="C", cardinality=0), "cardinality"),
    (dict(name="C", cardinality=5, missing=1.0), "missing"),
    (dict(name="C", cardinality=5, role="noise", scale=0.3), "scale 0"),
    (dict(name="C", cardinality=5, role="strong", scale=0.0), "scale > 0"),
    (dict(name="C", cardinality=5, zipf=-1.0), "zipf"),
])
def test_catspec_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CatSpec(**kwargs)


def test_small_custom_config() -> None:
    cfg = SynthConfig(seed=3, cat=(CatSpec("A", 3, 2.0, role="strong", scale=1.0),
                                   CatSpec("B", 1000, 1.0, 0.2, role="weak", scale=0.3),
                                   CatSpec("D", 7, role="duplicate", duplicate_of="B")),
                      dense=(DenseSpec("X", 1.0, 1.0, role="strong", scale=0.5),), interactions=(("A", "B", 0.2),),
                      block_rows=1024, calibration_rows=5000)
    g = SyntheticCriteo(cfg)
    raw = _concat(list(g.batches(3000, 1000)))
    assert raw.keys.shape == (3000, 3) and raw.dense.shape == (3000, 1)
    assert [f.name for f in g.field_ranking(5000)][-1] == "D"
    text = bytes(format_tsv(raw)).decode().split("\n")[0]
    assert len(text.split("\t")) == 5


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 10**7), s=st.floats(0.0, 3.0))
def test_power_law_support_and_mass(n: int, s: float) -> None:
    law = PowerLaw(n, s)
    u = np.concatenate([np.random.default_rng(0).random(2000), [0.0, np.nextafter(1.0, 0.0)]])
    v = law.sample(u)
    assert v.min() >= 0 and v.max() < n
    assert abs(float(law.cdf(n + 1.0)) - 1.0) < 1e-9
    h = law.head_size(1e-3)
    assert 0 <= h <= min(n, 1000)
    assert h == n or float(law.pmf(h)) < 1e-3 <= (float(law.pmf(h - 1)) if h else 1.0)


def test_power_law_matches_its_pmf() -> None:
    law = PowerLaw(50, 1.2)
    v = law.sample(np.random.default_rng(1).random(200_000))
    freq = np.bincount(v, minlength=50) / v.size
    np.testing.assert_allclose(freq, law.pmf(np.arange(50)), atol=0.004)
    assert abs(law.pmf(np.arange(50)).sum() - 1.0) < 1e-12
