"""Per-shard checkpoints (DESIGN.md section 7): safetensors arrays (no pickle) + a MANIFEST.json with sizes and
sha256, every file written tmp -> fsync -> rename, the manifest last. Pure: numpy, safetensors, json, hashlib.

Elsewhere: the run-level RUN.json, written by the coordinator after every shard's manifest exists
(shark.coordinator.run_manifest); restoring onto another number of shards (ps.checkpoint.reshard, not imported
here: it uses the client's router, whose package loads grpc)."""

from ps.checkpoint.manifest import MANIFEST_NAME, CheckpointError, table_file_name
from ps.checkpoint.reader import latest_common_tag, latest_tag, load_manifest, read_shard_checkpoint
from ps.checkpoint.writer import snapshot_store, write_shard_checkpoint, write_snapshots

__all__ = ["MANIFEST_NAME", "CheckpointError", "latest_common_tag", "latest_tag", "load_manifest",
           "read_shard_checkpoint", "snapshot_store", "table_file_name", "write_shard_checkpoint", "write_snapshots"]
