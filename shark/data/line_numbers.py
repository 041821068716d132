"""Exact physical line numbers for good and bad rows, and regrouping converted pieces into batch_size rows."""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from shark.data.bad_lines import BadLine
from shark.data.batch import RawBatch
from shark.data.columns import Converted, _offsets, _plain


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
