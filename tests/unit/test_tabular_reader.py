"""CSV/TSV/Parquet reading, schemas, and the open_source entry point."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shark.data.bad_lines import BadLinePolicy, ReadReport
from shark.data.batch import MISSING_KEY, RawBatch
from shark.data.errors import DataError
from shark.data.hashing import hash_strings
from shark.data.schema import CRITEO_SCHEMA, Schema
from shark.data.source import detect_format, infer_schema, open_source
from shark.data.tabular import read_table
from tests.shared_data import shared_file

FRAPPE = Schema("label", (), ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather",
                              "country", "city"))
CRITEO_45K = Schema("label", tuple(f"I{i}" for i in range(1, 14)), ("C6", "C9", "C14", "C17", "C20", "C22", "C23"))
SMALL = Schema("label", ("x", "y"), ("city", "code"))


def read_all(batches) -> RawBatch:
    parts = list(batches)
    return RawBatch(labels=np.concatenate([b.labels for b in parts]), dense=np.concatenate([b.dense for b in parts]),
                    keys=np.concatenate([b.keys for b in parts]), lines=np.concatenate([b.lines for b in parts]))


def reference_parse(path: Path, sep: str, schema: Schema) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slow obvious parse of a headed text file (read at test time, never copied into the repo)."""
    with gzip.open(path, "rt") as f:
        rows = list(csv.reader(f, delimiter=sep))
    col = {name: rows[0].index(name) for name in schema.columns}
    body = rows[1:]
    labels = np.array([float(r[col[schema.label]]) > 0 for r in body], np.float32)
    dense = np.array([[float(r[col[c]]) if r[col[c]] else np.nan for c in schema.dense] for r in body], np.float32)
    keys = np.empty((len(body), len(schema.categorical)), np.uint64)
    for j, c in enumerate(schema.categorical):  # hash_strings on a whole column: its own contract, tested elsewhere
        values = np.array([r[col[c]] for r in body], dtype=object)
        keys[:, j] = np.where(values == "", MISSING_KEY, hash_strings(values))
    return labels, dense.reshape(len(body), len(schema.dense)), keys


def key(text: str) -> int:
    return int(hash_strings(np.array([text]))[0])


# --------------------------------------------------------------------------------------------- real samples


def test_frappe_all_categorical() -> None:
    report = ReadReport()
    data = read_all(read_table(shared_file("frappe/frappe_test.csv.gz"), FRAPPE, report=report))
    assert len(data) == 28_860 and report.rows_bad == 0
    assert abs(float(data.labels.mean()) - 0.3304) < 5e-5
    assert data.dense.shape == (28_860, 0) and data.keys.shape == (28_860, 10)
    assert (data.lines == np.arange(2, 28_862)).all()  # line 1 is the header
    labels, dense, keys = reference_parse(shared_file("frappe/frappe_test.csv.gz"), ",", FRAPPE)
    assert (data.labels == labels).all() and (data.keys == keys).all()


def test_criteo_45k_dense_and_categorical() -> None:
    data = read_all(read_table(shared_file("criteo_reduced45k/criteo_45k_7cat.tsv.gz"), CRITEO_45K))
    assert len(data) == 34_333
    assert abs(float(data.labels.mean()) - 0.2551) < 5e-5
    assert data.dense.shape == (34_333, 13) and data.keys.shape == (34_333, 7)
    labels, dense, keys = reference_parse(shared_file("criteo_reduced45k/criteo_45k_7cat.tsv.gz"), "\t", CRITEO_45K)
    assert (data.labels == labels).all() and (data.keys == keys).all()
    np.testing.assert_array_equal(data.dense, dense)
    assert np.isnan(data.dense).sum() > 0 and (data.keys == MISSING_KEY).sum() > 0


# ------------------------------------------------------------------------------------------ formats and values

ROWS = [  # label, x, y, city, code
    ("1", "1.5", "", "paris", "7"),
    ("-1", "-2", "3", "", "8"),
    ("0", "", "1e3", "oslo", ""),
    ("1", "4", "5", "paris", "7"),
]


