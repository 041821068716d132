"""ps.checkpoint.reshard: a checkpoint of 4 shards read back as 3 or 5 shards holds every row exactly once, on the
shard ShardRouter(new count) routes it to, with its stored payload and per-row state bit-for-bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ps.checkpoint import CheckpointError, read_shard_checkpoint, write_shard_checkpoint
from ps.checkpoint.reshard import read_resharded, shard_name
from ps.store import RowStore, TableConfig
from shark.quant import TIER_NAMES
from worker.client.routing import ShardRouter

DIM = 6
OLD = 4
TABLES = [
    TableConfig("emb_fp32", dim=DIM, capacity=20_000, optimizer="adagrad", seed=1),
    TableConfig("emb_fq", dim=DIM, capacity=20_000, optimizer="adagrad", seed=2, quant="fq", fq_t8=0.02,
                fq_t16=0.08, fq_beta=0.05, fq_retier_every=3),
    TableConfig("emb_int8", dim=DIM, capacity=20_000, optimizer="sgd", seed=3, quant="int8"),
    TableConfig("__dense__", dim=DIM, capacity=64, optimizer="adam", lr=0.01, seed=4),
    TableConfig("emb_mpe8", dim=DIM, capacity=20_000, optimizer="adagrad", seed=5, quant="mpe",
                mpe_cache_fraction=0.1, fq_retier_every=3),
    TableConfig("emb_mpe16", dim=DIM, capacity=20_000, optimizer="adagrad", seed=6, quant="mpe", mpe_low="fp16",
                mpe_cache_fraction=0.2, fq_retier_every=2),
]


def _fill(stores: list[RowStore], rng: np.random.Generator) -> None:
    """Route random ids to the shards as a PS client does and push on each shard its part (each shard's tables
    see a different number of pushes, so their steps and F-Q epochs differ)."""
    router = ShardRouter(len(stores))
    for seq in range(14):
        for cfg in TABLES:
            hi = 40 if cfg.optimizer == "adam" else 3000
            ids = np.unique(rng.integers(0, hi, size=rng.integers(1, 300)))
            for shard, (_, part) in enumerate(router.split(cfg.name, ids)):
                if part.shape[0] == 0 or rng.random() < 0.2:
                    continue
                n = part.shape[0]
                grads = (rng.standard_normal((n, DIM)) * 0.1).astype(np.float32)
                stores[shard].push(cfg.name, part, grads, rng.integers(0, 3, n), rng.integers(0, 5, n),
                                   worker_id=7, seq=seq)
    for shard, s in enumerate(stores):  # fp32 rows moved to fp16/int8 by hand: a tiered, non-F-Q table
        ids = _ids(s, "emb_fp32")
        s.set_tiers("emb_fp32", ids[::3], np.full(ids[::3].shape[0], 1))
        s.set_tiers("emb_fp32", ids[1::5], np.full(ids[1::5].shape[0], 2))


def _ids(s: RowStore, table: str) -> np.ndarray:
    return np.sort(s.snapshot(table)["row_id"].astype(np.int64))


def _rows(s: RowStore, table: str) -> dict[str, np.ndarray]:
    """Every row's state, sorted by id: tier, payload bytes in its tier (fp32/fp16/int8 + scale), optimizer state."""
    a = s.snapshot(table)
    order = np.argsort(a["row_id"], kind="stable")
    tier, slot = a["tier"][order], a["slot"][order]
    out = {"row_id": a["row_id"][order], "tier": tier, "accum": a["accum"][order]}
    for t, name in enumerate(TIER_NAMES):
        data = a[f"{name}_data"]
        out[name] = np.where((tier == t)[:, None], data[np.where(tier == t, slot, 0)] if data.shape[0] else 0, 0)
    out["int8_scale"] = np.where(tier == 2, a["int8_scale"][np.where(tier == 2, slot, 0)]
                                 if a["int8_scale"].shape[0] else 0, 0)
    for k in ("adam_m", "adam_v", "adam_t", "mpe_access"):
        if k in a:
            out[k] = a[k][order]
    if "mpe_cached" in a:  # MPE: every row's low copy sits at slot = row (its cached rows serve from fp32)
        low = "int8" if a["int8_data"].shape[0] else "fp16"
        out["mpe_low_copy"] = a[f"{low}_data"][order]
        out["mpe_low_scale"] = a["int8_scale"][order] if low == "int8" else np.zeros(order.shape[0], np.uint16)
    return out


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(out["row_id"], kind="stable")
    return {k: v[order] for k, v in out.items()}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RowStore]]:
    d = tmp_path_factory.mktemp("ckpt")
    stores = [RowStore(seq_window=32) for _ in range(OLD)]
    for s in stores:
        for cfg in TABLES:
            s.create_table(cfg)
    _fill(stores, np.random.default_rng(5))
    for i, s in enumerate(stores):
        write_shard_checkpoint(s, d, shard_name(i), tag="t1")
    return d, stores


