"""One entry point for every input: pick the reader from the format (or sniff it) and stream RawBatches."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from shark.data.bad_lines import BadLinePolicy, ReadReport
from shark.data.batch import RawBatch
from shark.data.criteo import CRITEO_FIELDS, read_criteo
from shark.data.errors import DataError
from shark.data.files import PathLike, check_file, read_first_lines
from shark.data.schema import CRITEO_SCHEMA, Schema
from shark.data.tabular import CSV, TSV, open_parquet, read_header, read_table

FORMATS = ("auto", "criteo", "csv", "tsv", "parquet")
_SNIFF_LINES = 10


def detect_format(path: PathLike) -> str:
    """'parquet' by name or magic bytes; 'criteo' if the text starts with 40-field tab lines whose label is 0/1;
    otherwise 'csv' or 'tsv' (with a header line) by name, or by whether the first line has a tab."""
    check_file(path)
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")) or _starts_with(path, b"PAR1"):
        return "parquet"
    lines = read_first_lines(path, _SNIFF_LINES)
    if not lines:
        raise DataError(f"{path}: file is empty")
    if _looks_like_criteo(lines):
        return "criteo"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".txt")):
        return "tsv"
    return "tsv" if "\t" in lines[0] else "csv"


def _starts_with(path: PathLike, magic: bytes) -> bool:
    with open(path, "rb") as f:  # check_file has shown it opens
        return f.read(len(magic)) == magic


def _looks_like_criteo(lines: list[str]) -> bool:
    # A header's first field is a name, never 0/1; look past line 1 in case that line is the malformed one.
    first_is_label = lines[0].split("\t", 1)[0] in ("0", "1")
    return first_is_label and any(len(line.split("\t")) == CRITEO_FIELDS for line in lines)


def _resolve(path: PathLike, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    return detect_format(path) if fmt == "auto" else fmt


def infer_schema(path: PathLike, fmt: str = "auto") -> Schema:
    """The Criteo schema for Criteo files; otherwise label column "label" and every other column categorical."""
    kind = _resolve(path, fmt)
    if kind == "criteo":
        return CRITEO_SCHEMA
    if kind == "parquet":
        columns = list(open_parquet(path).schema_arrow.names)
    else:
        columns = read_header(path, CSV if kind == "csv" else TSV)
    if "label" not in columns:
        shown = ", ".join(columns[:50]) + (", ..." if len(columns) > 50 else "")
        raise DataError(f"{path}: no 'label' column to infer a schema from (columns: {shown}); pass a schema")
    try:
        return Schema(label="label", dense=(), categorical=tuple(c for c in columns if c != "label"))
    except ValueError as e:
        raise DataError(f"{path}: cannot infer a schema from the header: {e}") from None


def open_source(path: PathLike, fmt: str = "auto", schema: Schema | None = None, batch_size: int = 4096,
                policy: BadLinePolicy = BadLinePolicy(), report: ReadReport | None = None) -> Iterator[RawBatch]:
    """Stream any supported input as RawBatches of at most batch_size rows.

    fmt: "auto" (sniff), "criteo", "csv", "tsv" or "parquet". schema: needed for csv/tsv/parquet unless the
    default inference (label "label", all else categorical) is right; Criteo's is fixed. A missing, unreadable or
    corrupt file raises DataError (one line naming the file) here or at the first read.
    """
    kind = _resolve(path, fmt)
    if kind == "criteo":
        if schema is not None and schema != CRITEO_SCHEMA:
            raise DataError(f"{path}: the Criteo format has a fixed schema (label, I1..I13, C1..C26); "
                            f"a different schema cannot be applied to it")
        return read_criteo(path, batch_size, policy, report)
    if schema is None:
        schema = infer_schema(path, kind)
    return read_table(path, schema, batch_size, policy, report, fmt=kind)
