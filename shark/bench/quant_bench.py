"""`shark bench quant`: the F-Quantization experiment (paper Table 3 / Figure 3). Every method trains the same
synthetic data on the same parameter-server cluster (same code path: only the shards' storage differs), for several
seeds; each run reports held-out AUC and the shards' embedding memory, all bytes counted (payload, scales, per-row
metadata, optimizer state, id index). Memory fractions are against the fp32 run of the same seed, measured, not
computed from a formula."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from shark.coordinator.config import ClusterConfig
from shark.train.config import TrainConfig
from shark.train.data_plan import DataSpec

QUANTS = {"fp32": "none", "fp16": "fp16", "int8": "int8", "fq": "fq", "mpe": "mpe"}
BUDGETED = ("fq", "mpe")  # methods that take a memory budget (mpe requires one: its cache is sized by it)


@dataclass(frozen=True)
class QuantMethod:
    """One line of the experiment: a storage mode, with a memory budget for the budgeted ones."""

    label: str
    quant: str  # TrainConfig.quant
    budget: float = 0.0  # share of the fp32 bytes (fq, mpe); 0: the mode's own thresholds (fq)

    @staticmethod
    def parse(text: str) -> QuantMethod:
        """'fp32', 'fp16', 'int8', 'fq' (thresholds), 'fq:0.5' (a budget) or 'mpe:0.5' (MPE: int8 rows and an fp32
        cache of the most pushed rows, as large as the budget allows)."""
        name, _, budget = text.strip().partition(":")
        if name not in QUANTS:
            raise ValueError(f"unknown method {text!r}: use one of {', '.join(QUANTS)} (fq:BUDGET or mpe:BUDGET "
                             "for a budget)")
        if budget and name not in BUDGETED:
            raise ValueError(f"method {text!r}: only fq and mpe take a memory budget")
        if name == "mpe" and not budget:
            raise ValueError(f"method {text!r}: mpe needs a memory budget, e.g. mpe:0.5")
        try:
            b = float(budget) if budget else 0.0
        except ValueError:
            raise ValueError(f"method {text!r}: the budget must be a number in (0, 1]") from None
        if not 0.0 <= b <= 1.0 or (name == "mpe" and b == 0.0):
            raise ValueError(f"method {text!r}: the budget must be in (0, 1]")
        return QuantMethod(label=text.strip(), quant=QUANTS[name], budget=b)


@dataclass(frozen=True)
class QuantBenchSpec:
    methods: tuple[QuantMethod, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    train_rows: int = 1_000_000
    test_rows: int = 200_000

    def __post_init__(self) -> None:
        if not self.methods or not any(m.quant == "none" for m in self.methods):
            raise ValueError("the methods must include fp32 (every memory fraction is against it)")
        if len({m.label for m in self.methods}) != len(self.methods):
            raise ValueError("a method is listed twice")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct and at least one")
        if self.train_rows < 1 or self.test_rows < 1:
            raise ValueError("train_rows and test_rows must be >= 1")


def _record(method: QuantMethod, seed: int, summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    mem = summary["model"]["embedding_memory"]
    kinds: dict[str, int] = {}
    for t in mem["tables"].values():
        for k, v in t["bytes_by_kind"].items():
            kinds[k] = kinds.get(k, 0) + v
    return {"method": method.label, "quant": method.quant, "budget": method.budget, "seed": seed,
            "auc": summary["test"]["auc"], "logloss": summary["test"]["logloss"],
            "bytes": mem["bytes"], "payload_bytes": kinds.get("payload_bytes"), "rows": mem["rows"],
            "rows_by_tier": mem["rows_by_tier"], "bytes_by_kind": kinds,
            "examples_per_s": summary.get("throughput", {}).get("examples_per_second"),
            "tiers_by_frequency": summary["model"].get("tiers_by_frequency"),
            "seconds": round(seconds, 1)}


def run_quant_bench(spec: QuantBenchSpec, base: TrainConfig, cluster: ClusterConfig,
                    on_run: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every (seed, method) run on one Ray instance (started once). The method order rotates with the seed so
    that slow drift of the machine does not always favour the same method."""
    from shark.cluster.ray_runtime import start_ray
    from shark.train.ray_run import run_ray

    handle = start_ray(cluster.address)
    runs: list[dict[str, Any]] = []
    try:
        for i, seed in enumerate(spec.seeds):
            k = i % len(spec.methods)
            for method in spec.methods[k:] + spec.methods[:k]:
                config = replace(base, seed=seed, quant=method.quant, memory_budget=method.budget)
                data = DataSpec(train_rows=spec.train_rows, test_rows=spec.test_rows, synth_seed=seed)
                t0 = time.perf_counter()
                summary = run_ray(config, data, cluster, progress=False)
                runs.append(_record(method, seed, summary, time.perf_counter() - t0))
                if on_run is not None:
                    on_run(runs[-1])
    finally:
        handle.shutdown()
    summary = summarise(runs, spec.methods)
    return {"spec": {"methods": [m.label for m in spec.methods], "seeds": list(spec.seeds),
                     "train_rows": spec.train_rows, "test_rows": spec.test_rows,
                     "embedding_dim": base.embedding_dim, "rounding": base.rounding, "shards": cluster.shards,
                     "workers": cluster.workers},
            "runs": runs, "methods": summary, "at_budget": at_budget(summary)}


