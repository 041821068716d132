"""Readers for delimited text (CSV, TSV; plain or gzip) and Parquet, yielding `RawBatch`.

This module also holds the machinery the Criteo reader shares (a Criteo file is a headerless TSV with a fixed
schema and hex categorical values): pyarrow's streaming CSV reader with every column read as raw bytes, then
vectorised validation and conversion per Arrow block, bad-line bookkeeping, and regrouping into `batch_size` rows.

Line numbers: pyarrow reports the line of every row it rejects for a wrong field count (InvalidRow.number; populated
only when use_threads=False), and it keeps empty lines as rows of empty values (ignore_empty_lines=False), so after
the handler has run for a block, that block's good rows are exactly the next line numbers that were not rejected.
Arrow counts rows, not lines, so a quoted CSV value containing a line break would make the numbers drift: such a
value (usually an unbalanced quote) stops the read with a DataError naming its line, whatever the policy.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from shark.data.bad_lines import BadLine, BadLineGate, BadLinePolicy, ReadReport
from shark.data.batch import MISSING_KEY, RawBatch
from shark.data.errors import DataError
from shark.data.hashing import hash_strings
from shark.data.schema import Schema

PathLike = str | os.PathLike
DEFAULT_BLOCK_SIZE = 1 << 20  # bytes of text per Arrow block: bounds the reader's memory
_GZIP_MAGIC = b"\x1f\x8b"
# A plain decimal number: integers ("-1"), decimals ("1.0", ".5") and exponents ("1e5"); no nan/inf/hex/spaces.
_NUMBER_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_MAX_HEX = 16  # a uint64 key holds at most 16 hex digits


# ----------------------------------------------------------------------------------------------------- files


def check_file(path: PathLike) -> bool:
    """Raise DataError unless `path` is a readable file; return True if it is gzip (by magic bytes or extension)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file")
    if p.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    try:
        with open(p, "rb") as f:
            magic = f.read(2)
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e.strerror or e})") from None
    if magic == _GZIP_MAGIC:
        return True
    if p.suffix.lower() == ".gz":
        raise DataError(f"{path}: not a gzip file (named .gz but does not start with the gzip magic bytes)")
    return False


def open_stream(path: PathLike, gz: bool) -> pa.NativeFile:
    try:
        return pa.input_stream(str(path), compression="gzip" if gz else None)
    except OSError as e:
        raise DataError(f"{path}: cannot open ({_first_line(e)})") from None


def read_first_lines(path: PathLike, k: int, max_bytes: int = 1 << 20) -> list[str]:
    """First k lines (decoded, BOM and line ends stripped) from at most max_bytes of decompressed text."""
    gz = check_file(path)
    stream = open_stream(path, gz)
    try:
        head = stream.read(max_bytes)
    except OSError as e:
        raise read_error(path, e, 0) from None
    finally:
        stream.close()
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    lines = text.splitlines()
    if len(head) == max_bytes and lines:
        lines = lines[:-1]  # the last one may be cut short
    return lines[:k]


def read_error(path: PathLike, err: BaseException, after_line: int) -> DataError:
    """One-line DataError for a failure inside pyarrow or the decompressor."""
    msg = _first_line(err)
    where = f" after line {after_line:,}" if after_line > 0 else ""
    if any(s in msg.lower() for s in ("zlib", "gzip", "compressed", "inflate")):
        return DataError(f"{path}: corrupt or truncated gzip data{where} ({msg})")
    if "out of sync with chunker" in msg:
        return DataError(f"{path}: a quoted value spans several lines{where} (unbalanced quote?); "
                         f"line breaks inside quoted values are not supported")
    return DataError(f"{path}: cannot read{where}: {msg}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ------------------------------------------------------------------------------------------ column conversion


@dataclass(frozen=True)
class Layout:
    """How the columns of one file become RawBatch rows."""

    schema: Schema
    columns: tuple[int | str, ...]  # where each schema column is in an Arrow batch (label, dense..., categorical...)
    hex_keys: bool  # Criteo: categorical values are hex numbers; otherwise any string, hashed
    label_values: tuple[float, ...]  # accepted label values; -1 and 0 both mean "no click"
    label_text: str  # for messages: "0 or 1"


@dataclass
class Converted:
    labels: np.ndarray  # (N,) float32
    dense: np.ndarray  # (N, D) float32
    keys: np.ndarray  # (N, C) uint64
    ok: np.ndarray  # (N,) bool
    bad: list[tuple[int, str, str]]  # (row index, kind, reason) for rows with ok False, ascending


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t)


