"""Read one shard's checkpoint back into a fresh RowStore, verifying every file before it is loaded."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.numpy import load as st_load

from ps.checkpoint.manifest import MANIFEST_NAME, CheckpointError, check_plain_name, parse_manifest, shard_dir
from ps.store.errors import InvalidRequest
from ps.store.row_store import RowStore


def load_manifest(directory: str | Path, shard: str = "shard-0", *, tag: str) -> dict[str, Any]:
    """The validated manifest of <directory>/<tag>/<shard>/ (CheckpointError if missing or malformed)."""
    path = shard_dir(directory, shard, tag) / MANIFEST_NAME
    raw = _read(path, missing="no manifest (checkpoint missing or incomplete)")
    return parse_manifest(raw, path, shard=shard, tag=tag)


def _read(path: Path, missing: str) -> bytes:
    """A file's bytes, or CheckpointError naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {missing}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from None


def read_shard_checkpoint(directory: str | Path, shard: str = "shard-0", *, tag: str,
                          seq_window: int | None = None) -> RowStore:
    """A new RowStore holding exactly the checkpointed tables (seq_window: the manifest's unless given).

    Each file's size and sha256 are checked on the bytes read, and those same bytes are parsed (no re-read, so
    nothing can change between verification and loading). Any problem raises CheckpointError naming the file and
    no store is returned: the store is only handed out after every table was restored."""
    m = load_manifest(directory, shard, tag=tag)
    base = shard_dir(directory, shard, tag)
    store = RowStore(seq_window=m["seq_window"] if seq_window is None else seq_window)
    for e in m["tables"]:
        path = base / e["file"]
        data = _read(path, missing=f"table file is missing (table {e['name']!r})")
        if len(data) != e["bytes"]:
            raise CheckpointError(f"{path}: size {len(data)} != manifest {e['bytes']} (truncated or replaced)")
        if hashlib.sha256(data).hexdigest() != e["sha256"]:
            raise CheckpointError(f"{path}: sha256 mismatch (file corrupted)")
        try:
            arrays = st_load(data)
        except (SafetensorError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a valid safetensors file: {exc}") from None
        del data
        try:
            store.restore_table(e["cfg"], arrays)
        except InvalidRequest as exc:
            raise CheckpointError(f"{path}: inconsistent table snapshot: {exc}") from None
    return store


def latest_tag(directory: str | Path, shard: str = "shard-0") -> str | None:
    """The tag under `directory` whose <tag>/<shard>/MANIFEST.json is present and valid, with the newest
    created_unix_ns (ties: the larger tag). Incomplete checkpoints (no or broken manifest) are skipped. The table
    files are not hashed here: read_shard_checkpoint verifies them."""
    return latest_common_tag(directory, [shard])  # one shard: the same rule


def latest_common_tag(directory: str | Path, shards: Sequence[str]) -> str | None:
    """The newest tag (by its newest shard manifest, ties: the larger tag) that every one of `shards` completed.
    What a cluster restoring without a tag must use instead of each shard's latest_tag: a crash in the middle of a
    multi-shard checkpoint leaves the new tag complete on some shards only, and those would restore a newer state
    than the others. (A run's RUN.json, written after every shard, is stricter still: shark.coordinator.)"""
    names = [check_plain_name(s, "shard") for s in shards]
    base = Path(directory)
    if not names or not base.is_dir():
        return None
    best: tuple[int, str] | None = None
    for child in base.iterdir():
        try:
            tag = check_plain_name(child.name, "tag")
            created = max(load_manifest(base, s, tag=tag)["created_unix_ns"] for s in names)
        except CheckpointError:
            continue
        if best is None or (created, tag) > best:
            best = (created, tag)
    return None if best is None else best[1]
