"""Readers for delimited text (CSV, TSV; plain or gzip) and Parquet, yielding `RawBatch`.

The Criteo reader is a TextFormat of this one (a headerless TSV with a fixed schema and hex categorical values):
pyarrow's streaming CSV reader with every column read as raw bytes, then vectorised validation and conversion per
Arrow block (shark.data.columns), exact line numbers and regrouping into `batch_size` rows
(shark.data.line_numbers), and file checks (shark.data.files).

Line numbers: pyarrow reports the line of every row it rejects for a wrong field count (InvalidRow.number; populated
only when use_threads=False), and it keeps empty lines as rows of empty values (ignore_empty_lines=False), so after
the handler has run for a block, that block's good rows are exactly the next line numbers that were not rejected.
Arrow counts rows, not lines, so a quoted CSV value containing a line break would make the numbers drift: such a
value (usually an unbalanced quote) stops the read with a DataError naming its line, whatever the policy.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from shark.data.bad_lines import BadLine, BadLineGate, BadLinePolicy, ReadReport
from shark.data.batch import RawBatch
from shark.data.columns import Layout, _is_text, convert
from shark.data.errors import DataError
from shark.data.files import PathLike, _first_line, check_file, open_stream, read_error, read_first_lines
from shark.data.line_numbers import LineNumbers, _line_break_rows, _piece, check_batch_size, rebatch
from shark.data.schema import Schema

DEFAULT_BLOCK_SIZE = 1 << 20  # bytes of text per Arrow block: bounds the reader's memory


# ----------------------------------------------------------------------------------------------- delimited text


@dataclass(frozen=True)
class TextFormat:
    delimiter: str
    quoted: bool  # CSV honours "..." quoting; TSV and Criteo read quotes literally
    header: bool  # the first line names the columns
    hex_keys: bool
    label_values: tuple[float, ...]
    label_text: str


def read_header(path: PathLike, fmt: TextFormat) -> list[str]:
    lines = read_first_lines(path, 1)
    if not lines:
        raise DataError(f"{path}: file is empty (expected a header line naming the columns)")
    fields = next(csv.reader([lines[0]], delimiter=fmt.delimiter)) if fmt.quoted else lines[0].split(fmt.delimiter)
    return [f.strip() for f in fields]


def column_positions(path: PathLike, header: list[str], schema: Schema) -> tuple[int, ...]:
    """Position of each schema column in the header; DataError naming what is missing and what is there."""
    missing = [c for c in schema.columns if c not in header]
    if missing:
        shown = ", ".join(header[:50]) + (f", ... ({len(header)} columns)" if len(header) > 50 else "")
        raise DataError(f"{path}: column(s) {', '.join(missing)} not found in the header; it has: {shown}")
    twice = [c for c in schema.columns if header.count(c) > 1]
    if twice:
        raise DataError(f"{path}: column(s) {', '.join(twice)} appear more than once in the header")
    return tuple(header.index(c) for c in schema.columns)


def read_delimited(path: PathLike, schema: Schema, fmt: TextFormat, batch_size: int = 4096,
                   policy: BadLinePolicy = BadLinePolicy(), report: ReadReport | None = None,
                   block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[RawBatch]:
    """Stream a delimited text file as RawBatches. File errors and missing columns raise here, at the call."""
    check_batch_size(batch_size)
    gz = check_file(path)
    if fmt.header:
        names = read_header(path, fmt)
        positions = column_positions(path, names, schema)
    else:
        names, positions = list(schema.columns), tuple(range(len(schema.columns)))
    layout = Layout(schema, positions, fmt.hex_keys, fmt.label_values, fmt.label_text)
    gate = BadLineGate(str(path), policy, report)
    pieces = _text_pieces(path, gz, names, fmt, layout, gate, block_size)
    return rebatch(pieces, batch_size)


def _text_pieces(path: PathLike, gz: bool, names: list[str], fmt: TextFormat, layout: Layout,
                 gate: BadLineGate, block_size: int) -> Iterator[RawBatch]:
    first = 2 if fmt.header else 1
    numbers = LineNumbers(first)
    # Column names are given explicitly (duplicates allowed, the header skipped) so Arrow never guesses;
    # every column is raw bytes: no type inference, no per-block UTF-8 failure, no "NA" -> null.
    read_opts = pcsv.ReadOptions(column_names=[f"f{i}" for i in range(len(names))], skip_rows=first - 1,
                                 block_size=block_size, use_threads=False)  # threads would lose InvalidRow.number
    parse_opts = pcsv.ParseOptions(delimiter=fmt.delimiter, quote_char='"' if fmt.quoted else False,
                                   double_quote=fmt.quoted, escape_char=False, newlines_in_values=False,
                                   ignore_empty_lines=False, invalid_row_handler=numbers.handler)
    conv_opts = pcsv.ConvertOptions(column_types={f"f{i}": pa.binary() for i in range(len(names))},
                                    strings_can_be_null=False, quoted_strings_can_be_null=False)
    stream = open_stream(path, gz)
    try:
        try:
            reader = pcsv.open_csv(stream, read_options=read_opts, parse_options=parse_opts, convert_options=conv_opts)
        except (pa.ArrowException, OSError) as e:
            if "Empty CSV file" not in str(e):  # empty (or header only): gate.finish() says so below
                raise read_error(path, e, 0) from None
            reader = None
        while reader is not None:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowException, OSError) as e:
                raise read_error(path, e, numbers.next_line - 1) from None
            yield from _text_block(path, batch, layout, numbers, gate, fmt.quoted)
        _judge(path, gate, 0, numbers.rest())
        gate.finish()
    finally:
        stream.close()


def _text_block(path: PathLike, batch: pa.RecordBatch, layout: Layout, numbers: LineNumbers,
                gate: BadLineGate, quoted: bool) -> Iterator[RawBatch]:
    conv = convert(batch, layout)
    lines, rejected = numbers.take(batch.num_rows)
    bad = rejected + [BadLine(int(lines[i]), kind, reason) for i, kind, reason in conv.bad]
    if quoted:  # a quoted line break makes Arrow's row numbers drift from physical lines: refuse, loudly
        bad += [BadLine(int(lines[i]), "line_break", "a quoted value spans several lines (unbalanced quote?)")
                for i in _line_break_rows(batch)]
    _judge(path, gate, int(conv.ok.sum()), bad)
    if conv.ok.any():
        yield _piece(conv, lines)


def _judge(path: PathLike, gate: BadLineGate, n_ok: int, bad: list[BadLine]) -> None:
    """Hand a block's bad lines to the gate in line order; a quoted line break is fatal whatever the policy,
    because Arrow's row numbers stop matching physical lines after it."""
    bad = sorted(bad, key=lambda b: b.line)
    fatal = next((b for b in bad if b.kind == "line_break"), None)
    if fatal is None:
        gate.add(n_ok, bad)
        return
    gate.add(0, [b for b in bad if b.line < fatal.line])
    raise DataError(f"{path}:{fatal.line}: {fatal.reason}; line breaks inside quoted values are not supported")


