"""`shark train --stream` on the endless synthetic source, stopped with SIGTERM: it exits 0 within 30 s, nothing is
lost or trained twice, and the final checkpoint restores to the summary's held-out AUC exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from shark.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def _complete_checkpoints(ckpt: Path) -> list[Path]:
    return sorted(ckpt.glob("*/RUN.json")) if ckpt.is_dir() else []


def test_sigterm_stops_the_stream_cleanly(ray_session, tmp_path: Path) -> None:
    ckpt, out = tmp_path / "ckpt", tmp_path / "summary.json"
    common = ["--test-rows", "4000"]
    cmd = [sys.executable, "-m", "shark", "train", "--stream", "--checkpoint-dir", str(ckpt),
           "--checkpoint-every", "20", "--eval-every", "1", *common, "--json-out", str(out), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray, not the session's
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(_complete_checkpoints(ckpt)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0]
        assert len(_complete_checkpoints(ckpt)) >= 2, "the stream wrote no periodic checkpoints"
        time.sleep(0.5)  # into the next segment: the stop lands mid-segment
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "SIGTERM: stopping the stream" in output
    summary = json.loads(out.read_text())
    st = summary["stream"]
    assert st["stopped_by"] == "request_stop" and st["segments"] >= 2
    # none lost, none twice: what the workers took from the source is what they trained (full batches)
    assert st["examples_trained"] == st["examples_read"] == st["examples_trained_counted"] > 0
    assert st["batches_read"] * st["batch_size"] == st["examples_read"]
    assert summary["throughput"]["train_examples"] == st["examples_trained"]
    assert st["progressive_windows"] and all(0.5 < w["auc"] < 1 for w in st["progressive_windows"])
    assert st["evaluations"] and st["evaluations"][0]["examples"] == 4000
    # the final checkpoint is complete and holds the stopped positions
    final = summary["checkpoints"][-1]
    assert final["final"] and (ckpt / final["tag"] / "RUN.json").is_file()
    manifest = json.loads((ckpt / final["tag"] / "RUN.json").read_text())
    positions = manifest.get("positions") or manifest.get("body", {}).get("positions")
    assert positions == st["positions"]
    restored = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(ckpt), *common, "--no-progress",
                                        "--json-out", str(tmp_path / "e.json")])
    assert restored.exit_code == 0, restored.output
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert evaluated["restored_from"]["tag"] == final["tag"]
    assert evaluated["test"]["auc"] == summary["test"]["auc"]
    assert evaluated["test"]["logloss"] == summary["test"]["logloss"]


def test_stream_refuses_files(tmp_path: Path) -> None:
    data = tmp_path / "d.tsv"
    data.write_text("1\t" + "\t".join(["1"] * 13 + ["ab12"] * 26) + "\n")
    res = CliRunner().invoke(cli, ["train", "--stream", "--no-progress", "--data", str(data)])
    assert res.exit_code == 2 and "--stream supports --data synthetic for now" in res.output
