"""Accuracy acceptance of the reference trainer on the synthetic data (the product's main job)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from shark.cli.main import cli


def test_main_job_reaches_teacher_auc_within_001(tmp_path: Path):
    """`shark train --engine local` on 1M synthetic rows, 200k held out: within 0.01 AUC of the teacher."""
    out = tmp_path / "summary.json"
    res = CliRunner().invoke(cli, ["train", "--engine", "local", "--no-progress", "--json-out", str(out)])
    assert res.exit_code == 0, res.output
    assert "teacher (ceiling)" in res.output  # the human summary prints both AUCs
    s = json.loads(out.read_text())
    assert s["train"]["progressive"]["examples"] == 1_000_000 and s["test"]["examples"] == 200_000
    assert 0.75 <= s["teacher"]["auc"] <= 0.85
    assert 0.0 <= s["teacher"]["auc"] - s["test"]["auc"] <= 0.01
    assert 0.23 <= s["test"]["positive_rate"] <= 0.27
