"""One training run end to end: data plan -> trainer -> progressive + held-out metrics -> summary dict."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from shark import __version__
from shark.metrics import ScoreLog, auc, logloss
from shark.train.config import TrainConfig
from shark.train.data_plan import DataPlan, DataSpec
from shark.train.local import LocalTrainer


@dataclass(frozen=True)
class RunResult:
    summary: dict[str, Any]  # JSON-serialisable
    trainer: LocalTrainer  # the trained model and store, for callers that go on (scoring, pruning, tests)


def run_local(config: TrainConfig, spec: DataSpec, progress: bool = True) -> RunResult:
    started = time.time()
    plan = DataPlan(spec, config.batch_size, config.eval_batch_size)
    trainer = LocalTrainer(config, plan.n_dense, plan.table_names)
    epochs: list[dict[str, Any]] = []
    for epoch in range(config.epochs):
        hint = plan.train_rows_hint
        bar = tqdm(total=hint, unit="ex", unit_scale=True, desc=f"train {epoch + 1}/{config.epochs}",
                   disable=not progress, dynamic_ncols=True, mininterval=0.5)
        seen = {"batches": 0}

        def on_batch(n: int, log, bar=bar, seen=seen) -> None:
            bar.update(n)
            seen["batches"] += 1
            if seen["batches"] % 50 == 0:
                bar.set_postfix_str(_recent_metrics(log))

        log = trainer.fit(plan.train_batches(), on_batch=on_batch)
        bar.close()
        epochs.append({"epoch": epoch + 1, "progressive": log.summary(), "progressive_curve": log.curve()})
    with tqdm(total=plan.test_rows_hint, unit="ex", unit_scale=True, desc="held-out", disable=not progress,
              dynamic_ncols=True, mininterval=0.5) as bar:
        test_log = trainer.evaluate(_counting(plan.test_batches(), bar))
    summary: dict[str, Any] = {
        "engine": "local",
        "shark_version": __version__,
        "config": config.to_dict(),
        "data": plan.describe(),
        "train": {"progressive": epochs[0]["progressive"], "epochs": epochs},
        "test": test_log.summary(),
        "throughput": {"train_examples": trainer.timer.examples, "train_step_seconds": round(trainer.timer.seconds, 3),
                       "examples_per_second": round(trainer.timer.rate, 1), "threads": config.threads},
        "model": trainer.describe_model(),
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "machine": platform.machine()},
    }
    teacher = plan.teacher()
    if teacher is not None:
        summary["teacher"] = teacher
        summary["test"]["auc_gap_to_teacher"] = teacher["auc"] - summary["test"]["auc"]
    summary["elapsed_seconds"] = round(time.time() - started, 2)
    return RunResult(summary=summary, trainer=trainer)


def _counting(batches, bar):
    for raw in batches:
        bar.update(len(raw))
        yield raw


def _recent_metrics(log: ScoreLog, n: int = 20_000) -> str:
    """Progressive AUC and logloss of the last n examples, for the progress bar (a 20k sort costs ~2 ms)."""
    y, p = log.tail(n)
    return f"recent AUC {auc(y, p):.4f} logloss {logloss(y, p):.4f}"


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable table printed after a run (local or distributed, trained or only evaluated)."""
    tr, te = summary["train"]["progressive"], summary["test"]
    lines = [
        f"engine {summary['engine']}   data {summary['data']['source']}   "
        f"fields {len(summary['model']['fields'])}   elapsed {summary['elapsed_seconds']:.1f}s",
    ]
    cl = summary.get("cluster")
    if cl:
        lines.append(f"cluster {cl['shards']} shards, {cl['workers']} workers, staleness {cl['staleness']}   "
                     f"shards at {', '.join(cl['addresses'])}")
    lines.append(f"{'':22}{'examples':>12}{'AUC':>10}{'logloss':>10}{'pos rate':>10}")
    if tr:
        lines.append(f"{'progressive (train)':22}{tr['examples']:>12,}{tr['auc']:>10.4f}{tr['logloss']:>10.4f}"
                     f"{tr['positive_rate']:>10.4f}")
    lines.append(f"{'held-out':22}{te['examples']:>12,}{te['auc']:>10.4f}{te['logloss']:>10.4f}"
                 f"{te['positive_rate']:>10.4f}")
    if "teacher" in summary:
        lines.append(f"{'teacher (ceiling)':22}{'':>12}{summary['teacher']['auc']:>10.4f}"
                     f"      gap {te['auc_gap_to_teacher']:+.4f}")
    thr = summary["throughput"]
    if thr.get("train_examples"):
        lines.append(f"throughput {thr['examples_per_second']:,.0f} examples/s in training "
                     f"({thr['threads']} torch threads)")
    st = summary.get("stream")
    if st:
        lines.append(f"stream: {st['examples_trained']:,} examples trained, {st['examples_read']:,} read, in "
                     f"{st['segments']} segments (stopped by {st['stopped_by']}); progressive AUC per "
                     f"{st['config']['window']:,}-example window: {len(st['progressive_windows'])} windows, "
                     f"{len(st['evaluations'])} periodic held-out evaluations")
    mem = summary["model"].get("embedding_memory", {})
    if "bytes" in mem:
        line = f"embedding memory {mem['bytes'] / 2**20:,.1f} MiB in {mem['rows']:,} rows on the shards"
        if mem.get("fraction_of_fp32") is not None and summary["config"].get("quant", "none") != "none":
            t = mem["rows_by_tier"]
            line += (f" ({mem['fraction_of_fp32']:.1%} of the same rows in fp32; rows fp32 {t['fp32']:,}, "
                     f"fp16 {t['fp16']:,}, int8 {t['int8']:,})")
        if any(mem.get("shard_rss_bytes") or ()):
            line += "; shard processes' resident memory " + ", ".join(
                f"{b / 2**20:,.0f}" for b in mem["shard_rss_bytes"]) + " MiB"
        lines.append(line)
    fs = summary.get("field_scores")
    if fs:
        rho = fs["abs"].get("spearman_with_teacher")
        lines.append(f"field ranking (F-Permutation, {fs['rows']:,} held-out rows, {fs['seconds']:.1f}s): "
                     + ", ".join(fs["abs"]["ranking"])
                     + (f"   Spearman with the teacher's ranking {rho:.3f}" if rho is not None else ""))
    checkpoints = summary.get("checkpoints", [])
    if checkpoints:
        ck = checkpoints[-1]
        more = f"{len(checkpoints)} checkpoints, the last " if len(checkpoints) > 1 else "checkpoint "
        lines.append(f"{more}{ck['tag']} -> {ck['path']} ({ck['seconds']:.2f}s)")
    if summary.get("restored_from"):
        r = summary["restored_from"]
        lines.append(f"restored from {r['directory']} tag {r['tag']}")
    for role, rep in summary["data"].get("read_reports", {}).items():
        if rep.get("rows_bad"):
            lines.append(f"{role} pass: {rep['summary']}")
    return "\n".join(lines)
