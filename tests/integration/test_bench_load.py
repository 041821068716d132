"""`shark bench load` (issue 7): client processes against shard processes on loopback for a few seconds: no
errors, positive throughput, sane latency percentiles, the shards holding exactly the rows pulled, no process
left. Plus the workload's pure pieces (zipf-like ids, the logistic push) and the spec's validation."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from shark.bench.load_bench import LoadSpec, _alive, logistic_push, zipf_ids
from shark.cli.main import cli


def test_zipf_ids_are_in_range_and_skewed():
    rng = np.random.default_rng(0)
    ids = zipf_ids(rng, 200_000, 10_000, 1.05)
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 10_000
    counts = np.sort(np.bincount(ids, minlength=10_000))[::-1]
    assert counts[:10].sum() > 0.2 * ids.size          # hot ids: the top 0.1% take > 20% of the lookups
    assert (counts > 0).sum() > 5_000                   # and a long tail is touched
    uniform = np.bincount(zipf_ids(rng, 200_000, 10_000, 0.0), minlength=10_000)
    assert uniform.max() < 60                           # exponent 0: no hot ids (mean 20 per id)


def test_logistic_push_is_the_mean_logloss_gradient():
    rng = np.random.default_rng(1)
    batch, dim = 12, 3
    draws = {"a": rng.integers(0, 5, batch), "b": rng.integers(0, 4, batch)}
    uniq = {t: np.unique(d, return_inverse=True) for t, d in draws.items()}
    ids = {t: u for t, (u, _) in uniq.items()}
    inv = {t: i for t, (_, i) in uniq.items()}
    rows = {t: rng.standard_normal((u.shape[0], dim)).astype(np.float32) for t, u in ids.items()}
    w = rng.standard_normal(dim)
    y = (rng.random(batch) < 0.5).astype(np.float64)

    def loss(r: dict[str, np.ndarray]) -> float:
        z = sum(r[t][inv[t]].astype(np.float64) for t in r) @ w
        return float(np.mean(np.logaddexp(0, z) - y * z))

    parts = logistic_push(ids, rows, inv, w, y)
    eps = 1e-3
    for t, r in rows.items():
        assert np.array_equal(parts[t][0], ids[t])
        num = np.zeros_like(r, dtype=np.float64)
        for i in range(r.shape[0]):
            for j in range(dim):
                up = {k: v.astype(np.float64) for k, v in rows.items()}
                down = {k: v.astype(np.float64) for k, v in rows.items()}
                up[t][i, j] += eps
                down[t][i, j] -= eps
                num[i, j] = (loss(up) - loss(down)) / (2 * eps)
        np.testing.assert_allclose(parts[t][1], num, atol=1e-5)
        assert parts[t][2].dtype == np.uint32
        np.testing.assert_array_equal(parts[t][2] + parts[t][3], np.bincount(inv[t]))
        np.testing.assert_array_equal(parts[t][2], np.bincount(inv[t], weights=y).astype(np.uint32))


@pytest.mark.parametrize("bad", [{"clients": 0}, {"duration_s": 0.1}, {"read_fraction": 1.5}, {"zipf": -1.0},
                                 {"id_space": 2**40}, {"token": "yes"}])
def test_spec_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match=next(iter(bad)).removesuffix("_s")):
        LoadSpec(**bad)


def test_cli_load_on_loopback_has_no_errors_and_leaves_no_process(ray_session, tmp_path: Path):
    out = tmp_path / "load.json"
    res = CliRunner().invoke(cli, ["bench", "load", "--duration", "5", "--clients", "4", "--shards", "2",
                                   "--id-space", "200000", "--ids", "512", "--read-fraction", "0.25", "--token",
                                   "--no-progress", "--json-out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["errors"] == 0 and r["errors_by_kind"] == {} and r["failed_steps"] == 0 and r["ok"]
    assert r["seconds"] >= 5.0 and r["steps"] > 0 and 0 < r["push_steps"] < r["steps"]  # reads and writes
    assert r["requests_per_second"] > 0 and r["rows_per_second"] > 0 and r["wire_mb_per_second"] > 0
    assert len(r["per_client"]) == 4 and all(c["steps"] > 0 for c in r["per_client"])
    for op in ("pull_step", "PullMany", "PushMany"):
        lat = r["latency_ms"][op]
        assert lat["count"] > 0
        assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"], (op, lat)
    # every pull step sends one PullMany per shard; every push step one PushMany per shard
    assert r["latency_ms"]["PullMany"]["count"] == 2 * r["steps"]
    assert r["latency_ms"]["PushMany"]["count"] == 2 * r["push_steps"]
    c = r["consistency"]
    assert c["ok"] and c["problems"] == [] and c["token_refused_without_it"] is True
    assert c["rows_per_table"] == c["distinct_ids_pulled"] and all(v > 0 for v in c["rows_per_table"].values())
    assert "rows/s" in res.output and "p99 ms" in res.output
    # nothing left: the benchmark's own check, and again from here
    assert r["processes_left"] == [] and mp.active_children() == []
    pids = r["client_pids"] + [s["pid"] for s in r["shards"]]
    assert len(pids) == 6 and not any(_alive(p) for p in pids)


def test_cli_load_rejects_a_bad_option():
    res = CliRunner().invoke(cli, ["bench", "load", "--clients", "0"])
    assert res.exit_code == 2 and "clients" in res.output


def _fake_run(pid: int, steps: int, rpc_errors: dict[str, int], step_errors: dict[str, int]) -> dict:
    lat = np.linspace(0.001, 0.010, steps)
    return {"pid": pid, "elapsed_s": 2.0, "cpu_s": 1.0,
            "counts": {"steps": steps, "push_steps": steps, "rows_pulled": 10 * steps, "rows_pushed": 10 * steps,
                       "lookups": 20 * steps},
            "latency": {"pull_step": lat, "PullMany": lat, "PushMany": lat}, "rpc_errors": rpc_errors,
            "step_errors": step_errors, "retries": 3, "bytes_sent": 1000, "bytes_received": 3000}


def test_summary_counts_errors_by_kind_and_fails_the_run():
    from shark.bench.load_bench import format_load, summarize

    spec = LoadSpec(duration_s=2.0, clients=2, tables=1)
    checks = {"ok": True, "problems": [], "shards": [], "rows_per_table": {"load-0": 5},
              "distinct_ids_pulled": {"load-0": 5}, "token_refused_without_it": None}
    env = {"shard_cpu_seconds": [0.5, 0.5], "load_average_before": [1.0, 1.0, 1.0],
           "load_average_after": [1.0, 1.0, 1.0]}
    runs = [_fake_run(1, 100, {"PushMany:UNAVAILABLE": 2}, {"push:UNAVAILABLE": 1}), _fake_run(2, 50, {}, {})]
    r = summarize(spec, runs, checks, 2.1, ["a", "b"], [3, 4], [1, 2], [], env)
    assert r["errors"] == 2 and r["failed_steps"] == 1 and not r["ok"]
    assert r["errors_by_kind"] == {"PushMany:UNAVAILABLE": 2}
    assert r["failed_steps_by_kind"] == {"push:UNAVAILABLE": 1}
    assert r["requests"] == 2 * 150 + 2 and r["requests_per_second"] == pytest.approx(151.0)
    assert r["rows_per_second"] == pytest.approx(20 * 150 / 2.0) and r["retries"] == 6
    assert r["latency_ms"]["PullMany"]["max_ms"] == pytest.approx(10.0)
    assert "failed requests PushMany:UNAVAILABLE: 2" in format_load(r)
    assert "failed steps push:UNAVAILABLE: 1" in format_load(r)
    only_step = summarize(spec, [_fake_run(1, 10, {}, {"pull:INVALID_REPLY": 1})], checks, 2.0, ["a"], [3], [1], [],
                          env)
    assert only_step["errors"] == 0 and not only_step["ok"]  # a malformed reply fails the run too
    clean = summarize(spec, [_fake_run(1, 10, {}, {})], checks, 2.0, ["a"], [3], [1], [], env)
    assert clean["ok"]
    assert not summarize(spec, [_fake_run(1, 10, {}, {})], checks, 2.0, ["a"], [3], [1], [3], env)["ok"]  # left


def test_cli_exits_non_zero_when_a_request_failed(monkeypatch):
    import shark.bench.load_bench as lb

    def failing_run(spec: LoadSpec, progress: bool = True) -> dict:
        checks = {"ok": True, "problems": [], "shards": [], "rows_per_table": {"load-0": 5},
                  "distinct_ids_pulled": {"load-0": 5}, "token_refused_without_it": None}
        env = {"shard_cpu_seconds": [0.5], "load_average_before": [1.0] * 3, "load_average_after": [1.0] * 3}
        return lb.summarize(spec, [_fake_run(1, 10, {"PullMany:INTERNAL": 1}, {"pull:INTERNAL": 1})], checks,
                            1.0, ["a"], [3], [1], [], env)

    monkeypatch.setattr(lb, "run_load", failing_run)
    res = CliRunner().invoke(cli, ["bench", "load", "--duration", "1", "--clients", "1", "--tables", "1"])
    assert res.exit_code == 1 and "FAILED (1 errors, 1 failed steps" in res.output
