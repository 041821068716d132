"""`shark train --stream --drift-at` with F-Quantization: the progressive AUC dips right after the drift and wins
most of it back, the new hot rows climb into the high-precision tiers while the old ones fall out, and the report
directory holds the summary and the plot.

The drift row is a multiple of workers x group rows (2 x 32768), so both workers meet it at the same point of the
merged progressive curve. --t8/--t16 sit above the default so the old hot rows' priorities (eq. 7, decaying by
1 - beta per push) fall through them within the ~260 pushes after the drift that a test can afford."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from shark.cli.main import cli

DRIFT_AT = 65_536


def test_drifting_stream_dips_recovers_and_retiers(ray_session, tmp_path: Path) -> None:
    report = tmp_path / "report"
    res = CliRunner().invoke(cli, [
        "train", "--stream", "--no-progress", "--quant", "fq", "--t8", "1", "--t16", "4", "--retier-every", "25",
        "--drift-at", str(DRIFT_AT), "--max-examples", str(5 * DRIFT_AT // 2), "--window", "8192",
        "--segment-batches", "16", "--test-rows", "4000", "--eval-every", "0", "--report-dir", str(report)])
    assert res.exit_code == 0, res.output
    assert f"report written to {report}" in res.output and "drift at row 65,536" in res.output
    summary = json.loads((report / "summary.json").read_text())
    assert (report / "stream.png").read_bytes()[:4] == b"\x89PNG"
    d = summary["stream"]["drift"]
    assert d["drift_examples"] == [DRIFT_AT, DRIFT_AT] and len(d["windows_before"]) == 8
    # AUC: the drift costs a clear dip (0.15 measured), and most of it comes back (all of it, measured)
    assert d["pre_auc"] > 0.72
    assert d["dip_auc"] < d["pre_auc"] - 0.05
    assert d["dip_examples"] <= DRIFT_AT + 3 * 8192
    assert d["recovered"] > 0.6
    # tiers: share of the hot rows in fp32 + fp16 at the drift and at the end (0 -> 0.98 and 0.96 -> 0.25 measured)
    hi = d["high_tier"]
    assert hi["new"]["at_drift"] < 0.2 and hi["new"]["end"] > 0.8
    assert hi["old"]["at_drift"] > 0.7 and hi["old"]["end"] < 0.4
    samples = d["tiers"]["samples"]
    assert samples[0]["examples"] == 0 and samples[0]["new"]["absent"] == 1.0
    # Read-only probes create no rows: many new hot rows are still absent after 4 probes (0.46 measured).
    at_drift = [s for s in samples if s["examples"] == DRIFT_AT][0]
    assert len(samples) >= 5 and at_drift["new"]["absent"] > 0.2
    assert all(abs(sum(s[g].values()) - 1.0) < 1e-9 for s in samples for g in ("new", "old"))
    assert all(s["seconds"] < 2.0 for s in samples)
    assert d["tiers"]["rows"]["new"] > 300 and d["tiers"]["rows"]["old"] > 300


def test_drift_options_are_checked_before_any_run(tmp_path: Path) -> None:
    def run(*args: str) -> str:
        res = CliRunner().invoke(cli, ["train", "--no-progress", *args])
        assert res.exit_code == 2, res.output
        return res.output

    assert "need --stream" in run("--drift-at", "1000")
    assert "drift_every needs drift_at" in run("--stream", "--drift-every", "1000")
    assert "drift_at must be an int" in run("--stream", "--drift-at", "-5")
    cfg = tmp_path / "drift.toml"
    cfg.write_text("[train]\nstream = true\ndrift-at = -1\n")  # config files name the options too
    assert "drift_at must be an int" in run("--config", str(cfg))
    (tmp_path / "file").write_text("")
    assert "--report-dir" in run("--stream", "--report-dir", str(tmp_path / "file" / "sub"))
