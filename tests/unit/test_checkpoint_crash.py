"""A crash at any point of writing checkpoint T2 leaves T1 the newest loadable checkpoint (never a partial T2),
T1 loading bit-exactly, no torn file under a final name, and a later checkpoint T3 succeeding.

The crash is injected at the k-th filesystem step of a clean T2 write, for every k: each mkdir, each data write
(torn: half the bytes reach the temp file), each fsync (of a file or a directory) and each os.replace, across the
table files, the shard manifest(s) and, for a multi-shard run, RUN.json. From the crash on every filesystem call
raises too (a dead process runs no cleanup), so temp files stay behind as after a real crash."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load as st_load

from ps.checkpoint import (
    MANIFEST_NAME,
    latest_common_tag,
    latest_tag,
    load_manifest,
    read_shard_checkpoint,
    write_shard_checkpoint,
    writer,
)
from ps.store import RowStore, TableConfig
from shark.coordinator.run_manifest import RUN_FILE, latest_run_tag, read_run_manifest, write_run_manifest

DIM = 4
TABLES = [TableConfig("emb_fp32", dim=DIM, capacity=4000, optimizer="adagrad", seed=1),
          TableConfig("emb/fq", dim=DIM, capacity=4000, optimizer="adagrad", seed=2, quant="fq", fq_t8=0.02,
                      fq_t16=0.08, fq_beta=0.05, fq_retier_every=2),
          TableConfig("__dense__", dim=DIM, capacity=32, optimizer="adam", lr=0.01, seed=3)]


class Crash(BaseException):
    """The process dies here (BaseException: no `except Exception` in the writer may swallow it)."""


class Injector:
    """Counts the filesystem steps of a checkpoint write; raises Crash at step `crash_at` and at every call after."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.crash_at, self.crashed, self.steps = crash_at, False, []

    def next_crashes(self) -> bool:
        return not self.crashed and len(self.steps) + 1 == self.crash_at

    def tick(self, kind: str, target: object) -> None:
        if self.crashed:
            raise Crash(f"dead: {kind} {target}")
        self.steps.append((kind, str(target)))
        if len(self.steps) == self.crash_at:
            self.crashed = True
            raise Crash(f"crash at step {self.crash_at}: {kind} {target}")

    @contextmanager
    def installed(self) -> Iterator[Injector]:
        real_open = open

        def counted(kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kw: Any) -> Any:
                self.tick(kind, args[0] if args else "")
                return fn(*args, **kw)
            return call

        def unlink(path: Any, *args: Any, **kw: Any) -> Any:  # cleanup: only a dead process fails to do it
            if self.crashed:
                raise Crash("dead: unlink")
            return real_unlink(path, *args, **kw)

        def tracked_open(path: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
            self.tick("open", path)
            return _File(real_open(path, mode, *args, **kw), self, path)

        real_unlink = os.unlink
        with pytest.MonkeyPatch.context() as mp:
            for name, kind in (("replace", "replace"), ("fsync", "fsync"), ("mkdir", "mkdir")):
                mp.setattr(os, name, counted(kind, getattr(os, name)))
            mp.setattr(os, "unlink", unlink)
            mp.setattr(writer, "open", tracked_open, raising=False)  # the writer's temp files
            yield self


class _File:
    def __init__(self, f: Any, inj: Injector, path: Any) -> None:
        self.f, self.inj, self.path = f, inj, path

    def write(self, data: bytes) -> int:
        if self.inj.next_crashes():  # a torn write: part of the bytes reach the (temp) file
            self.f.write(data[: len(data) // 2])
            self.f.flush()
        self.inj.tick("write", self.path)
        return self.f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> _File:  # noqa: PYI034 - a test double
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


@pytest.fixture(autouse=True)
def _no_disk_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync's durability cannot be observed in one process (a crash here does not lose the page cache): the
    injector still counts every fsync as a step, but none reaches the disk, so the many writes stay fast."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def _push(s: RowStore, rng: np.random.Generator, seq: int) -> None:
    for cfg in TABLES:
        hi = 30 if cfg.optimizer == "adam" else 1500
        ids = np.unique(rng.integers(0, hi, 120))
        n = ids.shape[0]
        s.push(cfg.name, ids, (rng.standard_normal((n, DIM)) * 0.1).astype(np.float32), rng.integers(0, 3, n),
               rng.integers(0, 5, n), worker_id=1, seq=seq)


def make_store(seed: int, pushes: int) -> RowStore:
    s = RowStore(seq_window=16)
    for cfg in TABLES:
        s.create_table(cfg)
    rng = np.random.default_rng(seed)
    for seq in range(pushes):
        _push(s, rng, seq)
    return s


def snap(s: RowStore) -> dict[str, dict[str, bytes]]:
    return {t: {k: v.dtype.str.encode() + str(v.shape).encode() + v.tobytes() for k, v in s.snapshot(t).items()}
            for t in s.table_names()}


def _assert_no_torn_files(d: Path, tag: str, reference: Path) -> None:
    """Every file under a final name in <d>/<tag> is complete: table files hold a clean write's arrays, manifests
    are valid. Temp files (a leading '.') may remain: readers ignore them."""
    for f in (d / tag).rglob("*"):
        if f.is_dir() or f.name.startswith("."):
            continue
        rel = f.relative_to(d)
        if f.name == MANIFEST_NAME:
            load_manifest(d, f.parent.name, tag=tag)  # parses and validates, or raises
        elif f.name == RUN_FILE:
            read_run_manifest(d, tag)
        else:  # a complete safetensors file with the clean write's arrays (its header order may differ)
            got, want = st_load(f.read_bytes()), st_load((reference / rel).read_bytes())
            assert got.keys() == want.keys() and all(got[k].tobytes() == want[k].tobytes() for k in want), rel


def test_store_has_every_kind_of_row() -> None:
    s = make_store(0, 6)
    tiers = s.snapshot("emb/fq")["tier"]
    assert set(np.unique(tiers).tolist()) == {0, 1, 2} and s.snapshot("__dense__")["adam_t"].max() > 0


def _count_steps(write: Callable[[Path], None], base: Path, scratch: Path) -> list[tuple[str, str]]:
    """The steps of a clean write into a copy of `base` (the same directories exist as in the crash runs)."""
    shutil.copytree(base, scratch)
    with Injector().installed() as inj:
        write(scratch)
    return inj.steps


def _last_replace_of(steps: list[tuple[str, str]], name: str) -> int:
    """1-based step number of the os.replace that puts `name` in place (a crash after it: the checkpoint exists)."""
    return max(i + 1 for i, (kind, target) in enumerate(steps) if kind == "replace" and "tmp" in target
               and Path(target).name.startswith(f".{name}.tmp-"))


def test_single_shard_crash_at_every_step(tmp_path: Path) -> None:
    s1, s2 = make_store(1, 5), make_store(1, 9)  # T1's state, then T2's (4 more pushes)
    base = tmp_path / "base"
    write_shard_checkpoint(s1, base, tag="T1")
    want1, want2 = snap(s1), snap(s2)
    reference = tmp_path / "reference"  # a clean T2 write: the step list and every final file's bytes
    steps = _count_steps(lambda d: write_shard_checkpoint(s2, d, tag="T2"), base, reference)
    kinds = {k for k, _ in steps}
    assert kinds == {"mkdir", "open", "write", "fsync", "replace"} and len(steps) >= 4 * (len(TABLES) + 1)
    committed = _last_replace_of(steps, MANIFEST_NAME)
    for k in range(1, len(steps) + 1):
        d = tmp_path / f"k{k}"
        shutil.copytree(base, d)
        with Injector(k).installed(), pytest.raises(Crash):
            write_shard_checkpoint(s2, d, tag="T2")
        newest = latest_tag(d)
        assert newest == ("T2" if k > committed else "T1"), (k, steps[k - 1])
        assert snap(read_shard_checkpoint(d, tag="T1")) == want1
        if newest == "T2":  # the crash came after the manifest's rename: T2 is complete
            assert snap(read_shard_checkpoint(d, tag="T2")) == want2
        _assert_no_torn_files(d, "T2", reference)
        # the next checkpoint succeeds, whatever the crash left (and T2 itself can be retried if incomplete)
        write_shard_checkpoint(s2, d, tag="T3")
        assert latest_tag(d) == "T3" and snap(read_shard_checkpoint(d, tag="T3")) == want2
        if newest == "T1":
            write_shard_checkpoint(s2, d, tag="T2")
            assert snap(read_shard_checkpoint(d, tag="T2")) == want2
        shutil.rmtree(d)


def _write_run(stores: list[RowStore], d: Path, tag: str) -> None:
    for i, s in enumerate(stores):  # as the coordinator: every shard, then RUN.json last
        write_shard_checkpoint(s, d, f"shard-{i}", tag=tag)
    write_run_manifest(d, tag, len(stores), {"run_id": "r", "final": True})


def test_multi_shard_run_crash_at_every_step(tmp_path: Path) -> None:
    shards = 3
    old = [make_store(10 + i, 4) for i in range(shards)]
    new = [make_store(10 + i, 7) for i in range(shards)]
    base = tmp_path / "base"
    _write_run(old, base, "T1")
    want1, want2 = [snap(s) for s in old], [snap(s) for s in new]
    reference = tmp_path / "reference"
    steps = _count_steps(lambda d: _write_run(new, d, "T2"), base, reference)
    committed = _last_replace_of(steps, RUN_FILE)
    manifests = [i + 1 for i, (kind, t) in enumerate(steps) if kind == "replace" and f".{MANIFEST_NAME}.tmp-" in t]
    assert len(manifests) == shards and committed > max(manifests)
    for k in range(1, len(steps) + 1):
        d = tmp_path / f"k{k}"
        shutil.copytree(base, d)
        with Injector(k).installed(), pytest.raises(Crash):
            _write_run(new, d, "T2")
        newest = latest_run_tag(d)
        assert newest == ("T2" if k > committed else "T1"), (k, steps[k - 1])
        # without RUN.json (a tag-less shard restore): T2 only once every shard's manifest is in place; a shard's
        # own newest tag may already be T2 while another's is T1, which is why a cluster must not use it
        names = [f"shard-{i}" for i in range(shards)]
        assert latest_common_tag(d, names) == ("T2" if k > max(manifests) else "T1"), k
        assert [latest_tag(d, n) for n in names] == ["T2" if k > m else "T1" for m in manifests], k
        read_run_manifest(d, "T1")  # every shard manifest still the one RUN.json recorded
        for i in range(shards):
            assert snap(read_shard_checkpoint(d, f"shard-{i}", tag="T1")) == want1[i]
            if newest == "T2":
                assert snap(read_shard_checkpoint(d, f"shard-{i}", tag="T2")) == want2[i]
        _assert_no_torn_files(d, "T2", reference)
        _write_run(new, d, "T3")
        assert latest_run_tag(d) == "T3"
        assert [snap(read_shard_checkpoint(d, f"shard-{i}", tag="T3")) for i in range(shards)] == want2
        shutil.rmtree(d)


def test_stray_temp_files_and_a_manifestless_directory_are_ignored(tmp_path: Path) -> None:
    s1, s2 = make_store(2, 3), make_store(2, 6)
    _write_run([s1], tmp_path, "T1")
    # what a crash can leave: T2's shard directory with table files (one torn under its temp name) but no
    # manifest, a temp manifest, a temp RUN.json, and an empty T2b tag directory
    write_shard_checkpoint(s2, tmp_path, "shard-0", tag="T2")
    shard = tmp_path / "T2" / "shard-0"
    (shard / MANIFEST_NAME).rename(shard / f".{MANIFEST_NAME}.tmp-0123456789ab")
    (shard / ".emb_fp32.safetensors.tmp-ba9876543210").write_bytes(b"\x00" * 17)
    (tmp_path / "T2" / f".{RUN_FILE}.tmp-aaaaaaaaaaaa").write_bytes(b'{"format": "shark-r')
    (tmp_path / "T2b" / "shard-0").mkdir(parents=True)
    assert latest_tag(tmp_path) == "T1" and latest_run_tag(tmp_path) == "T1"
    assert snap(read_shard_checkpoint(tmp_path, tag="T1")) == snap(s1)
    _write_run([s2], tmp_path, "T3")
    assert latest_tag(tmp_path) == "T3" and latest_run_tag(tmp_path) == "T3"
    assert snap(read_shard_checkpoint(tmp_path, tag="T3")) == snap(s2)
    _write_run([s2], tmp_path, "T2")  # the incomplete tag itself can be written again
    assert read_run_manifest(tmp_path, "T2")["num_shards"] == 1
    assert snap(read_shard_checkpoint(tmp_path, tag="T2")) == snap(s2)


def test_run_manifest_refuses_a_shard_rewritten_after_it(tmp_path: Path) -> None:
    """RUN.json pins every shard manifest by hash: a shard checkpoint replaced later (e.g. a retried write of the
    same tag by another run) makes the tag invisible instead of mixing two states."""
    s1, s2 = make_store(3, 3), make_store(3, 5)
    _write_run([s1, s1], tmp_path, "T1")
    _write_run([s1, s1], tmp_path, "T2")
    p = tmp_path / "T2" / "shard-1"
    shutil.rmtree(p)
    write_shard_checkpoint(s2, tmp_path, "shard-1", tag="T2")
    assert latest_run_tag(tmp_path) == "T1"