def at_budget(summary: list[dict[str, Any]], slack: float = 0.005) -> list[dict[str, Any]]:
    """For each F-Q budget tried: every method whose memory (all bytes, mean over seeds) fits in it (up to `slack`
    of fp32's bytes, the budget's own rounding), with its AUC difference from fp32, and whether F-Q's AUC is at
    least each of theirs. Uniform int8 has no budget of its own: it enters every budget it fits in."""
    out = []
    for fq in (m for m in summary if m["quant"] == "fq" and m["budget"]):
        b = fq["budget"]
        fits = [m for m in summary if m["quant"] != "none" and m["memory_fraction_mean"] <= b + slack]
        out.append({"budget": b, "fq": fq["method"],
                    "methods": {m["method"]: {"memory_fraction_mean": m["memory_fraction_mean"],
                                              "auc_delta_vs_fp32_mean": m["auc_delta_vs_fp32_mean"]} for m in fits},
                    "fq_at_least": {m["method"]: fq["auc_mean"] >= m["auc_mean"] for m in fits if m is not fq}})
    return out


def summarise(runs: list[dict[str, Any]], methods: tuple[QuantMethod, ...]) -> list[dict[str, Any]]:
    """Per method, over seeds: mean AUC, its paired difference from fp32 (same seed), memory as a share of the
    fp32 run's bytes (total, and payload)."""
    fp32 = {r["seed"]: r for r in runs if r["quant"] == "none"}
    out = []
    for m in methods:
        rs = [r for r in runs if r["method"] == m.label and r["seed"] in fp32]
        if not rs:
            continue
        d_auc = [r["auc"] - fp32[r["seed"]]["auc"] for r in rs]
        frac = [r["bytes"] / fp32[r["seed"]]["bytes"] for r in rs]
        pay = [r["payload_bytes"] / fp32[r["seed"]]["payload_bytes"] for r in rs
               if r["payload_bytes"] and fp32[r["seed"]]["payload_bytes"]]
        out.append({"method": m.label, "quant": m.quant, "budget": m.budget, "seeds": len(rs),
                    "auc_mean": statistics.fmean(r["auc"] for r in rs),
                    "auc_delta_vs_fp32_mean": statistics.fmean(d_auc),
                    "auc_delta_vs_fp32_min": min(d_auc),
                    "memory_fraction_mean": statistics.fmean(frac),
                    "payload_fraction_mean": statistics.fmean(pay) if pay else None,
                    "examples_per_s_mean": _mean([r["examples_per_s"] for r in rs])})
    return out


def _mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.fmean(vals) if vals else None


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'method':10}{'seeds':>6}{'AUC':>9}{'dAUC vs fp32':>14}{'worst':>9}{'memory':>9}{'payload':>9}"]
    for m in result["methods"]:
        pay = f"{m['payload_fraction_mean']:.1%}" if m["payload_fraction_mean"] is not None else "-"
        lines.append(f"{m['method']:10}{m['seeds']:>6}{m['auc_mean']:>9.4f}{m['auc_delta_vs_fp32_mean']:>+14.4f}"
                     f"{m['auc_delta_vs_fp32_min']:>+9.4f}{m['memory_fraction_mean']:>9.1%}{pay:>9}")
    lines.append("memory and payload: shares of the fp32 run's bytes on the same seed (every byte counted / the row "
                 "values only); dAUC: paired with fp32 on the same seed, mean and worst")
    for row in result.get("at_budget", []):
        others = ", ".join(f"{name} {'<=' if ok else '>'} {row['fq']}" for name, ok in row["fq_at_least"].items())
        lines.append(f"within a {row['budget']:.0%} budget (mean AUC): {others or 'no other method fits'}")
    return "\n".join(lines)