def test_fixture_covers_every_tier_and_different_clocks(saved: tuple[Path, list[RowStore]]) -> None:
    _, stores = saved
    tiers = np.concatenate([s.snapshot("emb_fq")["tier"] for s in stores])
    assert set(np.unique(tiers).tolist()) == {0, 1, 2}  # F-Q rows in all three tiers
    assert set(np.unique(np.concatenate([s.snapshot("emb_fp32")["tier"] for s in stores])).tolist()) == {0, 1, 2}
    steps = {int(s.snapshot("emb_fq")["step"]) for s in stores}
    gaps = {int(s.snapshot("emb_fq")["step"] - s.snapshot("emb_fq")["priority_epoch"]) for s in stores}
    assert len(steps) > 1 and gaps != {0}  # the merge has to reconcile clocks and re-reference priorities
    for t in ("emb_mpe8", "emb_mpe16"):  # MPE: every shard has cached and uncached rows
        assert all(0 < s.snapshot(t)["mpe_cached"].shape[0] < s.snapshot(t)["row_id"].shape[0] for s in stores)


@pytest.mark.parametrize("new", [3, 5, 1, 4])
def test_every_row_once_on_its_new_shard_bit_for_bit(saved: tuple[Path, list[RowStore]], new: int) -> None:
    d, old = saved
    stores = [read_resharded(str(d), "t1", OLD, i, new) for i in range(new)]
    router = ShardRouter(new)
    for cfg in TABLES:
        t = cfg.name
        assert all(s.config(t) == cfg for s in stores)  # every new shard has every table
        for i, s in enumerate(stores):  # each new shard holds only the rows routed to it
            assert (router.route(t, _ids(s, t)) == i).all()
        before = _concat([_rows(s, t) for s in old])
        after = _concat([_rows(s, t) for s in stores])
        assert np.unique(after["row_id"]).shape[0] == after["row_id"].shape[0]  # each row exactly once
        assert before.keys() == after.keys()
        for k in before:
            assert before[k].dtype == after[k].dtype and before[k].tobytes() == after[k].tobytes(), (t, k)
        # decoded values as clients read them: identical
        for i, s in enumerate(stores):
            ids = _ids(s, t)
            owners = ShardRouter(OLD).route(t, ids)
            want = np.empty((ids.shape[0], DIM), np.float32)
            for j in range(OLD):
                want[owners == j] = old[j].pull(t, ids[owners == j], create=False)
            assert np.array_equal(s.pull(t, ids, create=False), want)


def test_priorities_keep_their_values(saved: tuple[Path, list[RowStore]]) -> None:
    d, old = saved
    for new in (3, 5):
        for i in range(new):
            s = read_resharded(str(d), "t1", OLD, i, new)
            ids = _ids(s, "emb_fq")
            owners = ShardRouter(OLD).route("emb_fq", ids)
            want = np.empty(ids.shape[0], np.float32)
            for j in range(OLD):
                want[owners == j] = old[j].priorities("emb_fq", ids[owners == j])
            # re-referenced to one epoch: equal up to the float16 the priorities are stored in
            np.testing.assert_allclose(s.priorities("emb_fq", ids), want, rtol=2 ** -10, atol=0)


def test_priorities_bit_exact_when_epochs_are_current(tmp_path: Path) -> None:
    stores = [RowStore() for _ in range(OLD)]
    for s in stores:
        s.create_table(TABLES[1])
    _fill_one(stores, TABLES[1])
    for s in stores:
        s.retier("emb_fq")  # epoch = step on every shard: nothing to re-reference
    for i, s in enumerate(stores):
        write_shard_checkpoint(s, tmp_path, shard_name(i), tag="t")
    before = np.concatenate([s.snapshot("emb_fq")["priority"][np.argsort(s.snapshot("emb_fq")["row_id"])]
                             for s in stores])
    ids_before = np.concatenate([np.sort(s.snapshot("emb_fq")["row_id"]) for s in stores])
    new = [read_resharded(str(tmp_path), "t", OLD, i, 3).snapshot("emb_fq") for i in range(3)]
    ids_after = np.concatenate([a["row_id"] for a in new])
    after = np.concatenate([a["priority"] for a in new])
    assert np.array_equal(after[np.argsort(ids_after)].view(np.uint16),
                          before[np.argsort(ids_before)].view(np.uint16))


def _fill_one(stores: list[RowStore], cfg: TableConfig) -> None:
    rng = np.random.default_rng(9)
    router = ShardRouter(len(stores))
    for seq in range(8):
        ids = np.unique(rng.integers(0, 2000, 200))
        for shard, (_, part) in enumerate(router.split(cfg.name, ids)):
            n = part.shape[0]
            stores[shard].push(cfg.name, part, np.full((n, DIM), 0.01, np.float32), np.ones(n, np.int64),
                               rng.integers(0, 4, n), worker_id=1, seq=seq)