def write_csv(path: Path, rows=ROWS, header="label,x,y,city,code", sep=",") -> None:
    text = header.replace(",", sep) + "\n" + "".join(sep.join(r) + "\n" for r in rows)
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())


@pytest.mark.parametrize("name,sep", [("t.csv", ","), ("t.csv.gz", ","), ("t.tsv", "\t"), ("t.txt.gz", "\t")])
def test_text_formats(tmp_path: Path, name: str, sep: str) -> None:
    path = tmp_path / name
    write_csv(path, sep=sep)
    data = read_all(read_table(path, SMALL))
    assert data.labels.tolist() == [1, 0, 0, 1]  # -1 -> 0 (libFM convention)
    np.testing.assert_array_equal(data.dense, np.array([[1.5, np.nan], [-2, 3], [np.nan, 1000], [4, 5]], np.float32))
    assert data.keys[:, 0].tolist() == [key("paris"), int(MISSING_KEY), key("oslo"), key("paris")]
    assert data.keys[:, 1].tolist() == [key("7"), key("8"), int(MISSING_KEY), key("7")]
    assert data.lines.tolist() == [2, 3, 4, 5]


def test_parquet_round_trip(tmp_path: Path) -> None:
    csv_path, pq_path = tmp_path / "t.csv", tmp_path / "t.parquet"
    write_csv(csv_path)
    table = pa.table({
        "code": pa.array([7, 8, None, 7], pa.int64()),  # ints hash like their text in CSV
        "label": pa.array([1, -1, 0, 1], pa.int8()),
        "x": pa.array([1.5, -2.0, None, 4.0]),
        "y": pa.array([None, 3.0, 1000.0, 5.0], pa.float32()),
        "city": pa.array(["paris", None, "oslo", "paris"]).dictionary_encode(),
        "unused": pa.array([1, 2, 3, 4]),
    })
    pq.write_table(table, pq_path, row_group_size=3)
    from_csv, from_pq = read_all(read_table(csv_path, SMALL)), read_all(read_table(pq_path, SMALL, batch_size=3))
    assert from_pq.lines.tolist() == [1, 2, 3, 4]  # Parquet: 1-based row numbers
    np.testing.assert_array_equal(from_pq.labels, from_csv.labels)
    np.testing.assert_array_equal(from_pq.dense, from_csv.dense)
    np.testing.assert_array_equal(from_pq.keys, from_csv.keys)


def test_parquet_bad_label_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"label": [0, 2, 1], "x": [1.0, 2.0, 3.0], "y": [1, 2, 3], "city": ["a", "b", "c"],
                             "code": ["1", "2", "3"]}), path)
    with pytest.raises(DataError, match=r"bad.parquet:2: label '2' is not 0/1 \(or -1/1\)"):
        list(read_table(path, SMALL, policy=BadLinePolicy(on_error="stop")))
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="fake.parquet: not a readable Parquet file"):
        read_table(fake, SMALL)


def test_missing_column_message(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_csv(path, header="label,x,city,zip,code")
    with pytest.raises(DataError) as err:
        read_table(path, SMALL)  # raised at the call, before iterating
    assert str(err.value) == f"{path}: column(s) y not found in the header; it has: label, x, city, zip, code"
    pq_path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"label": [1], "city": ["a"]}), pq_path)
    with pytest.raises(DataError, match=r"column\(s\) x, y, code not found in the header; it has: label, city"):
        read_table(pq_path, SMALL)


def test_bad_lines_and_exact_line_numbers(tmp_path: Path) -> None:
    rows = [(str(i % 2), str(i), "1", f"c{i}", "k") for i in range(2000)]
    bad = {10: ("2", "1", "1", "c", "k"), 700: ("1", "x1", "1", "c", "k"), 1500: ("1", "1", "1")}
    for i, r in bad.items():
        rows[i] = r
    path = tmp_path / "bad.csv"
    write_csv(path, rows=rows)
    report = ReadReport()
    data = read_all(read_table(path, SMALL, report=report, block_size=2048))
    expected = [i + 2 for i in range(2000) if i not in bad]  # +1 for 1-based, +1 for the header
    assert data.lines.tolist() == expected
    assert report.examples == [(12, "label '2' is not 0/1 (or -1/1)"), (702, "x 'x1' is not a number"),
                               (1502, "3 fields, expected 5")]


