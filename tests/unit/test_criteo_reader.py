"""The Criteo text reader: real samples, bad-line policy, exact line numbers, file errors, batching."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shark.data.bad_lines import BadLinePolicy, ReadReport
from shark.data.batch import MISSING_KEY, RawBatch
from shark.data.columns import _hex_keys
from shark.data.criteo import read_criteo
from shark.data.errors import DataError
from tests.shared_data import shared_file


def read_all(batches) -> RawBatch:
    parts = list(batches)
    return RawBatch(labels=np.concatenate([b.labels for b in parts]), dense=np.concatenate([b.dense for b in parts]),
                    keys=np.concatenate([b.keys for b in parts]), lines=np.concatenate([b.lines for b in parts]))


def reference_parse(path: Path) -> RawBatch:
    """The slow obvious parse, following SOURCE.md: gzip text, split on tabs, empty = missing."""
    labels, dense, keys = [], [], []
    with gzip.open(path, "rt") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            labels.append(float(fields[0]))
            dense.append([float(v) if v else np.nan for v in fields[1:14]])
            keys.append([int(v, 16) if v else int(MISSING_KEY) for v in fields[14:]])
    return RawBatch(labels=np.array(labels, np.float32), dense=np.array(dense, np.float32),
                    keys=np.array(keys, np.uint64), lines=np.arange(1, len(labels) + 1))


def good_line(i: int) -> str:
    """A valid, deterministic Criteo line derived from i (synthetic, not real data)."""
    dense = ["" if (i + j) % 7 == 0 else str((i * 31 + j) % 500 - (1 if j == 1 else 0)) for j in range(13)]
    cats = ["" if (i + j) % 11 == 0 else f"{(i * 2654435761 + j * 97) % 2**32:08x}" for j in range(26)]
    return "\t".join([str(i % 3 == 0 and 1 or 0), *dense, *cats])


# --------------------------------------------------------------------------------------------- real samples


def test_kaggle_sample() -> None:
    report = ReadReport()
    data = read_all(read_criteo(shared_file("criteo/criteo_kaggle_sample.txt.gz"), report=report))
    assert len(data) == 9557 and report.rows_ok == 9557 and report.rows_bad == 0
    assert round(float(data.labels.mean()), 4) == 0.2342
    assert (data.lines == np.arange(1, 9558)).all()
    assert data.dense.shape == (9557, 13) and data.keys.shape == (9557, 26)
    assert data.dense.dtype == np.float32 and data.keys.dtype == np.uint64
    # Every value equals a plain-Python parse of the same file (read at test time, never copied here).
    ref = reference_parse(shared_file("criteo/criteo_kaggle_sample.txt.gz"))
    np.testing.assert_array_equal(data.labels, ref.labels)
    np.testing.assert_array_equal(data.dense, ref.dense)
    np.testing.assert_array_equal(data.keys, ref.keys)
    assert np.isnan(data.dense).any() and (data.dense[~np.isnan(data.dense)] < 0).any()  # missing and I2 = -1
    assert (data.keys == MISSING_KEY).any()
    assert "9,557 rows read" in report.summary()


def test_terabyte_sample() -> None:
    data = read_all(read_criteo(shared_file("criteo/criteo_terabyte_sample_1k.txt.gz")))
    assert len(data) == 1000
    assert round(float(data.labels.mean()), 3) == 0.021


# ------------------------------------------------------------------------------------------ bad lines, exact lines

BAD = {  # line number -> (text, expected reason)
    5: ("TRUNCATE", "fields, expected 40"),
    77: ("DROP_LAST", "39 fields, expected 40"),
    500: ("EXTRA", "41 fields, expected 40"),
    901: ("HEX", "C3 'zz12' is not hex"),
    1333: ("EMPTY", "empty line"),
    1500: ("LABEL", "label '2' is not 0 or 1"),
    2222: ("DENSE", "I5 'abc' is not a number"),
    2900: ("LONGHEX", "C1 '11112222333344445' is not hex (more than 16 digits)"),
}


def write_bad_file(path: Path, n: int = 3000, crlf: bool = False) -> list[int]:
    lines = []
    for i in range(1, n + 1):
        fields = good_line(i).split("\t")
        kind = BAD.get(i, (None,))[0]
        if kind == "TRUNCATE":
            text = "\t".join(fields)[:40]
        elif kind == "DROP_LAST":
            text = "\t".join(fields[:-1])
        elif kind == "EXTRA":
            text = "\t".join(fields + ["abc"])
        elif kind == "HEX":
            fields[14 + 2] = "zz12"
            text = "\t".join(fields)
        elif kind == "EMPTY":
            text = ""
        elif kind == "LABEL":
            text = "\t".join(["2", *fields[1:]])
        elif kind == "DENSE":
            fields[5] = "abc"
            text = "\t".join(fields)
        elif kind == "LONGHEX":
            fields[14] = "11112222333344445"
            text = "\t".join(fields)
        else:
            text = "\t".join(fields)
        lines.append(text)
    end = "\r\n" if crlf else "\n"
    data = (end.join(lines) + end).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return [i for i in range(1, n + 1) if i not in BAD]


@pytest.mark.parametrize("name,crlf", [("bad.txt", False), ("bad.txt.gz", False), ("bad_crlf.txt", True)])
def test_skip_reports_exact_lines_across_blocks(tmp_path: Path, name: str, crlf: bool) -> None:
    path = tmp_path / name
    good = write_bad_file(path, crlf=crlf)
    report = ReadReport()
    data = read_all(read_criteo(path, batch_size=256, report=report, block_size=4096))  # ~70 Arrow blocks
    assert data.lines.tolist() == good  # exact physical line of every good row, after each skipped line
    assert report.rows_bad == len(BAD) and report.rows_ok == len(good)
    assert [line for line, _ in report.examples] == sorted(BAD)
    for (line, reason), expected in zip(report.examples, (BAD[k][1] for k in sorted(BAD))):
        assert expected in reason, (line, reason)
    assert report.reasons == {"field_count": 3, "categorical": 2, "empty_line": 1, "label": 1, "dense": 1}
    # Row contents line up with their line numbers.
    for k in (0, 1000, len(good) - 1):
        fields = good_line(int(data.lines[k])).split("\t")
        assert data.labels[k] == float(fields[0])
        assert int(data.keys[k, 3]) == (int(fields[17], 16) if fields[17] else int(MISSING_KEY))
        assert np.isnan(data.dense[k, 2]) if not fields[3] else data.dense[k, 2] == float(fields[3])
    summary = report.summary()
    assert "2,992 rows read, 8 malformed lines skipped (line 5:" in summary and "\n" not in summary
    assert report.to_dict()["examples"][1] == {"line": 77, "reason": "39 fields, expected 40"}


def test_stop_raises_at_first_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    write_bad_file(path)
    stop = BadLinePolicy(on_error="stop")
    with pytest.raises(DataError) as err:
        list(read_criteo(path, policy=stop, block_size=4096))
    assert str(err.value).startswith(f"{path}:5: ") and str(err.value).endswith(" fields, expected 40")
    lines = path.read_text().split("\n")
    lines[4] = good_line(5)  # repair line 5: now line 77 is the first bad one
    path.write_text("\n".join(lines))
    with pytest.raises(DataError) as err:
        list(read_criteo(path, policy=stop, block_size=4096))
    assert str(err.value) == f"{path}:77: 39 fields, expected 40"


def test_stop_never_yields_the_batch_with_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "one_bad.txt"
    path.write_text("\n".join(good_line(i) if i != 10 else "1\t2" for i in range(1, 31)) + "\n")
    seen: list[int] = []
    with pytest.raises(DataError, match=r"one_bad.txt:10: 2 fields, expected 40"):
        # ~2 lines per Arrow block, so lines before the bad one are validated and handed on first.
        for batch in read_criteo(path, batch_size=4, policy=BadLinePolicy(on_error="stop"), block_size=600):
            seen.extend(batch.lines.tolist())
    assert seen == [1, 2, 3, 4, 5, 6, 7, 8]  # [9, 11, 12, 13] would hold a row past the bad line: never yielded


def test_too_many_bad_lines_raise(tmp_path: Path) -> None:
    path = tmp_path / "noisy.txt"
    bad = set(range(7, 3000, 50))  # 60 of 3000 = 2% > 1%
    path.write_text("\n".join("x" if i in bad else good_line(i) for i in range(1, 3001)) + "\n")
    with pytest.raises(DataError) as err:
        list(read_criteo(path, block_size=8192))
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "lines read so far are malformed" in msg
    assert "more than the allowed 1%" in msg and "first bad lines: 7, 57, 107" in msg and "\n" not in msg
    # The same file passes with a looser policy, and the report has every bad line counted.
    report = ReadReport()
    assert sum(len(b) for b in read_criteo(path, policy=BadLinePolicy(max_fraction=0.05), report=report)) == 2940
    assert report.rows_bad == 60 and len(report.examples) == 20


def test_small_file_judged_at_end(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_text("\n".join(good_line(i) if i != 3 else "oops" for i in range(1, 51)) + "\n")
    with pytest.raises(DataError, match=r"1 of 50 lines read are malformed \(2%, more than the allowed 1%\)"):
        list(read_criteo(path))
    assert sum(map(len, read_criteo(path, policy=BadLinePolicy(max_fraction=0.05)))) == 49


# -------------------------------------------------------------------------------------------- values and formats


def test_values_missing_negative_and_float_forms(tmp_path: Path) -> None:
    dense = ["1.0", "-1", "", "2.5", "1e3", "+7", "0", "", "", "", "", "", "12"]
    cats = ["", "0000000A", "ffffffffffffffff", "7", *[""] * 22]
    path = tmp_path / "v.txt"
    path.write_text("\t".join(["1.0", *dense, *cats]) + "\n" + good_line(3) + "\n")
    data = read_all(read_criteo(path))
    assert data.labels.tolist() == [1.0, 1.0]
    np.testing.assert_array_equal(data.dense[0], np.array([1, -1, np.nan, 2.5, 1000, 7, 0, *[np.nan] * 5, 12],
                                                          dtype=np.float32))
    assert data.keys[0, :4].tolist() == [int(MISSING_KEY), 10, 2**64 - 1, 7]


@pytest.mark.parametrize("value", ["nan", "inf", "1,000", " 1", "0x10", "1e999", "--1"])
def test_bad_dense_values(tmp_path: Path, value: str) -> None:
    fields = good_line(1).split("\t")
    fields[1] = value
    path = tmp_path / "d.txt"
    path.write_text("\t".join(fields) + "\n")
    with pytest.raises(DataError, match=r"d.txt:1: I1 .* is not a number"):
        list(read_criteo(path, policy=BadLinePolicy(on_error="stop")))


def test_gzip_detected_by_magic_and_concatenated_members(tmp_path: Path) -> None:
    text = "".join(good_line(i) + "\n" for i in range(1, 101)).encode()
    path = tmp_path / "no_extension"
    path.write_bytes(gzip.compress(text[: len(text) // 2 + 7]) + gzip.compress(text[len(text) // 2 + 7:]))
    plain = tmp_path / "plain.txt"
    plain.write_bytes(text)
    a, b = read_all(read_criteo(path)), read_all(read_criteo(plain))
    assert len(a) == 100 and (a.keys == b.keys).all() and (a.lines == b.lines).all()


def test_batches_bounded_by_batch_size(tmp_path: Path) -> None:
    path = tmp_path / "many.txt"
    path.write_text("".join(good_line(i) + "\n" for i in range(1, 2501)))
    sizes = [len(b) for b in read_criteo(path, batch_size=1000, block_size=10_000)]
    assert sizes == [1000, 1000, 500]
    assert [len(b) for b in read_criteo(path, batch_size=3000)] == [2500]


def _reference_hex(v: str) -> tuple[int, bool]:
    """Plain Python: 1..16 hex digits -> (value, True); anything else (incl. a NUL byte) -> (0, False)."""
    ok = 1 <= len(v) <= 16 and all(c in "0123456789abcdefABCDEF" for c in v)
    return (int(v, 16) if ok else 0), ok


@given(st.lists(st.one_of(st.text(alphabet="0123456789abcdefABCDEF", max_size=18),
                          st.text(alphabet="0123456789abcdefxyz\x00 -", max_size=18)), min_size=1, max_size=60))
def test_fast_hex_matches_python_int(values: list[str]) -> None:
    cols = [pa.array([v.encode() for v in values], pa.binary())]
    keys, ok = _hex_keys(cols)
    ref = [_reference_hex(v) for v in values]
    empty = np.array([v == "" for v in values])
    assert (ok[:, 0] == (np.array([r[1] for r in ref]) | empty)).all()
    good = ok[:, 0] & ~empty
    assert (keys[good, 0] == np.array([r[0] for r in ref], dtype=np.uint64)[good]).all()
    assert (keys[empty, 0] == MISSING_KEY).all()


# ------------------------------------------------------------------------------------------------ file errors


def _one_line_error(call) -> str:
    with pytest.raises(DataError) as err:
        list(call())
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_file_raises_at_call(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.txt: no such file"):
        read_criteo(tmp_path / "nope.txt")  # at the call, before iterating


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in _one_line_error(lambda: read_criteo(tmp_path))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text(good_line(1) + "\n")
    path.chmod(0)
    try:
        assert "secret.txt: permission denied" in _one_line_error(lambda: read_criteo(path))
    finally:
        path.chmod(0o600)


def test_corrupt_gzip(tmp_path: Path) -> None:
    not_gz = tmp_path / "fake.txt.gz"
    not_gz.write_bytes(b"this is not gzip at all")
    assert "fake.txt.gz: not a gzip file" in _one_line_error(lambda: read_criteo(not_gz))
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"\x1f\x8b" + os.urandom(200))
    assert "garbage.gz: corrupt or truncated gzip data" in _one_line_error(lambda: read_criteo(garbage))
    data = gzip.compress("".join(good_line(i) + "\n" for i in range(1, 3001)).encode())
    truncated = tmp_path / "truncated.txt.gz"
    truncated.write_bytes(data[: len(data) // 2])
    msg = _one_line_error(lambda: read_criteo(truncated, block_size=8192))
    assert msg.startswith(f"{truncated}: corrupt or truncated gzip data")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    assert "empty.txt: contains no data rows" in _one_line_error(lambda: read_criteo(path))


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        BadLinePolicy(on_error="ignore")
    with pytest.raises(ValueError):
        BadLinePolicy(max_fraction=1.5)
    with pytest.raises(ValueError):
        BadLinePolicy(max_examples=-1)
    with pytest.raises(ValueError):
        list(read_criteo(__file__, batch_size=0))
