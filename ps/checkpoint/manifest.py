"""The shard checkpoint manifest (MANIFEST.json) and the naming rules for files and directories in a checkpoint.

Layout: <directory>/<tag>/<shard>/<encoded table name>.safetensors, then <directory>/<tag>/<shard>/MANIFEST.json
written last. A shard directory without a MANIFEST.json is an incomplete (crashed) checkpoint and is never read.

Names: tag and shard must be plain names ([A-Za-z0-9][A-Za-z0-9._-]*, at most 128 chars), otherwise
CheckpointError. Table names (any non-empty str, they arrive over the wire) are ENCODED, not rejected: the file name
is urllib.parse.quote(name, safe="") + ".safetensors", which percent-encodes '/', '\\', '%', NUL and every non-ASCII
byte, so it never contains a path separator and is injective; '.' and '..' become '..safetensors' and
'...safetensors', ordinary names in the shard directory. An encoded name over 200 bytes is rejected (file-system
name limits). The manifest stores the real name; the reader recomputes the file name from it and refuses a manifest
whose "file" differs, so a tampered manifest cannot point outside the shard directory.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ps.store.config import LATER_FIELDS, TableConfig
from ps.store.errors import InvalidRequest

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_FORMAT = "shark-ps-shard-checkpoint"
MANIFEST_VERSION = 1
TABLE_SUFFIX = ".safetensors"
MAX_FILE_NAME = 200

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TableConfig))
_LATER_FIELDS = LATER_FIELDS


class CheckpointError(Exception):
    """A checkpoint cannot be written or read: bad name, missing/incomplete manifest, missing file, size or checksum
    mismatch, malformed JSON or arrays. The message names the offending file."""


def check_plain_name(value: object, what: str) -> str:
    """tag / shard: one safe path component (no separators, no leading '.', so never '.' or '..')."""
    if not isinstance(value, str) or not _PLAIN.fullmatch(value):
        raise CheckpointError(f"{what} must match [A-Za-z0-9][A-Za-z0-9._-]* (at most 128 chars), got {value!r}")
    return value


def table_file_name(table: str) -> str:
    if not isinstance(table, str) or not table:
        raise CheckpointError(f"table name must be a non-empty str, got {table!r}")
    name = quote(table, safe="") + TABLE_SUFFIX
    if len(name) > MAX_FILE_NAME:
        raise CheckpointError(f"table name {table[:40]!r}... is too long for a checkpoint file name")
    return name


def shard_dir(directory: str | Path, shard: str, tag: str) -> Path:
    return Path(directory) / check_plain_name(tag, "tag") / check_plain_name(shard, "shard")


def config_to_json(cfg: TableConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)  # str/int/float only; Python's json round-trips floats and big ints exactly


def build_manifest(*, tag: str, shard: str, created_unix_ns: int, created_utc: str, seq_window: int,
                   tables: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "tag": tag, "shard": shard,
            "created_unix_ns": created_unix_ns, "created_utc": created_utc, "seq_window": seq_window,
            "tables": tables}


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_manifest(raw: bytes, path: Path, *, shard: str, tag: str) -> dict[str, Any]:
    """Parse and validate a MANIFEST.json; each table entry gains a "cfg" (TableConfig). Raises CheckpointError."""
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: manifest is not valid JSON: {exc}") from None

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{path}: invalid manifest: {why}")

    if not isinstance(m, dict):
        raise bad("not a JSON object")
    if m.get("format") != MANIFEST_FORMAT:
        raise bad(f"format is {m.get('format')!r}, want {MANIFEST_FORMAT!r}")
    if m.get("format_version") != MANIFEST_VERSION:
        raise bad(f"unsupported format_version {m.get('format_version')!r} (this reader knows {MANIFEST_VERSION})")
    if m.get("tag") != tag or m.get("shard") != shard:
        raise bad(f"it is for tag {m.get('tag')!r} shard {m.get('shard')!r}, expected tag {tag!r} shard {shard!r}")
    if not _is_int(m.get("created_unix_ns")) or not isinstance(m.get("created_utc"), str):
        raise bad("created_unix_ns / created_utc missing or of the wrong type")
    if not _is_int(m.get("seq_window")) or m["seq_window"] < 1:
        raise bad("seq_window must be a positive int")
    tables = m.get("tables")
    if not isinstance(tables, list):
        raise bad("tables must be a list")
    seen: set[str] = set()
    for i, e in enumerate(tables):
        if not isinstance(e, dict) or set(e) != {"name", "config", "file", "bytes", "sha256"}:
            raise bad(f"tables[{i}] must have exactly name, config, file, bytes, sha256")
        name, cfg = e["name"], e["config"]
        if not isinstance(name, str) or name in seen:
            raise bad(f"tables[{i}] name {name!r} is not a str or is repeated")
        seen.add(name)
        # Fields added to TableConfig later (Adam's betas, quantization: config.LATER_FIELDS) may be absent from
        # older manifests: they take their defaults.
        if not isinstance(cfg, dict) or not set(_CONFIG_FIELDS) - _LATER_FIELDS <= set(cfg) <= set(_CONFIG_FIELDS) \
                or cfg.get("name") != name:
            raise bad(f"table {name!r}: config must have exactly the fields {list(_CONFIG_FIELDS)} and its name")
        try:
            e["cfg"] = TableConfig(**cfg)
        except (InvalidRequest, TypeError) as exc:
            raise bad(f"table {name!r}: bad config: {exc}") from None
        if e["file"] != table_file_name(name):
            raise bad(f"table {name!r}: file {e['file']!r} is not the expected {table_file_name(name)!r}")
        if not _is_int(e["bytes"]) or e["bytes"] < 0:
            raise bad(f"table {name!r}: bytes must be a non-negative int")
        if not isinstance(e["sha256"], str) or not _SHA256.fullmatch(e["sha256"]):
            raise bad(f"table {name!r}: sha256 must be 64 lowercase hex digits")
    return m
