"""The coordinator's pure parts: the phase machine, the cluster config, the run manifest, data partitions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ps.checkpoint import CheckpointError, write_shard_checkpoint
from ps.store import RowStore, TableConfig
from shark.coordinator import ClusterConfig, Phase, RunStateMachine, TransitionError
from shark.coordinator.run_manifest import latest_run_tag, read_run_manifest, write_run_manifest
from shark.train.config import TrainConfig, train_config_from_dict
from shark.train.data_plan import DataPlan, DataSpec


def test_phase_machine_follows_the_table_and_refuses_the_rest() -> None:
    sm = RunStateMachine()
    for p in (Phase.STARTING, Phase.INITIALISING, Phase.TRAINING, Phase.CHECKPOINTING, Phase.TRAINING,
              Phase.EVALUATING, Phase.DONE):
        sm.move(p)
    assert sm.finished and [h["phase"] for h in sm.to_list()][:2] == ["created", "starting"]
    with pytest.raises(TransitionError):
        sm.move(Phase.TRAINING)  # nothing leaves DONE
    sm2 = RunStateMachine()
    with pytest.raises(TransitionError, match="created to training"):
        sm2.move(Phase.TRAINING)
    sm2.move(Phase.STARTING)
    sm2.move(Phase.FAILED, "shard 1 did not start")
    assert sm2.finished and sm2.history[-1].note == "shard 1 did not start"
    with pytest.raises(TransitionError):
        sm2.move(Phase.FAILED)


def test_restored_cluster_may_only_train_or_evaluate() -> None:
    sm = RunStateMachine()
    sm.move(Phase.STARTING)
    sm.move(Phase.RESTORING)
    with pytest.raises(TransitionError):
        sm.move(Phase.INITIALISING)  # a restored cluster must not re-create tables over its rows
    sm.move(Phase.EVALUATING)


@pytest.mark.parametrize("bad", [dict(shards=0), dict(workers=0), dict(staleness=-1), dict(checkpoint_every=5),
                                 dict(restore_tag="x"), dict(deadline_s=0)])
def test_cluster_config_rejects_bad_settings(bad: dict) -> None:
    with pytest.raises(ValueError):
        ClusterConfig(**bad)


def test_train_config_survives_json() -> None:
    cfg = TrainConfig(bottom=(32, 16), top=(8,), capacities=(("C3", 1 << 20),), lr_dense=3e-4)
    assert train_config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def _shards(tmp_path, tag: str, n: int) -> None:
    for i in range(n):
        store = RowStore()
        store.create_table(TableConfig(name="t", dim=4, capacity=100))
        store.pull("t", np.arange(i, i + 3))
        write_shard_checkpoint(store, tmp_path, f"shard-{i}", tag=tag)


def test_run_manifest_is_written_last_and_verified(tmp_path) -> None:
    _shards(tmp_path, "a", 2)
    assert latest_run_tag(tmp_path) is None  # shards alone are not a complete checkpoint
    write_run_manifest(tmp_path, "a", 2, {"epoch": 1})
    assert read_run_manifest(tmp_path, "a")["epoch"] == 1
    _shards(tmp_path, "b", 2)
    write_run_manifest(tmp_path, "b", 2, {"epoch": 2})
    assert latest_run_tag(tmp_path) == "b"
    # a shard manifest replaced after the run manifest was written is refused, and b is no longer "latest"
    m = tmp_path / "b" / "shard-1" / "MANIFEST.json"
    m.write_bytes(m.read_bytes().replace(b'"tag"', b' "tag"'))
    with pytest.raises(CheckpointError, match="shard-1"):
        read_run_manifest(tmp_path, "b")
    assert latest_run_tag(tmp_path) == "a"
    with pytest.raises(CheckpointError, match="missing"):
        write_run_manifest(tmp_path, "a", 3, {})  # shard-2 never wrote


def test_worker_partitions_cover_the_data_once() -> None:
    plan = DataPlan(DataSpec(train_rows=10_000, test_rows=3_001), batch_size=512, eval_batch_size=1000)
    whole = np.concatenate([b.lines for b in plan.train_batches()])
    parts = [np.concatenate([b.lines for b in plan.train_batches(w, 3)]) for w in range(3)]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.sort(whole))
    tests = [np.concatenate([b.lines for b in plan.test_batches(w, 2)]) for w in range(2)]
    assert sum(t.size for t in tests) == 3_001 and not set(tests[0]) & set(tests[1])
    with pytest.raises(ValueError):
        plan.train_batches(3, 3)


def test_file_partitions_stripe_batches(shared_data) -> None:
    path = str(shared_data / "criteo" / "criteo_kaggle_sample.txt.gz")
    plan = DataPlan(DataSpec(source=path), batch_size=1000, eval_batch_size=1000)
    whole = np.concatenate([b.lines for b in plan.train_batches()])
    parts = [np.concatenate([b.lines for b in plan.train_batches(w, 2)]) for w in range(2)]
    assert np.array_equal(np.sort(np.concatenate(parts)), whole)
    assert abs(parts[0].size - parts[1].size) <= 1000
