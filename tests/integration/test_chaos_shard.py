"""A shard killed in the middle of a distributed run: Ray restarts it, it recovers its checkpoint plus its push
log (every acknowledged update) on the same address, the workers' retries carry on, and the run finishes with
every example trained."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import ray
from click.testing import CliRunner

from shark.cli.main import cli


def _find_shard(deadline: float) -> tuple[str, str]:
    while time.monotonic() < deadline:
        for a in ray.util.list_named_actors(all_namespaces=True):
            if a["name"].startswith("shark-") and a["name"].endswith("-shard-0"):
                return a["name"], a["namespace"]
        time.sleep(0.1)
    raise AssertionError("no shard actor appeared")


def test_killed_shard_mid_training_loses_nothing(ray_session, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    result: dict = {}

    def run() -> None:
        result["res"] = CliRunner().invoke(cli, [
            "train", "--no-progress", "--train-rows", "200000", "--test-rows", "20000", "--checkpoint-dir",
            str(tmp_path / "ckpt"), "--checkpoint-every", "80", "--json-out", str(out)])

    t = threading.Thread(target=run)
    t.start()
    name, ns = _find_shard(time.monotonic() + 60)
    shard = ray.get_actor(name, namespace=ns)
    pid = ray.get(shard.info.remote(), timeout=30)["pid"]
    # wait until training is under way (the run's shards have rows), then kill shard 0 abruptly
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ray.get(shard.info.remote(), timeout=30)["tables"]:
        time.sleep(0.2)
    time.sleep(4)
    ray.kill(shard, no_restart=False)
    t.join(300)
    res = result["res"]
    assert res.exit_code == 0, res.output
    s = json.loads(out.read_text())
    assert s["train"]["progressive"]["examples"] == 200_000  # every example trained once
    [rec] = s["cluster"]["shard_recoveries"]  # shard 0 came back once, from its checkpoint and push log
    assert rec["shard"] == "shard-0" and rec["pid"] != pid and rec["replayed"] > 0, rec
    assert s["test"]["auc"] > 0.77, s["test"]["auc"]  # the same model quality as an undisturbed run (~0.78)
