"""The coordinator's durable pieces, without Ray: the journal (incarnations, torn lines), failpoint names, the
segment logs, partial-checkpoint removal, and the phases a restarted coordinator may resume into."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shark.coordinator.config import ClusterConfig
from shark.coordinator.failpoints import Failpoints, parse_failpoint
from shark.coordinator.journal import Journal
from shark.coordinator.phases import Phase, RunStateMachine
from shark.coordinator.run_manifest import RUN_FILE, discard_partial_checkpoints, latest_run_tag, write_run_manifest
from shark.coordinator.segment_logs import SegmentLogs


def test_journal_counts_incarnations_and_survives_a_torn_line(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    assert j.next_incarnation() == 0 and j.entries() == []
    sm = RunStateMachine(on_move=lambda t: j.append({"incarnation": 0, "phase": t.phase.value}))
    sm.move(Phase.STARTING)
    sm.move(Phase.INITIALISING)
    with open(j.path, "ab") as f:  # a crash in the middle of an append
        f.write(b'{"incarnation": 0, "pha')
    assert [e["phase"] for e in j.entries()] == ["starting", "initialising"]
    assert j.next_incarnation() == 1
    j.append({"incarnation": 1, "phase": "created"})  # starts on a new line after the torn one
    assert [e["incarnation"] for e in j.entries()] == [0, 0, 1] and j.next_incarnation() == 2
    assert json.loads(j.path.read_text().splitlines()[-1]) == {"incarnation": 1, "phase": "created"}


def test_failpoint_names_are_checked() -> None:
    assert parse_failpoint("deleting.after_first_shard") == ("deleting.after_first_shard", 1)
    assert parse_failpoint("checkpointing.before_manifest@3") == ("checkpointing.before_manifest", 3)
    # fires at the armed visit only, and never in a restarted incarnation
    fp = Failpoints(("checkpointing.before_manifest@3", "checkpointing.before_manifest@5"), incarnation=0)
    visits = [fp.reached("checkpointing.before_manifest") for _ in range(6)]
    assert visits == [False, False, True, False, True, False]
    assert not fp.reached("deleting.after_first_shard")
    fp("deleting.after_first_shard")  # not armed: returns
    again = Failpoints(("checkpointing.before_manifest",), incarnation=1)
    assert not any(again.reached("checkpointing.before_manifest") for _ in range(3))
    with pytest.raises(ValueError, match="unknown failpoint"):
        fp.reached("typo")
    for bad in ("deleting", "deleting.after_first_shard@0", "deleting.after_first_shard@x"):
        with pytest.raises(ValueError, match="failpoint"):
            parse_failpoint(bad)
    with pytest.raises(ValueError, match="unknown failpoint"):
        ClusterConfig(checkpoint_dir="/tmp/x", failpoints=("typo",))
    with pytest.raises(ValueError, match="need checkpoint_dir"):
        ClusterConfig(failpoints=("deleting.after_first_shard",))
    with pytest.raises(ValueError, match="coordinator_restarts"):
        ClusterConfig(coordinator_restarts=-1)


def test_segment_logs_round_trip_without_pickle(tmp_path: Path) -> None:
    logs = SegmentLogs(tmp_path / "seg")
    y, p = np.array([0, 1, 1], np.float32), np.array([0.1, 0.7, 0.4], np.float32)
    logs.save(0, 1, 2, y, p)
    y2, p2 = logs.load(0, 1, 2)
    assert np.array_equal(y, y2) and np.array_equal(p, p2)
    assert not list((tmp_path / "seg").glob(".*tmp*"))


def test_partial_checkpoints_of_the_run_are_removed_and_never_latest(tmp_path: Path) -> None:
    def complete(tag: str, run_id: str) -> None:
        (tmp_path / tag / "shard-0").mkdir(parents=True)
        (tmp_path / tag / "shard-0" / "MANIFEST.json").write_text("{}")
        write_run_manifest(tmp_path, tag, 1, {"run_id": run_id})

    complete("ckpt-00000-abc", "abc")
    complete("ckpt-00000-other", "other")
    (tmp_path / "ckpt-00001-abc" / "shard-0").mkdir(parents=True)  # died before RUN.json
    (tmp_path / "ckpt-00001-other" / "shard-0").mkdir(parents=True)  # another run's: not ours to remove
    assert latest_run_tag(tmp_path, run_id="abc") == "ckpt-00000-abc"
    assert discard_partial_checkpoints(tmp_path, "abc") == ["ckpt-00001-abc"]
    assert not (tmp_path / "ckpt-00001-abc").exists() and (tmp_path / "ckpt-00001-other").exists()
    assert (tmp_path / "ckpt-00000-abc" / RUN_FILE).is_file()


def test_a_restored_coordinator_may_resume_into_a_later_phase() -> None:
    for resumed in (Phase.TRAINING, Phase.EVALUATING, Phase.DELETING, Phase.FINE_TUNING, Phase.DONE):
        sm = RunStateMachine()
        for p in (Phase.STARTING, Phase.RESTORING, resumed):
            sm.move(p)
    sm = RunStateMachine()
    sm.move(Phase.STARTING)
    sm.move(Phase.RESTORING)
    with pytest.raises(Exception, match="cannot go from restoring to scoring"):
        sm.move(Phase.SCORING)
