"""The coordinator killed (os._exit at a named failpoint, as a SIGKILL would) in the middle of a table deletion, of a
checkpoint, and of training. Ray restarts it; the new incarnation reads the run's journal, removes the checkpoint its
predecessor left without RUN.json, restores every shard from the run's newest complete checkpoint (whose RUN.json
holds where the run was) and goes on from there. Afterwards every shard agrees on the set of tables, no partial
checkpoint is visible, and the latest visible checkpoint loads and evaluates to the run's own held-out AUC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shark.coordinator.config import ClusterConfig
from shark.coordinator.pruning import CompressConfig
from shark.coordinator.run_manifest import RUN_FILE, latest_run_tag
from shark.train.config import TrainConfig
from shark.train.data_plan import DataSpec
from shark.train.ray_run import run_ray

TRAIN, TEST, BATCH = 24_000, 4_000, 512
DENSE = "__dense__"


def _run(ckpt: Path, failpoints: tuple[str, ...], compress: CompressConfig | None = None,
         checkpoint_every: int = 0) -> dict:
    cluster = ClusterConfig(shards=2, workers=2, checkpoint_dir=str(ckpt), checkpoint_every=checkpoint_every,
                            failpoints=failpoints, ready_timeout_s=90)
    return run_ray(TrainConfig(batch_size=BATCH), DataSpec(train_rows=TRAIN, test_rows=TEST), cluster,
                   progress=False, compress=compress)


def _consistent(summary: dict, ckpt: Path) -> None:
    """Every shard holds the same tables: the model's fields' tables plus the dense one; no checkpoint directory
    lacks its RUN.json; the latest visible checkpoint restores to the run's held-out AUC exactly."""
    tables = summary["cluster"]["shard_tables"]
    expected = sorted({f for f in summary["model"]["fields"] if f != "dense"} | {DENSE})
    assert all(t == expected for t in tables), tables
    partial = [d.name for d in ckpt.glob("ckpt-*") if not (d / RUN_FILE).is_file()]
    assert partial == [], partial
    latest = latest_run_tag(ckpt)
    assert latest == summary["checkpoints"][-1]["tag"]
    again = run_ray(TrainConfig(batch_size=BATCH), DataSpec(train_rows=TRAIN, test_rows=TEST),
                    ClusterConfig(shards=2, workers=2, restore_from=str(ckpt)), progress=False, train=False)
    assert again["test"]["auc"] == summary["test"]["auc"]
    assert again["model"]["fields"] == summary["model"]["fields"]


def _restarted(summary: dict, died_in: str) -> dict:
    restarts = summary["cluster"]["coordinator_restarts"]
    assert len(restarts) == 1 and restarts[0]["died_in"] == died_in, restarts
    return restarts[0]


def test_coordinator_killed_mid_deletion_completes_it_everywhere(ray_session, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    compress = CompressConfig(memory_target=0.85, fields_per_round=2, finetune_rows=3000, score_rows=2000,
                              auc_floor=0.05, control=False)
    s = _run(ckpt, ("deleting.after_first_shard",), compress)
    r = _restarted(s, "deleting")
    # resumed from the checkpoint taken just before the round: the half-done deletion was rolled back there and
    # then done again on every shard and worker
    assert r["stage"] == "compress" and r["resumed_from"]
    c = s["compression"]
    assert c["deleted"] and set(c["deleted"]).isdisjoint(s["model"]["fields"]) and c["rounds"][0]["round"] == 1
    assert [p["phase"] for p in s["phases"]][:3] == ["created", "starting", "restoring"]
    _consistent(s, ckpt)
    (path,) = (ckpt / "coordinator").glob("*/journal.jsonl")
    journal = [json.loads(x) for x in path.read_text().splitlines()]
    assert {e["incarnation"] for e in journal} == {0, 1}


@pytest.mark.parametrize("failpoint,died_in", [
    ("checkpointing.before_manifest@2", "checkpointing"),
    pytest.param("checkpointing.after_first_shard@2", "checkpointing", marks=pytest.mark.slow),
    pytest.param("training.after_first_checkpoint", "checkpointing", marks=pytest.mark.slow)])
def test_coordinator_killed_mid_checkpoint_or_training_resumes_the_epoch(ray_session, tmp_path: Path,
                                                                         failpoint: str, died_in: str) -> None:
    ckpt = tmp_path / "ckpt"
    s = _run(ckpt, (failpoint,), checkpoint_every=8)  # 24 batches per worker: checkpoints after 8 and 16
    r = _restarted(s, died_in)
    assert r["stage"] == "train" and r["resumed_from"]
    if "@2" in failpoint:  # the second checkpoint died half-written: it was removed, the first one resumed
        assert r["partial_checkpoints_removed"] and r["resumed_from"] not in r["partial_checkpoints_removed"]
    # every training example once in the progressive log (the committed segments' logs were read back)
    assert s["train"]["progressive"]["examples"] == TRAIN
    # throughput counts every incarnation's committed examples, as train_seconds counts every incarnation's time
    assert s["throughput"]["train_examples"] == TRAIN
    assert 0.6 < s["test"]["auc"] < 0.9
    _consistent(s, ckpt)


@pytest.mark.slow
@pytest.mark.parametrize("failpoint,died_in,stage", [("fine_tuning.control", "fine_tuning", "compress"),
                                                     ("finishing.before_summary", "checkpointing", "final"),
                                                     ("fine_tuning.after_deletion", "deleting", "compress")])
def test_coordinator_killed_later_in_compression_resumes_there(ray_session, tmp_path: Path, failpoint: str,
                                                                died_in: str, stage: str) -> None:
    ckpt = tmp_path / "ckpt"
    compress = CompressConfig(memory_target=0.85, fields_per_round=2, finetune_rows=3000, score_rows=2000,
                              auc_floor=0.05, control=True)
    s = _run(ckpt, (failpoint,), compress)
    r = _restarted(s, died_in)
    assert r["stage"] == stage and r["resumed_from"]
    c = s["compression"]
    assert c["deleted"] and c["control"] is not None and s["model"]["fields"] == c["fields_kept"]
    assert s["test"]["auc"] == c["final_test"]["auc"]
    _consistent(s, ckpt)
