"""PushLog: numbered, append-only segment files of checksummed records, fsynced before a mutation is acknowledged.

Layout under `directory` (one per shard and run, e.g. <checkpoint_dir>/wal/<run>/shard-0/):
    seg-000000000001.log, seg-000000000002.log, ...   records in application order
    <tag>.start    JSON {"segment": n, "directory": d}: checkpoint <tag> (in directory d) holds every record of
                   the segments before n; the records of segments >= n came after it
Record: magic b"SWAL" | kind u8 | length u32 LE | crc32 u32 LE (of kind + payload) | payload (protobuf bytes).

A checkpoint rotates the log under the shard lock (the snapshot and the rotation see the same applied pushes) and
writes <tag>.start. Recovery restores the newest complete checkpoint named by a .start file and replays every
segment from its number on, in order (no .start: an empty store and every segment). A torn last record (a crash in
the middle of an append, never acknowledged) is ignored; a bad record anywhere else is corruption and raises.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ps.checkpoint.manifest import check_plain_name
from ps.checkpoint.writer import atomic_write, fsync_dir

MAGIC = b"SWAL"
_HEAD = struct.Struct("<4sBII")  # magic, kind, length, crc32
_SEGMENT = re.compile(r"seg-(\d{12})\.log")
MAX_RECORD = 1 << 31


class LogError(Exception):
    """The push log cannot be read (corrupt record) or written. The message names the file and offset."""


@dataclass(frozen=True)
class RecoveryPoint:
    tag: str
    directory: str
    segment: int


@dataclass(frozen=True)
class Record:
    kind: int
    payload: bytes


def _segment_name(n: int) -> str:
    return f"seg-{n:012d}.log"


def read_segment(path: Path) -> Iterator[Record]:
    """Records of one segment in order. A torn tail (incomplete last record) ends the segment silently."""
    data = path.read_bytes()
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < _HEAD.size:
            return  # torn header: a crash during the append, never acknowledged
        magic, kind, length, crc = _HEAD.unpack_from(data, pos)
        if magic != MAGIC:
            raise LogError(f"{path}: offset {pos}: bad record magic {magic!r} (corrupt log)")
        body = pos + _HEAD.size
        if body + length > end:
            return  # torn payload
        payload = data[body:body + length]
        if zlib.crc32(bytes([kind]) + payload) != crc:
            if body + length == end:
                return  # a torn last record can also be a short write of the right length
            raise LogError(f"{path}: offset {pos}: checksum mismatch (corrupt log)")
        yield Record(kind, payload)
        pos = body + length


class PushLog:
    def __init__(self, directory: str | Path, fsync: bool = True) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        segs = self.segments()
        self.current = (segs[-1] if segs else 0) + 1  # never append to a segment a crash may have torn
        self._file = self._open(self.current)
        self.records = 0
        self.bytes = 0

    def segments(self) -> list[int]:
        return sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _SEGMENT.fullmatch(p.name)))

    def _open(self, n: int):
        f = open(self.dir / _segment_name(n), "xb")
        fsync_dir(self.dir)
        return f

    def append(self, kind: int, payload: bytes, sync: bool = True) -> None:
        """Append one record (in the order of the caller's lock). sync=True also makes it durable now; with
        sync=False the caller must call sync() before acknowledging the mutation (fsync outside its lock, so
        concurrent requests share the disk flush instead of queueing for it)."""
        if not 0 <= kind < 256 or len(payload) >= MAX_RECORD:
            raise LogError(f"record kind {kind} / length {len(payload)} out of range")
        head = _HEAD.pack(MAGIC, kind, len(payload), zlib.crc32(bytes([kind]) + payload))
        self._file.write(head + payload)
        self._file.flush()
        if sync:
            self.sync()
        self.records += 1
        self.bytes += len(head) + len(payload)

    def sync(self) -> None:
        """fsync what was appended so far. Safe against a concurrent rotate(): it syncs the old segment before
        closing it, so a closed file here means its records are already durable."""
        f = self._file
        if not self.fsync:
            return
        try:
            os.fsync(f.fileno())
        except (ValueError, OSError):  # closed by rotate() meanwhile (after its own fsync)
            if not f.closed:
                raise

    def rotate(self, tag: str, directory: str | Path, overwrite: bool = False) -> int:
        """Start a new segment and record it as the replay start of checkpoint `tag` in `directory` (call under
        the lock that orders mutations, together with the snapshot). overwrite=False refuses a tag that already
        has a start (a reused tag would silently move its replay point). Returns the new segment number."""
        path = self.dir / f"{check_plain_name(tag, 'tag')}.start"
        if path.exists() and not overwrite:
            raise LogError(f"{path}: checkpoint tag {tag!r} was already taken with this push log")
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self._file.close()
        self.current += 1
        self._file = self._open(self.current)
        atomic_write(path, json.dumps({"segment": self.current, "directory": str(directory)}).encode())
        return self.current

    def has_start(self, tag: str, directory: str | Path) -> bool:
        """Whether checkpoint `tag` in `directory` already has a replay start in this log."""
        return any(p.tag == tag and p.directory == str(directory) for p in self.starts())

    def starts(self) -> list[RecoveryPoint]:
        """Every checkpoint this log knows a replay start for, newest (highest segment) first."""
        out = []
        for p in self.dir.glob("*.start"):
            try:
                doc = json.loads(p.read_text())
                out.append(RecoveryPoint(tag=p.name[: -len(".start")], directory=str(doc["directory"]),
                                         segment=int(doc["segment"])))
            except (ValueError, KeyError, TypeError):
                raise LogError(f"{p}: not a push-log start record") from None
        return sorted(out, key=lambda r: r.segment, reverse=True)

    def records_from(self, first: int) -> Iterator[Record]:
        """Every record of the segments numbered >= first, oldest first (this log's own new segment excluded)."""
        for n in self.segments():
            if n >= first and n != self.current:
                yield from read_segment(self.dir / _segment_name(n))

    def prune(self, keep_from: int) -> None:
        """Delete segments older than `keep_from` (after a later checkpoint is complete)."""
        for n in self.segments():
            if n < keep_from:
                (self.dir / _segment_name(n)).unlink(missing_ok=True)

    def close(self) -> None:
        self._file.close()
