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
    # the paper's Figure 2 on the unpruned model: F-P's order (round 1's scores), Permutation's, random orders
    kc = c["kept_curves"]
    assert kc["evaluated_on"] == "held-out rows after the scoring rows" and kc["rows"] == 5000  # 10k minus 5k scored
    assert kc["permutation_rows"] == 5000 and set(kc["permutation_scores"]) == set(c["first_ranking"])
    assert set(kc["curves"]) == {"fperm-abs", "permutation-T1"} and len(kc["random_curves"]) == 3
    fp = kc["curves"]["fperm-abs"]
    assert fp["fields_kept"] == list(range(27, 1, -1)) and len(fp["auc"]) == 26
    assert fp["dropped"] == sorted(c["first_ranking"], key=c["first_ranking"].get)[:25]
    assert fp["auc"][0] == kc["curves"]["permutation-T1"]["auc"][0]  # both start from the same whole model
    assert 0.5 < fp["area"] < 1.0 and set(kc["areas"]) >= {"fperm-abs", "permutation-T1", "random_mean"}
    assert "AUC vs fields kept on the unpruned model" in res.output
    assert (out / "fields_kept.png").stat().st_size > 10_000
    # F-Q's tiers against the rows' training accesses (the final model's tables): hot rows precise, cold rows int8
    tf = s["model"]["tiers_by_frequency"]
    assert tf["training_rows_read"] == 60000 and tf["tables"] == len([f for f in c["fields_kept"] if f != "dense"])
    bins = tf["bins"]
    assert bins[0]["accesses"] == [1, 1] and all(b["measured"] == min(b["rows"], tf["sample_cap"]) for b in bins)
    assert all(abs(b["fp32"] + b["fp16"] + b["int8"] + b["absent"] - 1.0) < 1e-9 for b in bins)
    top, bottom = bins[-1]["fp32"] + bins[-1]["fp16"], bins[0]["fp32"] + bins[0]["fp16"]
    assert top == 1.0 and bins[0]["int8"] > 0.9 and top > bottom
    assert (out / "tiers.png").stat().st_size > 10_000
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


def test_compress_prunes_a_trained_checkpoint_without_training_again(ray_session, tmp_path: Path) -> None:
    run = CliRunner()
    trained = tmp_path / "trained"
    tr = run.invoke(cli, ["train", "--no-progress", "--train-rows", "20000", "--test-rows", "4000", "--quant", "fq",
                          "--checkpoint-dir", str(trained), "--json"])
    assert tr.exit_code == 0, tr.output
    trained_auc = json.loads(tr.output[tr.output.index("{"):])["test"]["auc"]
    common = ["--no-progress", "--fields-per-round", "3", "--finetune-rows", "2000", "--score-rows", "2000",
              "--curve-rows", "0", "--auc-floor", "0.05"]
    # options that contradict the checkpoint are refused before anything runs
    for extra, words in ((["--embedding-dim", "8"], "--embedding-dim (the checkpoint's model has 16)"),
                         (["--train-rows", "30000"], "train_rows=20000"), (["--tag", "nope"], "nope")):
        bad = run.invoke(cli, ["compress", "--checkpoint", str(trained), *common, *extra, "--out", str(tmp_path / "x")])
        assert bad.exit_code == 2 and words in bad.output and "Traceback" not in bad.output, bad.output
    assert not (tmp_path / "x").exists()

    out = tmp_path / "pruned"
    res = run.invoke(cli, ["compress", "--checkpoint", str(trained), *common, "--memory-target", "0.9",
                           "--out", str(out)])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "report.json").read_text())
    c = s["compression"]
    assert "training" not in [p["phase"] for p in s["phases"]] and s["throughput"]["train_examples"] == 0
    assert s["data"]["train_rows"] == 20000 and s["data"]["test_rows"] == 4000  # as the checkpoint recorded
    assert c["base"]["auc"] == trained_auc  # the restored model, on the same held-out rows
    assert c["deleted"] and c["deleted_before"] == [] and c["kept_curves"] is None
    tables = set(s["model"]["embedding_memory"]["tables"])
    assert tables.isdisjoint(c["deleted"]) and s["model"]["fields"] == c["fields_kept"]

    # a pruned checkpoint pruned further: its deleted fields stay deleted through the control's rollbacks
    again = tmp_path / "again"
    res = run.invoke(cli, ["compress", "--checkpoint", str(out / "checkpoints"), *common, "--memory-target", "0.3",
                           "--max-rounds", "1", "--out", str(again)])
    assert res.exit_code == 0, res.output
    s2 = json.loads((again / "report.json").read_text())
    c2 = s2["compression"]
    assert sorted(c2["deleted_before"]) == sorted(c["deleted"]) and len(c2["rounds"]) == 1
    assert set(c2["fields_kept"]).isdisjoint(c["deleted"] + c2["deleted"])
    assert c2["base"]["auc"] == c["final_test"]["auc"]
    assert c2["control"] is not None or not c2["deleted"]
    assert all(set(t).isdisjoint(c["deleted"] + c2["deleted"]) for t in s2["cluster"]["shard_tables"])
