"""ps.checkpoint: a shard checkpoint round-trips a RowStore bit-exactly (rows, tiers, optimizer state, seq windows),
is written atomically (no temp files left, manifest last), is pickle-free, and is verified before it is loaded."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from ps.checkpoint import (
    MANIFEST_NAME, CheckpointError, latest_tag, load_manifest, read_shard_checkpoint, table_file_name,
    write_shard_checkpoint,
)
from ps.store import RowStore, TableConfig

DIM = 8


def _push(store: RowStore, table: str, ids, worker: int, seq: int, scale: float = 0.1) -> bool:
    ids = np.asarray(ids, dtype=np.int64)
    rng = np.random.default_rng(seq * 1000 + worker)
    grads = (rng.standard_normal((ids.shape[0], DIM)) * scale).astype(np.float32)
    n = ids.shape[0]
    return store.push(table, ids, grads, np.ones(n, np.int64), np.zeros(n, np.int64), worker, seq).applied


def make_store() -> RowStore:
    s = RowStore(seq_window=64)
    s.create_table(TableConfig("emb_ada", dim=DIM, capacity=500, optimizer="adagrad", lr=0.05, seed=3))
    s.create_table(TableConfig("emb/sgd", dim=DIM, capacity=300, optimizer="sgd", lr=0.1, seed=11,
                               rounding="nearest"))  # a '/' in the name: the file name is percent-encoded
    for t, cap in (("emb_ada", 500), ("emb/sgd", 300)):
        s.pull(t, np.arange(0, 60, dtype=np.int64))
        for seq in range(5):
            assert _push(s, t, np.arange(seq, cap, 7), worker=1, seq=seq)
        assert _push(s, t, [1, 2, 3], worker=2, seq=9)  # out of order: seq 9 sits above worker 2's high-water mark
        s.set_tiers(t, np.arange(10, 20), np.full(10, 1))  # fp16
        s.set_tiers(t, np.arange(20, 35), np.full(15, 2))  # int8
        s.set_tiers(t, np.array([12, 13]), np.array([0, 2]))  # moves leave holes in the free-lists
        assert _push(s, t, np.arange(0, 40, 3), worker=1, seq=5)  # writes back into fp16/int8 rows
    return s


IDS = {"emb_ada": np.arange(500, dtype=np.int64), "emb/sgd": np.arange(300, dtype=np.int64)}


def test_round_trip_is_exact(tmp_path: Path) -> None:
    src = make_store()
    manifest = write_shard_checkpoint(src, tmp_path, tag="step-100")
    assert manifest == tmp_path / "step-100" / "shard-0" / MANIFEST_NAME
    snaps = {t: src.snapshot(t) for t in src.table_names()}
    tiers = {t: src.tiers(t, IDS[t]) for t in src.table_names()}
    mem = {t: src.memory_bytes(t) for t in src.table_names()}

    dst = read_shard_checkpoint(tmp_path, tag="step-100")
    assert dst.table_names() == src.table_names() and dst.seq_window == src.seq_window
    for t in src.table_names():
        assert dst.config(t) == src.config(t)
        got = dst.snapshot(t)
        assert got.keys() == snaps[t].keys()
        for k, a in snaps[t].items():
            assert got[k].dtype == a.dtype and got[k].shape == a.shape and got[k].tobytes() == a.tobytes(), (t, k)
        np.testing.assert_array_equal(dst.tiers(t, IDS[t]), tiers[t])
        assert 0 < dst.memory_bytes(t)["total"] <= mem[t]["total"]  # no growth slack after a restore
    # memory_bytes counts allocated capacity; a restore allocates no growth slack, so compare after compact().
    for s in (src, dst):
        for t in s.table_names():
            s.compact(t)
    for t in src.table_names():
        assert dst.memory_bytes(t) == src.memory_bytes(t), t
    # pulls are identical, before and after the same further pushes (stochastic rounding replays exactly)
    for t in src.table_names():
        assert np.array_equal(dst.pull(t, IDS[t]), src.pull(t, IDS[t]))
        # a (worker, seq) pair seen before the checkpoint is still a duplicate after restore, on both stores
        for s in (src, dst):
            assert not _push(s, t, [5, 6], worker=1, seq=3)
            assert not _push(s, t, [5, 6], worker=2, seq=9)
            assert _push(s, t, np.arange(0, 50, 2), worker=2, seq=7)
        assert np.array_equal(dst.pull(t, IDS[t]), src.pull(t, IDS[t]))


def test_no_temp_files_and_manifest_contents(tmp_path: Path) -> None:
    src = make_store()
    write_shard_checkpoint(src, tmp_path, shard="shard-3", tag="t1")
    d = tmp_path / "t1" / "shard-3"
    names = sorted(p.name for p in d.iterdir())
    assert names == sorted([MANIFEST_NAME, "emb_ada.safetensors", "emb%2Fsgd.safetensors"])
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") or "tmp" in p.name]
    m = json.loads((d / MANIFEST_NAME).read_text())
    assert m["format_version"] == 1 and m["tag"] == "t1" and m["shard"] == "shard-3" and m["created_utc"]
    by = {e["name"]: e for e in m["tables"]}
    assert by["emb/sgd"]["config"]["optimizer"] == "sgd" and by["emb/sgd"]["file"] == "emb%2Fsgd.safetensors"
    assert by["emb_ada"]["bytes"] == (d / "emb_ada.safetensors").stat().st_size
    assert load_manifest(tmp_path, "shard-3", tag="t1")["tables"][0]["cfg"] == src.config(m["tables"][0]["name"])


def test_files_are_safetensors_not_pickle(tmp_path: Path) -> None:
    write_shard_checkpoint(make_store(), tmp_path, tag="t")
    for f in (tmp_path / "t" / "shard-0").glob("*.safetensors"):
        raw = f.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])  # little-endian u64 header length, then a JSON header
        assert 8 + n <= len(raw)
        header = json.loads(raw[8:8 + n].decode("utf-8"))
        assert "accum" in header and header["accum"]["dtype"] == "F32"
        assert raw[:1] != b"\x80" and b"\x80\x04\x95" not in raw[:16]  # no pickle protocol opcode


@pytest.mark.parametrize("victim", ["emb_ada.safetensors", "emb%2Fsgd.safetensors"])
def test_corrupted_file_is_refused_naming_it(tmp_path: Path, victim: str) -> None:
    write_shard_checkpoint(make_store(), tmp_path, tag="t")
    f = tmp_path / "t" / "shard-0" / victim
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # flip one bit in the middle of the data
    f.write_bytes(bytes(raw))
    result = None
    with pytest.raises(CheckpointError, match="sha256 mismatch") as info:
        result = read_shard_checkpoint(tmp_path, tag="t")
    assert victim in str(info.value) and result is None


def test_truncated_or_missing_file_or_bad_manifest(tmp_path: Path) -> None:
    write_shard_checkpoint(make_store(), tmp_path, tag="t")
    d = tmp_path / "t" / "shard-0"
    (d / "emb_ada.safetensors").write_bytes((d / "emb_ada.safetensors").read_bytes()[:-1])
    with pytest.raises(CheckpointError, match="emb_ada.safetensors.*size"):
        read_shard_checkpoint(tmp_path, tag="t")
    (d / "emb_ada.safetensors").unlink()
    with pytest.raises(CheckpointError, match="emb_ada.safetensors.*missing"):
        read_shard_checkpoint(tmp_path, tag="t")
    (d / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="MANIFEST.json.*not valid JSON"):
        read_shard_checkpoint(tmp_path, tag="t")
    m = {"format": "shark-ps-shard-checkpoint", "format_version": 99}
    (d / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="format_version"):
        read_shard_checkpoint(tmp_path, tag="t")
    with pytest.raises(CheckpointError, match="no manifest"):
        read_shard_checkpoint(tmp_path, tag="nope")


def test_manifest_cannot_point_outside_the_shard_directory(tmp_path: Path) -> None:
    write_shard_checkpoint(make_store(), tmp_path, tag="t")
    p = tmp_path / "t" / "shard-0" / MANIFEST_NAME
    m = json.loads(p.read_text())
    m["tables"][0]["file"] = "../../evil.safetensors"
    p.write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="not the expected"):
        read_shard_checkpoint(tmp_path, tag="t")


def test_latest_tag_skips_incomplete_checkpoints(tmp_path: Path) -> None:
    assert latest_tag(tmp_path) is None and latest_tag(tmp_path / "absent") is None
    s = make_store()
    write_shard_checkpoint(s, tmp_path, tag="a")
    write_shard_checkpoint(s, tmp_path, tag="b")
    assert latest_tag(tmp_path) == "b"
    write_shard_checkpoint(s, tmp_path, tag="c")
    (tmp_path / "c" / "shard-0" / MANIFEST_NAME).unlink()  # a crash after the tables, before the manifest
    (tmp_path / "d" / "shard-0").mkdir(parents=True)  # a crash right after mkdir
    (tmp_path / "e" / "shard-0").mkdir(parents=True)
    (tmp_path / "e" / "shard-0" / MANIFEST_NAME).write_text("{")  # a broken manifest
    (tmp_path / "stray.txt").write_text("x")
    assert latest_tag(tmp_path) == "b"
    assert latest_tag(tmp_path, "shard-1") is None
    with pytest.raises(CheckpointError, match="no manifest"):
        read_shard_checkpoint(tmp_path, tag="c")
    # the incomplete tag can be written again (overwriting its table files); a complete one cannot
    write_shard_checkpoint(s, tmp_path, tag="c")
    assert latest_tag(tmp_path) == "c"
    with pytest.raises(CheckpointError, match="already exists"):
        write_shard_checkpoint(s, tmp_path, tag="c")


def test_names_are_validated_or_encoded(tmp_path: Path) -> None:
    s = RowStore()
    for bad in ("", "..", ".", "a/b", "../x", ".hidden", "x" * 200):
        with pytest.raises(CheckpointError):
            write_shard_checkpoint(s, tmp_path, tag=bad)
        with pytest.raises(CheckpointError):
            write_shard_checkpoint(s, tmp_path, shard=bad, tag="ok")
    assert list(tmp_path.iterdir()) == []
    for name in ("..", ".", "a/../b", "a\\b", "x\0y", "über", "%2F"):
        f = table_file_name(name)
        assert "/" not in f and "\\" not in f and "\0" not in f and f.endswith(".safetensors")
    assert table_file_name("%2F") != table_file_name("/")
    s.create_table(TableConfig("..", dim=2, capacity=10))
    s.create_table(TableConfig("a/../b", dim=2, capacity=10))
    s.pull("..", np.arange(3))
    write_shard_checkpoint(s, tmp_path, tag="t")
    assert {p.parent for p in tmp_path.rglob("*.safetensors")} == {tmp_path / "t" / "shard-0"}
    r = read_shard_checkpoint(tmp_path, tag="t")
    assert r.table_names() == ["..", "a/../b"]
    assert np.array_equal(r.pull("..", np.arange(3)), s.pull("..", np.arange(3)))


def test_empty_store_and_empty_table(tmp_path: Path) -> None:
    s = RowStore()
    write_shard_checkpoint(s, tmp_path, tag="empty")
    assert read_shard_checkpoint(tmp_path, tag="empty").table_names() == []
    s.create_table(TableConfig("t", dim=4, capacity=10))
    write_shard_checkpoint(s, tmp_path, tag="one")
    r = read_shard_checkpoint(tmp_path, tag="one")
    assert r.stats("t")["rows"] == 0 and np.array_equal(r.pull("t", np.arange(10)), s.pull("t", np.arange(10)))
