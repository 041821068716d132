"""Vectorised validation and conversion of one Arrow block of raw byte columns into label, dense and key arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shark.data.batch import MISSING_KEY
from shark.data.hashing import hash_strings
from shark.data.schema import Schema

# A plain decimal number: integers ("-1"), decimals ("1.0", ".5") and exponents ("1e5"); no nan/inf/hex/spaces.
_NUMBER_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_MAX_HEX = 16  # a uint64 key holds at most 16 hex digits


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

    Same keys and ok as Python's int(v, 16) on 1..16 hex digits (a test checks this), but computed straight from Arrow's
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
