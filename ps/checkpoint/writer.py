"""Write one shard's checkpoint: every table as a safetensors file (no pickle), then MANIFEST.json last.

Every file goes to a temp name in its final directory, is flushed and fsynced, os.replace()d into place, and the
directory is fsynced; so a crash leaves either no file or a complete one under each final name, and a shard
directory without MANIFEST.json (written last) is an incomplete checkpoint that readers skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as st_save

from ps.checkpoint.manifest import (
    MANIFEST_NAME,
    CheckpointError,
    build_manifest,
    config_to_json,
    shard_dir,
    table_file_name,
)
from ps.store.config import TableConfig
from ps.store.row_store import RowStore

TableSnapshot = tuple[TableConfig, dict[str, np.ndarray]]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """tmp (same directory) -> write -> flush -> fsync -> os.replace -> fsync the directory. No temp file is left
    behind on success or on an exception we can see (a crash may leave a '.<name>.tmp-*' file, never a torn
    file under the final name)."""
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _makedirs_durable(path: Path) -> None:
    """mkdir -p, fsyncing the parent of every directory we created so the new entries survive a crash."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        fsync_dir(d.parent)


def _c_order(a: np.ndarray) -> np.ndarray:
    # Not np.ascontiguousarray: it turns the snapshot's 0-d scalars (step, dim, ...) into shape (1,).
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")


def snapshot_store(store: RowStore) -> list[TableSnapshot]:
    """(config, arrays) of every table: the part that must run under the caller's store lock (copies)."""
    return [(store.config(name), store.snapshot(name)) for name in store.table_names()]


def write_snapshots(tables: list[TableSnapshot], directory: str | Path, *, shard: str = "shard-0", tag: str,
                    seq_window: int = 4096) -> Path:
    """Write already-taken snapshots (no store access, so no lock needed). Returns the MANIFEST.json path.
    Refuses (CheckpointError) to overwrite a complete checkpoint of the same tag and shard; an incomplete one
    (no manifest, e.g. a crash) is overwritten."""
    out = shard_dir(directory, shard, tag)  # validates tag and shard
    files = [table_file_name(cfg.name) for cfg, _ in tables]  # validates names before touching the disk
    manifest_path = out / MANIFEST_NAME
    if manifest_path.exists():
        raise CheckpointError(f"{manifest_path}: a complete checkpoint with tag {tag!r} already exists")
    try:
        _makedirs_durable(out)
        entries: list[dict[str, Any]] = []
        for (cfg, arrays), fname in zip(tables, files):
            data = st_save({k: _c_order(v) for k, v in arrays.items()},
                           metadata={"table": cfg.name, "tag": tag, "shard": shard})
            atomic_write(out / fname, data)
            entries.append({"name": cfg.name, "config": config_to_json(cfg), "file": fname, "bytes": len(data),
                            "sha256": hashlib.sha256(data).hexdigest()})
        now = time.time_ns()
        manifest = build_manifest(tag=tag, shard=shard, created_unix_ns=now, seq_window=seq_window,
                                  created_utc=datetime.fromtimestamp(now / 1e9, timezone.utc).isoformat(),
                                  tables=entries)
        atomic_write(manifest_path, json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"writing checkpoint {out}: {exc}") from exc
    return manifest_path


def write_shard_checkpoint(store: RowStore, directory: str | Path, shard: str = "shard-0", *, tag: str) -> Path:
    """Checkpoint every table of `store` to <directory>/<tag>/<shard>/ and return the MANIFEST.json path."""
    return write_snapshots(snapshot_store(store), directory, shard=shard, tag=tag, seq_window=store.seq_window)