# -------------------------------------------------------------------------------------------------- Parquet


def open_parquet(path: PathLike) -> pq.ParquetFile:
    check_file(path)
    try:
        return pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({_first_line(e)})") from None


def _open_parquet(path: PathLike, schema: Schema) -> pq.ParquetFile:
    pf = open_parquet(path)
    fields = {f.name: f.type for f in pf.schema_arrow}
    column_positions(path, list(pf.schema_arrow.names), schema)
    for name in (schema.label, *schema.dense):
        t = fields[name]
        t = t.value_type if pa.types.is_dictionary(t) else t
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                or pa.types.is_decimal(t) or _is_text(t)):
            raise DataError(f"{path}: column {name} has type {t}, which is not numeric")
    for name in schema.categorical:
        if pa.types.is_nested(fields[name]):
            raise DataError(f"{path}: column {name} has nested type {fields[name]}, which cannot be a category")
    return pf


def _parquet_pieces(path: PathLike, pf: pq.ParquetFile, layout: Layout, gate: BadLineGate,
                    rows_per_block: int) -> Iterator[RawBatch]:
    row = 1  # Parquet has no lines: report 1-based row numbers
    batches = pf.iter_batches(batch_size=rows_per_block, columns=list(layout.schema.columns))
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except (pa.ArrowException, OSError) as e:
            raise read_error(path, e, row - 1) from None
        conv = convert(batch, layout)
        lines = np.arange(row, row + batch.num_rows, dtype=np.int64)
        row += batch.num_rows
        gate.add(int(conv.ok.sum()), [BadLine(int(lines[i]), kind, reason) for i, kind, reason in conv.bad])
        if conv.ok.any():
            yield _piece(conv, lines)
    gate.finish()


# ---------------------------------------------------------------------------------------------- entry point

TABLE_FORMATS = ("csv", "tsv", "parquet")
_LIBFM_LABELS = (-1.0, 0.0, 1.0)
CSV = TextFormat(",", quoted=True, header=True, hex_keys=False, label_values=_LIBFM_LABELS, label_text="0/1 (or -1/1)")
TSV = TextFormat("\t", quoted=False, header=True, hex_keys=False, label_values=_LIBFM_LABELS,
                 label_text="0/1 (or -1/1)")


def table_format(path: PathLike, fmt: str = "auto") -> str:
    """'csv', 'tsv' or 'parquet' from `fmt`, or from the file name if fmt is 'auto'."""
    if fmt != "auto":
        if fmt not in TABLE_FORMATS:
            raise ValueError(f"table format must be one of auto, {', '.join(TABLE_FORMATS)}; got {fmt!r}")
        return fmt
    name = Path(path).name.lower().removesuffix(".gz")
    for ext, found in ((".parquet", "parquet"), (".pq", "parquet"), (".csv", "csv"), (".tsv", "tsv"), (".txt", "tsv")):
        if name.endswith(ext):
            return found
    raise DataError(f"{path}: cannot tell the format from the name (expected .csv, .tsv, .txt, .parquet, "
                    f"optionally .gz); pass the format explicitly")


def read_table(path: PathLike, schema: Schema, batch_size: int = 4096, policy: BadLinePolicy = BadLinePolicy(),
               report: ReadReport | None = None, fmt: str = "auto", *,
               block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[RawBatch]:
    """Read a CSV/TSV with a header line (plain or gzip) or a Parquet file as RawBatches.

    Label 0/1 (-1/1 accepted, -1 -> 0); dense columns numeric, empty -> NaN; categorical columns read as text and
    hashed with hash_strings, empty -> MISSING_KEY. Bad lines follow `policy`; line 1 is the header, so the first
    data row is line 2 (Parquet: 1-based row number). Missing file/columns raise DataError at the call.
    """
    kind = table_format(path, fmt)
    if kind != "parquet":
        text_fmt = CSV if kind == "csv" else TSV
        return read_delimited(path, schema, text_fmt, batch_size, policy, report, block_size)
    check_batch_size(batch_size)
    pf = _open_parquet(path, schema)
    layout = Layout(schema, schema.columns, False, _LIBFM_LABELS, CSV.label_text)
    gate = BadLineGate(str(path), policy, report)
    return rebatch(_parquet_pieces(path, pf, layout, gate, max(batch_size, 16384)), batch_size)
