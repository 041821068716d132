"""`shark train --engine ray` end to end on a local Ray: shards and workers as actors, rows over gRPC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from shark.cli.main import cli


def _run(args: list[str], out: Path) -> dict:
    res = CliRunner().invoke(cli, [*args, "--no-progress", "--json-out", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def test_one_synchronous_worker_reproduces_the_local_engine(ray_session, shared_data: Path, tmp_path: Path) -> None:
    """Same data, seed and batch order; Adagrad/Adam on the shards instead of in torch: same AUC to 4 digits."""
    data = str(shared_data / "criteo" / "criteo_kaggle_sample.txt.gz")
    local = _run(["train", "--engine", "local", "--data", data, "--threads", "1"], tmp_path / "l.json")
    ray = _run(["train", "--data", data, "--workers", "1", "--shards", "2", "--staleness", "0"], tmp_path / "r.json")
    assert ray["engine"] == "ray" and ray["test"]["examples"] == local["test"]["examples"] == 1913
    assert ray["test"]["auc"] == pytest.approx(local["test"]["auc"], abs=2e-4)
    assert ray["train"]["progressive"]["auc"] == pytest.approx(local["train"]["progressive"]["auc"], abs=2e-4)
    assert ray["model"]["embedding_memory"]["rows"] > 0 and len(ray["cluster"]["addresses"]) == 2
    assert all(a.startswith("127.") for a in ray["cluster"]["addresses"])  # loopback only


def test_checkpoint_round_trip_gives_the_same_auc_to_the_digit(ray_session, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    common = ["--train-rows", "30000", "--test-rows", "8000"]
    trained = _run(["train", *common, "--checkpoint-dir", str(ckpt), "--checkpoint-every", "20",
                    "--score-fields", "4000"], tmp_path / "t.json")
    # F-Permutation across the workers after evaluation: every field ranked, the dense vector included
    scores = trained["field_scores"]
    assert scores["rows"] == 4000 and len(scores["abs"]["ranking"]) == 27 and "dense" in scores["abs"]["ranking"]
    assert -1 <= scores["abs"]["spearman_with_teacher"] <= 1
    assert [p["phase"] for p in trained["phases"]][-3:] == ["evaluating", "scoring", "done"]
    tags = [c["tag"] for c in trained["checkpoints"]]
    assert len(tags) >= 2 and trained["checkpoints"][-1]["final"]  # periodic ones, then the final one
    assert (ckpt / tags[-1] / "RUN.json").is_file()
    restored = _run(["evaluate", "--checkpoint", str(ckpt), *common], tmp_path / "e.json")
    assert restored["restored_from"]["tag"] == tags[-1]
    assert restored["test"]["auc"] == trained["test"]["auc"]  # exactly: same rows, same dense weights
    assert restored["test"]["logloss"] == trained["test"]["logloss"]
    # an earlier tag restores too (and, trained on fewer rows, scores differently)
    earlier = _run(["evaluate", "--checkpoint", str(ckpt), "--tag", tags[0], *common], tmp_path / "e0.json")
    assert earlier["test"]["auc"] != trained["test"]["auc"]


def test_errors_are_one_clear_line(ray_session, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["train", "--no-progress", "--data", str(tmp_path / "nope.txt")])
    assert res.exit_code == 2 and "no such file" in res.output and "Traceback" not in res.output
    bad = tmp_path / "bad.txt"
    bad.write_text("1\t" + "\t".join(["1"] * 13 + ["ab12"] * 26) + "\n" + "0\t1\t2\n")
    res = CliRunner().invoke(cli, ["train", "--no-progress", "--data", str(bad), "--on-bad-line", "stop"])
    assert res.exit_code == 2 and "bad.txt:2" in res.output and "Traceback" not in res.output, res.output
    res = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(tmp_path), "--no-progress"])
    assert res.exit_code == 2 and "no complete checkpoint" in res.output


def test_unreachable_address_fails_fast_with_the_address() -> None:
    import socket

    from shark.cluster.ray_runtime import RayUnreachable, _check_reachable

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RayUnreachable, match=f"127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}", timeout_s=2)