def _plain(arr: pa.Array) -> pa.Array:
    """Decode dictionary columns (Parquet) and read nulls in text columns as empty strings."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if _is_text(arr.type) and arr.null_count:
        arr = pc.fill_null(arr, pa.scalar(b"" if "binary" in str(arr.type) else "", arr.type))
    return arr


def _offsets(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(N+1,) int64 byte offsets and the uint8 data buffer of a null-free string/binary array."""
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    _, off_buf, data_buf = arr.buffers()
    off = np.frombuffer(off_buf, dtype=np.int64 if large else np.int32)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return off.astype(np.int64), data


def _byte_matrix(starts: np.ndarray, lengths: np.ndarray, data: np.ndarray, width: int) -> np.ndarray:
    """(N, width) uint8: each value's bytes, zero-padded (longer values truncated). Vectorised gather."""
    out = np.zeros((starts.shape[0], width), dtype=np.uint8)
    if data.size and width:
        pos = np.arange(width)
        idx = np.minimum(starts[:, None] + pos, data.size - 1)
        np.copyto(out, data[idx], where=pos < lengths[:, None])
    return out


def _numbers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column -> (float64 values, NaN if empty/invalid; empty mask; ok mask = number or empty)."""
    arr = _plain(arr)
    if _is_text(arr.type):
        empty = pc.equal(pc.binary_length(arr), 0).to_numpy(zero_copy_only=False)
        is_num = pc.match_substring_regex(arr, _NUMBER_RE)
        values = pc.if_else(is_num, arr, pa.scalar(None, arr.type)).cast(pa.float64())
        return values.to_numpy(zero_copy_only=False), empty, is_num.to_numpy(zero_copy_only=False) | empty
    # Typed (Parquet) numbers: null or NaN is missing, infinities are bad.
    values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    empty = np.isnan(values)
    return values, empty, ~np.isinf(values)


def _hex_keys(cols: list[pa.Array]) -> tuple[np.ndarray, np.ndarray]:
    """C text columns of hex values -> ((N, C) uint64 keys, MISSING_KEY for empty; (N, C) ok).

    Same keys and ok as hashing.parse_hex on each value (a test checks this), but computed straight from Arrow's
    buffers and several times faster: every value is right-aligned in `width` slots, so digit k always has the
    same weight and pairs of digits pack into the bytes of one big-endian integer.
    """
    n, c = len(cols[0]), len(cols)
    arr = pa.concat_arrays([_plain(col) for col in cols])  # column-major: row i of column j is at j * n + i
    off, data = _offsets(arr)
    lengths = np.diff(off)
    m = lengths.shape[0]
    width = 8 if m == 0 or lengths.max() <= 8 else _MAX_HEX  # Criteo values are 8 digits: half the work
    # Pad in front so a right-aligned window never starts before the first byte; slots left of a value read "0".
    padded = np.full(data.size + width, ord("0"), dtype=np.uint8)
    padded[width:] = data
    pos = np.arange(width, dtype=np.int64)
    chars = np.take(padded, off[1:, None] + pos)
    np.copyto(chars, np.uint8(ord("0")), where=pos < (width - lengths)[:, None])
    digits = np.take(_HEX_DIGIT, chars)
    bad_digit = (digits == 255).view(np.uint64).reshape(m, width // 8).any(axis=1)
    digits &= 0x0F  # bad values get some key; their rows are dropped anyway
    packed = np.ascontiguousarray((digits[:, 0::2] << 4) | digits[:, 1::2])
    keys = packed.view(">u4" if width == 8 else ">u8").ravel().astype(np.uint64)
    empty = lengths == 0
    ok = (lengths <= _MAX_HEX) & ~bad_digit | empty
    keys = np.where(empty, MISSING_KEY, keys)
    return np.ascontiguousarray(keys.reshape(c, n).T), np.ascontiguousarray(ok.reshape(c, n).T)


_HEX_DIGIT = np.full(256, 255, dtype=np.uint8)
_HEX_DIGIT[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX_DIGIT[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX_DIGIT[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def _hash_keys(col: pa.Array) -> np.ndarray:
    """A categorical column -> (N,) uint64 FNV keys of its text (MISSING_KEY for empty); numbers hash as text."""
    col = _plain(col)
    if not _is_text(col.type):
        col = _plain(col.cast(pa.string()))  # 123 in Parquet gets the key of "123" in CSV
    off, data = _offsets(col)
    starts, lengths = off[:-1], np.diff(off)
    keys = np.full(lengths.shape[0], MISSING_KEY, dtype=np.uint64)
    # Group by power-of-two length so one very long value cannot blow up the (N, width) byte matrix.
    width = np.maximum(8, 1 << np.ceil(np.log2(np.maximum(lengths, 1))).astype(np.int64))
    for w in np.unique(width[lengths > 0]):
        sel = (width == w) & (lengths > 0)
        mat = _byte_matrix(starts[sel], lengths[sel], data, int(w))
        keys[sel] = hash_strings(mat.view(f"S{int(w)}").ravel())
    return keys


def _dense(cols: list[pa.Array], n: int) -> tuple[np.ndarray, np.ndarray]:
    """D numeric columns -> ((N, D) float32, NaN = missing; (N, D) ok)."""
    if not cols:
        return np.empty((n, 0), dtype=np.float32), np.empty((n, 0), dtype=bool)
    plain = [_plain(col) for col in cols]
    if all(p.type == plain[0].type for p in plain):  # one pass over all columns: far fewer Arrow calls
        values, _, ok = _numbers(pa.concat_arrays(plain))
        values, ok = values.reshape(len(cols), n).T, ok.reshape(len(cols), n).T
    else:  # Parquet with mixed column types
        parts = [_numbers(p) for p in plain]
        values, ok = np.stack([v for v, _, _ in parts], axis=1), np.stack([k for _, _, k in parts], axis=1)
    dense = values.astype(np.float32, order="C")
    return dense, ok & ~np.isinf(dense)  # 1e39 overflows float32


def convert(batch: pa.RecordBatch, layout: Layout) -> Converted:
    """Validate and convert one Arrow batch, vectorised per column."""
    schema, cols = layout.schema, [batch.column(c) for c in layout.columns]
    n, d = batch.num_rows, schema.n_dense
    label_vals, label_empty, label_ok = _numbers(cols[0])
    label_ok &= ~label_empty & np.isin(label_vals, layout.label_values)
    dense, dense_ok = _dense(cols[1: 1 + d], n)
    col_ok = [label_ok, *dense_ok.T]
    if layout.hex_keys:
        keys, cat_ok = _hex_keys(cols[1 + d:])
        col_ok.extend(cat_ok.T)
    else:
        keys = np.stack([_hash_keys(c) for c in cols[1 + d:]], axis=1)
        col_ok.extend(np.ones((schema.n_categorical, n), dtype=bool))
    ok_matrix = np.stack(col_ok, axis=1)
    ok = ok_matrix.all(axis=1)
    bad = _reasons(batch, cols, ok_matrix, ~ok, layout) if not ok.all() else []
    labels = (label_vals == 1).astype(np.float32)
    return Converted(labels=labels, dense=dense, keys=keys, ok=ok, bad=bad)


def _reasons(batch: pa.RecordBatch, cols: list[pa.Array], ok_matrix: np.ndarray, bad: np.ndarray,
             layout: Layout) -> list[tuple[int, str, str]]:
    """(row, kind, reason) for each bad row: its first bad column, or "empty line" if every field is empty."""
    rows = np.flatnonzero(bad)
    all_empty = np.ones(rows.shape[0], dtype=bool)
    for col in batch.columns:
        col = _plain(col)
        if _is_text(col.type):
            all_empty &= pc.binary_length(col.take(pa.array(rows))).to_numpy(zero_copy_only=False) == 0
        else:
            all_empty &= False
    names = layout.schema.columns
    out = []
    for i, row in enumerate(rows):
        if all_empty[i]:
            out.append((int(row), "empty_line", "empty line"))
            continue
        j = int(np.argmin(ok_matrix[row]))
        raw = cols[j][int(row)].as_py()
        value = _show(raw)
        if j == 0:
            out.append((int(row), "label", f"{names[0]} {value} is not {layout.label_text}"))
        elif j <= layout.schema.n_dense:
            out.append((int(row), "dense", f"{names[j]} {value} is not a number"))
        else:
            too_long = isinstance(raw, bytes) and len(raw) > _MAX_HEX
            detail = f" (more than {_MAX_HEX} digits)" if too_long else ""
            out.append((int(row), "categorical", f"{names[j]} {value} is not hex{detail}"))
    return out


def _show(value: object) -> str:
    """A value for a one-line message: quoted, escaped, at most ~24 characters."""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return repr(text if len(text) <= 24 else text[:21] + "...")


# ------------------------------------------------------------------------------------- batches and line numbers


class LineNumbers:
    """Line numbers of good rows, from the line numbers of the rows pyarrow rejected (see the module docstring)."""

    def __init__(self, first_line: int) -> None:
        self.next_line = first_line
        self.rejected: list[BadLine] = []  # ascending, not yet matched to a batch

    def handler(self, row: pcsv.InvalidRow) -> str:
        """pyarrow invalid_row_handler: remember the row and skip it."""
        if row.number is None or row.number < 1:
            raise RuntimeError("pyarrow gave no line number for a malformed row (is use_threads off?)")
        if "\n" in row.text or "\r" in row.text:
            reason = "a quoted value spans several lines (unbalanced quote?)"
            self.rejected.append(BadLine(row.number, "line_break", reason))
        else:
            s = "" if row.actual_columns == 1 else "s"
            reason = f"{row.actual_columns} field{s}, expected {row.expected_columns}"
            self.rejected.append(BadLine(row.number, "field_count", reason))
        return "skip"

    def take(self, n: int) -> tuple[np.ndarray, list[BadLine]]:
        """Lines of the next n good rows, and the rejected lines before the last of them."""
        self.rejected.sort(key=lambda b: b.line)
        rej = np.fromiter((b.line for b in self.rejected), dtype=np.int64, count=len(self.rejected))
        cand = np.arange(self.next_line, self.next_line + n + rej.size, dtype=np.int64)
        lines = (cand[~np.isin(cand, rej)] if rej.size else cand)[:n]
        last = int(lines[-1]) if n else self.next_line - 1
        k = int(np.searchsorted(rej, last, side="right"))
        done, self.rejected = self.rejected[:k], self.rejected[k:]
        self.next_line = last + 1
        return lines, done

    def rest(self) -> list[BadLine]:
        done, self.rejected = sorted(self.rejected, key=lambda b: b.line), []
        return done


def _concat(parts: list[RawBatch]) -> RawBatch:
    if len(parts) == 1:
        return parts[0]
    return RawBatch(labels=np.concatenate([p.labels for p in parts]), dense=np.concatenate([p.dense for p in parts]),
                    keys=np.concatenate([p.keys for p in parts]), lines=np.concatenate([p.lines for p in parts]))


def _slice(b: RawBatch, start: int, stop: int | None = None) -> RawBatch:
    s = slice(start, stop)
    return RawBatch(labels=b.labels[s], dense=b.dense[s], keys=b.keys[s], lines=b.lines[s])


def rebatch(pieces: Iterable[RawBatch], batch_size: int) -> Iterator[RawBatch]:
    """Regroup pieces of any size into batches of exactly batch_size rows (the last may be smaller).

    A piece arrives only after its Arrow block was fully validated, so a batch is never yielded before the policy
    has judged every line in it.
    """
    buf: list[RawBatch] = []
    n = 0
    for piece in pieces:
        if len(piece):
            buf.append(piece)
            n += len(piece)
        while n >= batch_size:
            merged = _concat(buf)
            yield _slice(merged, 0, batch_size)
            buf = [_slice(merged, batch_size)] if n > batch_size else []
            n -= batch_size
    if n:
        yield _concat(buf)


def check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _piece(conv: Converted, lines: np.ndarray) -> RawBatch:
    ok = conv.ok
    return RawBatch(labels=conv.labels[ok], dense=conv.dense[ok], keys=conv.keys[ok], lines=lines[ok])


def _line_break_rows(batch: pa.RecordBatch) -> np.ndarray:
    """Row indices whose values contain a line break (only possible inside quotes)."""
    hit = np.zeros(batch.num_rows, dtype=bool)
    for col in batch.columns:
        off, data = _offsets(_plain(col))
        used = data[off[0]: off[-1]]
        pos = np.flatnonzero((used == 10) | (used == 13)) + off[0]
        hit[np.searchsorted(off, pos, side="right") - 1] = True
    return np.flatnonzero(hit)


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
