"""A shard killed in the middle of a table deletion (F-Permutation's DropTable across the shards): Ray restarts it, it
recovers its checkpoint plus its push log, the deletion is retried (DropTable is idempotent), and afterwards every
shard agrees on the set of tables and every kept table holds exactly the rows it held before.

Three interleavings, each on three shard actors with push logs:
- the killed shard had NOT applied the drop (the others had): the retried deletion reaches the restarted shard;
- the killed shard HAD applied the drop (logged) and the others had not: its recovery must not bring the table back;
- the kill lands while the deletion is in flight on every shard at once (whichever order Ray gives)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import ray

from ps.actor import RayShardActor
from ps.store import TableConfig
from shark.wire.v1 import ps_pb2
from tests.integration.actors import new_incarnation
from worker.client import PSClient, RetryPolicy

SHARDS = 3
TABLES = ("a", "b", "c", "d")
IDS = np.arange(3000)


def _config(name: str) -> TableConfig:
    return TableConfig(name=name, dim=8, capacity=3000, optimizer="adagrad", lr=0.05, seed=hash(name) % 100)


def _push_some(client: PSClient, rng: np.random.Generator, steps: int) -> None:
    for _ in range(steps):
        parts = {}
        for t in TABLES:
            ids = np.unique(rng.integers(0, IDS.size, 200))
            parts[t] = (ids, rng.standard_normal((ids.size, 8)).astype(np.float32),
                        np.ones(ids.size, np.uint32), np.zeros(ids.size, np.uint32))
        client.push(parts)
    client.flush()


def _tables_per_shard(actors: list) -> list[set[str]]:
    return [set(ray.get(a.info.remote(), timeout=30)["tables"]) for a in actors]


@pytest.mark.parametrize("interleaving", ["killed-before-its-drop", "killed-after-its-drop", "killed-during"])
def test_shard_killed_mid_deletion_leaves_a_consistent_cluster(ray_session, tmp_path: Path, interleaving: str) -> None:
    actors = [RayShardActor.options(num_cpus=0, max_restarts=2).remote(
        i, SHARDS, wal_dir=str(tmp_path / "wal"), wal_fsync=False) for i in range(SHARDS)]
    try:
        infos = [ray.get(a.info.remote(), timeout=60) for a in actors]
        addresses = [i["address"] for i in infos]
        rng = np.random.default_rng(7)
        retry = RetryPolicy(attempts=12, deadline_s=10)  # as the cluster's clients (ClusterConfig.retry_attempts)
        with PSClient(addresses, "w-1", staleness=2, retry=retry) as client:
            client.create_tables([_config(t) for t in TABLES])
            _push_some(client, rng, 5)
            client.checkpoint(str(tmp_path / "ckpt"), "c1")  # the deleted table is in the checkpoint...
            _push_some(client, rng, 5)  # ...and in the push log after it
            kept = {t: client.pull({t: IDS}, read_only=True)[t] for t in TABLES if t != "b"}
            victim, drop = 1, ps_pb2.DropTableRequest(name="b")

            if interleaving == "killed-before-its-drop":
                for s in range(SHARDS):  # the deletion reached the other shards, then the coordinator was cut off
                    if s != victim:
                        client._call(s, "DropTable", drop, ("b",))
                ray.kill(actors[victim], no_restart=False)
                client.drop_table("b")  # the retried deletion: UNAVAILABLE from the victim until it is back
            elif interleaving == "killed-after-its-drop":
                client._call(victim, "DropTable", drop, ("b",))  # applied and logged on the victim only
                ray.kill(actors[victim], no_restart=False)
                back = new_incarnation(actors[victim], infos[victim]["pid"])
                assert "b" not in back["tables"], back  # its recovery replayed the logged drop: b stays gone
                client.drop_table("b")
            else:
                dropper = threading.Thread(target=client.drop_table, args=("b",))
                dropper.start()
                ray.kill(actors[victim], no_restart=False)
                dropper.join(90)
                assert not dropper.is_alive()
                client.drop_table("b")  # whatever the race gave, the retried deletion completes it

            again = new_incarnation(actors[victim], infos[victim]["pid"])
            assert again["restarted"] and again["restored_tag"] == "c1", again
            assert again["address"] == addresses[victim]

        per_shard = _tables_per_shard(actors)
        assert all(t == {"a", "c", "d"} for t in per_shard), per_shard  # every shard agrees: b is gone
        with PSClient(addresses, "check", staleness=0, retry=RetryPolicy(deadline_s=10)) as client:
            for t, rows in kept.items():  # the kept tables lost nothing and gained nothing on any shard
                assert np.array_equal(client.pull({t: IDS}, read_only=True)[t], rows), t
            stats = client.table_stats()
        assert set(stats) == {"a", "c", "d"}
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
