"""Opening data files: existence and permission checks, gzip detection, first lines, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from shark.data.errors import DataError

PathLike = str | os.PathLike
_GZIP_MAGIC = b"\x1f\x8b"


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
