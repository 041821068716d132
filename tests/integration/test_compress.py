"""`shark compress` end to end on a local Ray: train, then Algorithm 1 (score across workers, delete tables on every
shard and worker, fine-tune on fresh rows, evaluate; a round below the AUC floor is rolled back)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from shark.cli.main import cli


def test_compress_deletes_tables_everywhere_and_reports(ray_session, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["compress", "--no-progress", "--train-rows", "60000", "--test-rows", "10000",
                                   "--fields-per-round", "3", "--finetune-rows", "6000", "--score-rows", "5000",
                                   "--memory-target", "0.8", "--auc-floor", "0.01", "--out", str(out)])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "report.json").read_text())
    c = s["compression"]
    assert c["rounds"] and all(len(r["deleted"]) == 3 for r in c["rounds"])
    kept = [r for r in c["rounds"] if r["accepted"]]
    deleted = [f for r in kept for f in r["deleted"]]
    assert c["deleted"] == deleted and set(deleted).isdisjoint(c["fields_kept"])
    # the deleted tables are gone from every shard (their memory freed), the rest are all there
    tables = s["model"]["embedding_memory"]["tables"]
    assert set(tables).isdisjoint(deleted) and len(tables) == 26 - len([f for f in deleted if f != "dense"])
    assert s["model"]["fields"] == c["fields_kept"]
    # the summary's held-out AUC is the final model's, and no accepted round broke the floor
    assert s["test"]["auc"] == c["final_test"]["auc"]
    assert all(r["auc"] >= c["auc_floor"] for r in kept)
    assert c["stop_reason"]
    # throughput is training's alone: the rounds' and the control's fine-tuning rows are not in it
    assert s["throughput"]["train_examples"] == 60000
    phases = [p["phase"] for p in s["phases"]]
    assert {"scoring", "deleting", "fine_tuning"} <= set(phases) and phases[-1] == "done"
    assert np.isfinite(c["memory_fraction"])
    rss = s["model"]["embedding_memory"]["shard_rss_bytes"]  # each shard process's resident memory
    assert len(rss) == 2 and all(50 << 20 < b < 8 << 30 for b in rss), rss
    # the control: the unpruned model fine-tuned on the accepted rounds' fresh rows, compared
    k = c["control"]
    assert k["finetune_rows"] == 6000 * len(kept) and 0.5 < k["auc"] < 1.0
    assert c["auc_relative_change_vs_control"] == c["final_test"]["auc"] / k["auc"] - 1.0
    assert (out / "compression.png").stat().st_size > 10_000
    # after the control the pruned model was put back exactly: its final checkpoint evaluates to the same AUC
    ev = CliRunner().invoke(cli, ["evaluate", "--no-progress", "--checkpoint", str(out / "checkpoints"),
                                  "--test-rows", "10000", "--json"])
    assert ev.exit_code == 0, ev.output
    again = json.loads(ev.output[ev.output.index("{"):])
    assert again["test"]["auc"] == c["final_test"]["auc"] and again["model"]["fields"] == c["fields_kept"]


def test_compress_on_a_file_without_fresh_rows_fails_clearly(ray_session, shared_data: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["compress", "--no-progress", "--data",
                                   str(shared_data / "criteo" / "criteo_kaggle_sample.txt.gz"),
                                   "--out", str(tmp_path / "o"), "--finetune-rows", "1000"])
    assert res.exit_code == 2 and "fresh rows" in res.output and "Traceback" not in res.output, res.output
