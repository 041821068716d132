"""`shark bench train --engine ray`: the distributed engine against the single-process engine, in one run.

Both train from scratch on the same synthetic rows with the same model, batch size and seed, and both are timed
end to end over the training pass (reading, feature transform, lookups, steps, updates): the single-process
LocalTrainer.fit in this process with `threads` torch threads, and the distributed run's training phase (the
coordinator's clock from the first segment to the last acknowledged push; cluster start-up and evaluation are
excluded and reported separately). Repeats alternate the two sides; medians and their ratio are reported.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from typing import Any

import torch

from shark.coordinator.config import ClusterConfig
from shark.coordinator.errors import RunError
from shark.train.config import TrainConfig
from shark.train.data_plan import DataPlan, DataSpec
from shark.train.local import LocalTrainer


def bench_engines(config: TrainConfig, cluster: ClusterConfig, rows: int, repeats: int,
                  synth_seed: int = 0, progress: bool = True) -> dict[str, Any]:
    from shark.cluster.ray_runtime import RayUnreachable, start_ray
    from shark.train.ray_run import run_ray

    if rows < 1 or repeats < 1:
        raise ValueError("rows and repeats must be >= 1")
    spec = DataSpec(train_rows=rows, test_rows=1000, synth_seed=synth_seed)
    cluster = replace(cluster, checkpoint_dir=None, checkpoint_every=0)
    local_s: list[float] = []
    ray_s: list[float] = []
    ray_wall: list[float] = []
    try:
        handle = start_ray(cluster.address)  # one Ray for every repeat; each repeat starts its own actors
    except RayUnreachable as exc:
        raise RunError(str(exc)) from None
    try:
        for r in range(repeats):
            torch.set_num_threads(config.threads)
            plan = DataPlan(spec, config.batch_size, config.eval_batch_size)
            trainer = LocalTrainer(config, plan.n_dense, plan.table_names)
            t0 = time.perf_counter()
            trainer.fit(plan.train_batches())
            local_s.append(time.perf_counter() - t0)
            del trainer
            t0 = time.perf_counter()
            summary = run_ray(config, spec, cluster, progress=False)
            ray_wall.append(time.perf_counter() - t0)
            ray_s.append(summary["throughput"]["train_seconds"])
            if progress:
                print(f"repeat {r + 1}/{repeats}: local {rows / local_s[-1]:,.0f} ex/s, "
                      f"ray {rows / ray_s[-1]:,.0f} ex/s", file=sys.stderr, flush=True)
    finally:
        handle.shutdown()
    local_rate, ray_rate = rows / statistics.median(local_s), rows / statistics.median(ray_s)
    return {
        "benchmark": "train",
        "engine": "ray",
        "baseline": f"single-process engine (LocalTrainer, {config.threads} torch threads), same rows and model",
        "rows": rows, "repeats": repeats, "batch_size": config.batch_size,
        "cluster": {"shards": cluster.shards, "workers": cluster.workers, "staleness": cluster.staleness,
                    "worker_threads": cluster.worker_threads},
        "threads": {"local": config.threads, "ray_workers_total": cluster.workers * cluster.worker_threads},
        "examples_per_second": {"ours": round(ray_rate, 1), "baseline": round(local_rate, 1)},
        "seconds": {"ours": [round(s, 3) for s in ray_s], "baseline": [round(s, 3) for s in local_s],
                    "ours_run_wall_including_startup_and_eval": [round(s, 3) for s in ray_wall]},
        "ratio_ours_over_baseline": round(ray_rate / local_rate, 3),
    }


def format_engine_bench(result: dict[str, Any]) -> str:
    eps, c = result["examples_per_second"], result["cluster"]
    return "\n".join([
        f"bench train: distributed vs single-process, {result['rows']:,} synthetic rows x {result['repeats']} "
        f"repeats, batch {result['batch_size']}",
        f"{'side':44}{'examples/s (median)':>22}",
        f"{'ours: ray, ' + str(c['shards']) + ' shards x ' + str(c['workers']) + ' workers, staleness ' + str(c['staleness']):44}"
        f"{eps['ours']:>22,.0f}",
        f"{'baseline: local engine, ' + str(result['threads']['local']) + ' threads':44}{eps['baseline']:>22,.0f}",
        f"ratio distributed/single-process: {result['ratio_ours_over_baseline']:.2f}x",
    ])