def test_resharded_store_has_no_seq_windows_and_keeps_working(saved: tuple[Path, list[RowStore]]) -> None:
    d, old = saved
    s = read_resharded(str(d), "t1", OLD, 1, 3)
    assert s.seq_window == old[0].seq_window
    snap = s.snapshot("emb_fq")
    assert snap["seq_workers"].shape == (0,) and snap["seq_above"].shape == (0, 2)
    assert int(snap["step"]) == max(int(o.snapshot("emb_fq")["step"]) for o in old)
    assert int(snap["priority_epoch"]) == int(snap["step"])
    # worker 7 pushed seqs 0..13 before the checkpoint; on the new layout seq 0 is a new push, and applies
    ids = _ids(s, "emb_fq")[:10]
    before = s.pull("emb_fq", ids)
    assert s.push("emb_fq", ids, np.ones((10, DIM), np.float32), np.ones(10, np.int64), np.zeros(10, np.int64),
                  worker_id=7, seq=0).applied
    assert not np.array_equal(s.pull("emb_fq", ids), before)
    assert np.array_equal(s.pull("emb_fp32", _ids(s, "emb_fp32")[:5], create=False),
                          s.pull("emb_fp32", _ids(s, "emb_fp32")[:5]))  # a restored row is not re-created


def test_bad_arguments_and_incomplete_checkpoints(saved: tuple[Path, list[RowStore]], tmp_path: Path) -> None:
    d, old = saved
    for kw in ({"new_index": 3, "new_shards": 3}, {"new_index": -1, "new_shards": 3},
               {"new_index": 0, "new_shards": 0}, {"new_index": 0, "new_shards": True}):
        with pytest.raises(ValueError, match="new_"):
            read_resharded(str(d), "t1", OLD, **kw)
    with pytest.raises(ValueError, match="old_shards"):
        read_resharded(str(d), "t1", 0, 0, 3)
    with pytest.raises(CheckpointError, match="shard-4.*no manifest"):  # claims 5 old shards: shard-4 is missing
        read_resharded(str(d), "t1", 5, 0, 3)
    with pytest.raises(CheckpointError, match="no manifest"):
        read_resharded(str(d), "nope", OLD, 0, 3)
    # an old shard whose table has another configuration is refused, naming the shard
    for i, s in enumerate(old[:2]):
        if i == 1:
            s = RowStore()
            s.create_table(TableConfig("emb_fp32", dim=DIM, capacity=20_000, optimizer="sgd"))
        write_shard_checkpoint(s, tmp_path, shard_name(i), tag="mixed")
    with pytest.raises(CheckpointError, match="shard-1.*emb_fp32"):
        read_resharded(str(tmp_path), "mixed", 2, 0, 3)


def test_state_it_cannot_split_is_refused(saved: tuple[Path, list[RowStore]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot key reshard does not know (a table layout added later) is an error, never silently dropped."""
    d, _ = saved
    real = RowStore.snapshot
    monkeypatch.setattr(RowStore, "snapshot", lambda self, t: {**real(self, t), "new_state": np.zeros(3)})
    with pytest.raises(CheckpointError, match=r"shard-0.*has state resharding does not know.*new_state"):
        read_resharded(str(d), "t1", OLD, 0, 3)


def test_shard_actor_restores_resharded_and_recovers_it_after_a_restart(saved: tuple[Path, list[RowStore]],
                                                                          tmp_path: Path) -> None:
    """ShardActor(restore_source_shards=4) on a 3-shard cluster holds read_resharded's rows; with a push log, a
    restart (same log) recovers them from the log's own copy, not from the checkpoint's old-layout shard-1."""
    from ps.actor import ShardActor

    d, _ = saved
    want = snap_all(read_resharded(str(d), "t1", OLD, 1, 3))
    with pytest.raises(ValueError, match="needs a restore_tag"):
        ShardActor(1, 3, host="127.0.0.1", checkpoint_dir=str(d), restore_source_shards=4)
    actors = []
    try:
        for _ in range(2):  # first start, then a restart on the same push log
            a = ShardActor(1, 3, host="127.0.0.1", checkpoint_dir=str(d), restore_tag="t1", restore_source_shards=4,
                           wal_dir=str(tmp_path / "wal"), wal_fsync=False)
            actors.append(a)
            assert a.restored_tag == "t1" and snap_all(a.servicer.store) == want
            a.stop(0)
        assert (tmp_path / "wal" / "shard-1" / "resharded" / "t1" / "shard-1" / "MANIFEST.json").is_file()
        # the same count as the checkpoint's: an ordinary restore of shard-1
        same = ShardActor(1, 4, host="127.0.0.1", checkpoint_dir=str(d), restore_tag="t1", restore_source_shards=4)
        actors.append(same)
        assert same.restore_source_shards is None
        assert snap_all(same.servicer.store) == snap_all(read_shard_checkpoint(d, shard_name(1), tag="t1"))
    finally:
        for a in actors:
            a.stop(0)
            if a.wal is not None:
                a.wal.close()


def snap_all(s: RowStore) -> dict[str, dict[str, bytes]]:
    return {t: {k: v.tobytes() for k, v in s.snapshot(t).items()} for t in s.table_names()}
