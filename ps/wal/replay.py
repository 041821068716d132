"""Recover a shard: the newest complete checkpoint its push log knows, then every logged mutation since, in order."""

from __future__ import annotations

from dataclasses import dataclass

from ps.checkpoint import CheckpointError, read_shard_checkpoint
from ps.requests import replay_record
from ps.store import RowStore
from ps.wal.log import PushLog, RecoveryPoint
from shark.wire.tensors import DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class Recovery:
    store: RowStore
    point: RecoveryPoint | None  # the checkpoint restored (None: started from an empty store)
    replayed: int  # log records applied on top of it


def replay(store: RowStore, log: PushLog, first_segment: int, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """Apply the records of segments >= first_segment to `store`. Returns how many."""
    n = 0
    for rec in log.records_from(first_segment):
        replay_record(store, rec.kind, rec.payload, max_bytes)
        n += 1
    return n


def recover(log: PushLog, shard: str, seq_window: int, max_bytes: int = DEFAULT_MAX_BYTES) -> Recovery:
    """The newest checkpoint named by the log whose files verify (an incomplete one, from a crash during a
    checkpoint, is skipped: the older one plus more of the log gives the same state), plus the log after it."""
    for point in log.starts():
        try:
            store = read_shard_checkpoint(point.directory, shard, tag=point.tag)
        except CheckpointError:
            continue
        return Recovery(store, point, replay(store, log, point.segment, max_bytes))
    store = RowStore(seq_window=seq_window)
    return Recovery(store, None, replay(store, log, 0, max_bytes))
