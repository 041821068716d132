"""Accuracy acceptance on the synthetic data (the product's main job): the reference trainer against the teacher,
and the distributed engine (2 shards x 2 workers on Ray) against the reference trainer on the same rows and seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from shark.cli.main import cli


def _train(args: list[str], out: Path) -> tuple[str, dict]:
    res = CliRunner().invoke(cli, ["train", "--no-progress", "--json-out", str(out), *args])
    assert res.exit_code == 0, res.output
    return res.output, json.loads(out.read_text())


@pytest.fixture(scope="module")
def local_1m(tmp_path_factory) -> tuple[str, dict]:
    return _train(["--engine", "local"], tmp_path_factory.mktemp("local") / "summary.json")


def test_main_job_reaches_teacher_auc_within_001(local_1m):
    """`shark train --engine local` on 1M synthetic rows, 200k held out: within 0.01 AUC of the teacher."""
    output, s = local_1m
    assert "teacher (ceiling)" in output  # the human summary prints both AUCs
    assert s["train"]["progressive"]["examples"] == 1_000_000 and s["test"]["examples"] == 200_000
    assert 0.75 <= s["teacher"]["auc"] <= 0.85
    assert 0.0 <= s["teacher"]["auc"] - s["test"]["auc"] <= 0.01
    assert 0.23 <= s["test"]["positive_rate"] <= 0.27


def test_distributed_2x2_within_0005_of_single_process(local_1m, ray_session, tmp_path: Path):
    """`shark train` (Ray, 2 shards, 2 workers, staleness 2) on the same 1M rows: within 0.005 held-out AUC."""
    _, local = local_1m
    _, ray = _train(["--shards", "2", "--workers", "2"], tmp_path / "ray.json")
    assert ray["engine"] == "ray" and ray["train"]["progressive"]["examples"] == 1_000_000
    assert ray["test"]["examples"] == 200_000
    assert abs(ray["test"]["auc"] - local["test"]["auc"]) <= 0.005, (ray["test"]["auc"], local["test"]["auc"])
    assert [w["examples"] for w in ray["throughput"]["workers"]] == [500_000, 500_000]  # each worker its half
