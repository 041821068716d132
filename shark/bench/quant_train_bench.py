"""`shark bench train --engine ray --vs-fp32`: the distributed engine with the configured row precision (e.g. F-Q
under a budget) against the same engine storing every row fp32, in one run.

Both sides train from scratch on the same synthetic rows with the same model, cluster shape and seed; repeats
alternate the sides so machine noise hits both; each side is timed by the coordinator's training clock (cluster
start-up and evaluation excluded). Medians, their ratio and each side's embedding memory are reported.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import replace
from typing import Any

from shark.coordinator.config import ClusterConfig
from shark.coordinator.errors import RunError
from shark.train.config import TrainConfig
from shark.train.data_plan import DataSpec


def bench_quant_vs_fp32(config: TrainConfig, cluster: ClusterConfig, rows: int, repeats: int,
                        synth_seed: int = 0, progress: bool = True) -> dict[str, Any]:
    from shark.cluster.ray_runtime import RayUnreachable, start_ray
    from shark.train.ray_run import run_ray

    if rows < 1 or repeats < 1:
        raise ValueError("rows and repeats must be >= 1")
    if config.quant == "none":
        raise ValueError("--vs-fp32 compares a row precision with fp32: add --quant fq|fp16|int8|mpe")
    spec = DataSpec(train_rows=rows, test_rows=1000, synth_seed=synth_seed)
    cluster = replace(cluster, checkpoint_dir=None, checkpoint_every=0)
    sides = {"quant": config, "fp32": replace(config, quant="none", memory_budget=0.0, mpe_cache=0.0)}
    seconds: dict[str, list[float]] = {k: [] for k in sides}
    memory: dict[str, Any] = {}
    try:
        handle = start_ray(cluster.address)  # one Ray for every repeat; each run starts its own actors
    except RayUnreachable as exc:
        raise RunError(str(exc)) from None
    try:
        for r in range(repeats):
            for name in (("quant", "fp32") if r % 2 == 0 else ("fp32", "quant")):  # alternate who goes first
                summary = run_ray(sides[name], spec, cluster, progress=False)
                seconds[name].append(summary["throughput"]["train_seconds"])
                mem = summary["model"]["embedding_memory"]
                memory[name] = {k: mem[k] for k in ("bytes", "fp32_equivalent_bytes", "fraction_of_fp32",
                                                    "rows", "rows_by_tier")}
            if progress:
                print(f"repeat {r + 1}/{repeats}: {config.quant} {rows / seconds['quant'][-1]:,.0f} ex/s, "
                      f"fp32 {rows / seconds['fp32'][-1]:,.0f} ex/s", file=sys.stderr, flush=True)
    finally:
        handle.shutdown()
    rate = {k: rows / statistics.median(v) for k, v in seconds.items()}
    return {
        "benchmark": "train_quant_vs_fp32",
        "engine": "ray",
        "quant": config.quant, "memory_budget": config.memory_budget,
        "rows": rows, "repeats": repeats, "batch_size": config.batch_size,
        "cluster": {"shards": cluster.shards, "workers": cluster.workers, "staleness": cluster.staleness},
        "examples_per_second": {k: round(v, 1) for k, v in rate.items()},
        "seconds": {k: [round(s, 3) for s in v] for k, v in seconds.items()},
        "embedding_memory": memory,
        "ratio_quant_over_fp32": round(rate["quant"] / rate["fp32"], 3),
    }


def format_quant_bench(result: dict[str, Any]) -> str:
    eps, mem = result["examples_per_second"], result["embedding_memory"]
    label = result["quant"] + (f" (budget {result['memory_budget']:g})" if result["memory_budget"] else "")
    return "\n".join([
        (f"bench train: {label} vs fp32 rows, ray {result['cluster']['shards']} shards x "
         f"{result['cluster']['workers']} workers, {result['rows']:,} synthetic rows x {result['repeats']} repeats"),
        f"{'side':28}{'examples/s (median)':>22}{'embedding MiB':>16}{'of fp32':>10}",
        *(f"{name:28}{eps[k]:>22,.0f}{mem[k]['bytes'] / 2**20:>16.1f}{mem[k]['fraction_of_fp32']:>10.3f}"
          for k, name in (("quant", label), ("fp32", "fp32"))),
        f"ratio {result['quant']}/fp32: {result['ratio_quant_over_fp32']:.2f}x",
    ])
