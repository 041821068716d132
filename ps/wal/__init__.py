"""The shard's push log (write-ahead log of acknowledged mutations), so a shard killed between checkpoints comes
back with every update it acknowledged. Pure Python + protobuf bytes: no grpc, no ray."""

from ps.wal.log import LogError, PushLog, RecoveryPoint, Record, read_segment
from ps.wal.replay import Recovery, recover, replay

__all__ = ["LogError", "PushLog", "Record", "RecoveryPoint", "Recovery", "read_segment", "recover", "replay"]
