"""The run-level checkpoint manifest, `<dir>/<tag>/RUN.json`, written last.

Every shard writes `<dir>/<tag>/shard-<i>/` with its own checksummed MANIFEST.json; only when all of them have
succeeded does the coordinator write RUN.json (tmp -> fsync -> rename), recording each shard manifest's sha256,
the run's configuration and the workers' data positions. A tag without RUN.json is an incomplete checkpoint and
is never restored; a shard manifest whose hash differs from the recorded one is refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from ps.checkpoint import MANIFEST_NAME, CheckpointError
from ps.checkpoint.manifest import check_plain_name
from ps.checkpoint.writer import atomic_write

RUN_FILE = "RUN.json"
FORMAT = "shark-run/1"


def shard_name(i: int) -> str:
    return f"shard-{i}"


def _shard_manifest_sha(directory: Path, tag: str, shard: str) -> str:
    path = directory / tag / shard / MANIFEST_NAME
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (shard {shard} did not finish its checkpoint)") from None


def write_run_manifest(directory: str | Path, tag: str, num_shards: int, body: dict[str, Any]) -> Path:
    d = Path(directory)
    check_plain_name(tag, "tag")
    shards = [{"shard": shard_name(i), "manifest_sha256": _shard_manifest_sha(d, tag, shard_name(i))}
              for i in range(num_shards)]
    doc = {"format": FORMAT, "tag": tag, "created_unix_ns": time.time_ns(), "num_shards": num_shards,
           "shards": shards, **body}
    path = d / tag / RUN_FILE
    atomic_write(path, json.dumps(doc, indent=1, sort_keys=True).encode())
    return path


def read_run_manifest(directory: str | Path, tag: str) -> dict[str, Any]:
    """Load and verify RUN.json of `tag`: format, and every shard manifest's hash."""
    d = Path(directory)
    path = d / check_plain_name(tag, "tag") / RUN_FILE
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (incomplete or no checkpoint {tag!r})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("tag") != tag:
        raise CheckpointError(f"{path}: not a {FORMAT} manifest for tag {tag!r}")
    shards = doc.get("shards")
    if not isinstance(shards, list) or len(shards) != doc.get("num_shards"):
        raise CheckpointError(f"{path}: shard list does not match num_shards")
    for i, entry in enumerate(shards):
        if entry.get("shard") != shard_name(i):
            raise CheckpointError(f"{path}: shard {i} is named {entry.get('shard')!r}")
        if _shard_manifest_sha(d, tag, shard_name(i)) != entry.get("manifest_sha256"):
            raise CheckpointError(f"{d / tag / shard_name(i) / MANIFEST_NAME}: does not match {path} "
                                  "(written by another run or changed since)")
    return doc


def latest_run_tag(directory: str | Path, run_id: str | None = None) -> str | None:
    """The newest tag under `directory` with a valid RUN.json (by its creation time), or None; with `run_id`, the
    newest of that run's."""
    base = Path(directory)
    if not base.is_dir():
        return None
    best: tuple[int, str] | None = None
    for child in base.iterdir():
        if not (child / RUN_FILE).is_file():
            continue
        try:
            doc = read_run_manifest(base, child.name)
        except CheckpointError:
            continue
        if run_id is not None and doc.get("run_id") != run_id:
            continue
        key = (int(doc["created_unix_ns"]), child.name)
        best = key if best is None or key > best else best
    return None if best is None else best[1]


def discard_partial_checkpoints(directory: str | Path, run_id: str) -> list[str]:
    """Delete the checkpoints of run `run_id` that never got a valid RUN.json (their writer died): they are never
    restored anyway, and removing them means no partial checkpoint stays visible. Returns the removed tags."""
    base = Path(directory)
    removed = []
    for child in sorted(base.glob(f"ckpt-*-{run_id}*")) if base.is_dir() else []:
        if not child.is_dir() or not (child.name.endswith(run_id) or f"-{run_id}-i" in child.name):
            continue
        try:
            read_run_manifest(base, child.name)
        except CheckpointError:
            shutil.rmtree(child)
            removed.append(child.name)
    return removed