def test_quoted_csv_values(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('"label","x","y","city","code"\n1,2,3,"Paris, France","a""b"\n0,,,"",x\n')
    data = read_all(read_table(path, SMALL))
    assert data.keys[:, 0].tolist() == [key("Paris, France"), int(MISSING_KEY)]
    assert data.keys[0, 1] == key('a"b') and data.lines.tolist() == [2, 3]
    broken = tmp_path / "broken.csv"
    broken.write_text('label,x,y,city,code\n1,2,3,"unbalanced,x\n0,1,1,a,b\n1,1,1,a,b\n')
    with pytest.raises(DataError, match=r"broken.csv:2: a quoted value spans several lines"):
        list(read_table(broken, SMALL))


def test_header_only_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("label,x,y,city,code\n")
    with pytest.raises(DataError, match="h.csv: contains no data rows"):
        list(read_table(path, SMALL))
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="e.csv: file is empty"):
        read_table(empty, SMALL)


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    write_csv(path)
    with pytest.raises(DataError, match="cannot tell the format"):
        read_table(path, SMALL)
    assert len(read_all(read_table(path, SMALL, fmt="csv"))) == 4


# --------------------------------------------------------------------------------------------------- schema


def test_schema_validation() -> None:
    assert CRITEO_SCHEMA.columns[:2] == ("label", "I1") and CRITEO_SCHEMA.n_categorical == 26
    assert Schema("l", ["a"], ["b"]).dense == ("a",)  # lists become tuples
    with pytest.raises(ValueError, match="more than once: a"):
        Schema("l", ("a",), ("a",))
    with pytest.raises(ValueError, match="also listed as a feature"):
        Schema("l", (), ("l", "b"))
    with pytest.raises(ValueError, match="at least one categorical"):
        Schema("l", ("a",), ())


# ---------------------------------------------------------------------------------------------- open_source


def test_open_source_detects_formats(tmp_path: Path) -> None:
    criteo = shared_file("criteo/criteo_terabyte_sample_1k.txt.gz")
    assert detect_format(criteo) == "criteo" and infer_schema(criteo) == CRITEO_SCHEMA
    assert sum(map(len, open_source(criteo))) == 1000
    frappe = shared_file("frappe/frappe_test.csv.gz")
    assert detect_format(frappe) == "csv" and infer_schema(frappe) == FRAPPE
    assert sum(map(len, open_source(frappe, batch_size=10_000))) == 28_860
    tsv = shared_file("criteo_reduced45k/criteo_45k_7cat.tsv.gz")
    assert detect_format(tsv) == "tsv"
    assert sum(map(len, open_source(tsv, schema=CRITEO_45K))) == 34_333
    pq_path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"label": [0, 1], "a": ["x", "y"]}), pq_path)
    assert detect_format(pq_path) == "parquet"
    assert infer_schema(pq_path) == Schema("label", (), ("a",))
    assert read_all(open_source(pq_path)).labels.tolist() == [0, 1]


def test_open_source_errors_name_the_file(tmp_path: Path) -> None:
    for path, text in ((tmp_path / "none.csv", "none.csv: no such file"), (tmp_path, "is a directory")):
        with pytest.raises(DataError, match=text):
            open_source(path)  # at open, not at the first next()
    bad_gz = tmp_path / "x.csv.gz"
    bad_gz.write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    with pytest.raises(DataError, match="x.csv.gz: corrupt or truncated gzip data"):
        open_source(bad_gz)
    nolabel = tmp_path / "n.csv"
    nolabel.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"n.csv: no 'label' column to infer a schema from \(columns: a, b\)"):
        open_source(nolabel)
    criteo_like = tmp_path / "c.txt"
    criteo_like.write_text("1" + "\t" * 39 + "\n")
    with pytest.raises(DataError, match="fixed schema"):
        open_source(criteo_like, schema=SMALL)
    with pytest.raises(ValueError):
        open_source(criteo_like, fmt="xml")
