"""`shark train` and `shark evaluate`."""

from __future__ import annotations

import click

from shark.cli.common import config_option, emit_json, fail, json_options, run_user_errors
from shark.cli.options import (
    cluster_config,
    cluster_options,
    data_options,
    data_spec,
    model_options,
    quant_options,
    train_config,
)


def _run_ray(config, spec, cluster, progress: bool, train: bool, stream=None) -> dict:
    from shark.coordinator.errors import RunError
    from shark.train.ray_run import run_ray

    try:
        return run_user_errors(run_ray, config, spec, cluster, progress=progress, train=train, stream=stream)
    except RunError as exc:
        fail(str(exc))


@click.command()
@config_option
@click.option("--engine", type=click.Choice(["ray", "local"]), default="ray", show_default=True,
              help="'ray': parameter-server shards and workers as Ray actors, rows over gRPC (a local Ray instance "
                   "on loopback unless --address). 'local': the single-process trainer, the reference.")
@cluster_options
@data_options
@model_options
@quant_options
@json_options
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr.")
@click.option("--stream", is_flag=True,
              help="Online learning on the endless synthetic stream until SIGINT/SIGTERM (or --max-examples): "
                   "segments of --checkpoint-every batches per worker (default 200 with --stream), a checkpoint "
                   "after each with --checkpoint-dir, a held-out evaluation every --eval-every segments, and on "
                   "stop a final checkpoint, evaluation and summary. --train-rows is ignored.")
@click.option("--eval-every", type=int, default=5, show_default=True,
              help="With --stream: segments between held-out evaluations on --test-rows rows (0 = final only).")
@click.option("--max-examples", type=int, default=0, show_default=True,
              help="With --stream: stop after about this many trained examples (0 = until stopped).")
@click.option("--window", "stream_window", type=int, default=20_000, show_default=True,
              help="With --stream: examples per window of the progressive (test-then-train) AUC curve.")
@click.option("--segment-batches", type=int, default=0, show_default=True,
              help="With --stream: batches per worker per segment (between the coordinator's stop checks, "
                   "checkpoints and the drift report's tier probes); 0 = --checkpoint-every, or 200.")
@click.option("--drift-at", type=int, default=0, show_default=True, metavar="ROW",
              help="With --stream: concept drift from this stream row on: a second synthetic teacher (other "
                   "effects) and reversed value frequencies (rare values become hot). The summary gets a 'drift' "
                   "section (AUC dip and recovery; with --quant fq, the tiers of the old and new hot rows). Held-out "
                   "rows follow the same schedule by their own row numbers, so --test-rows below ROW are all of "
                   "the first concept. 0 = none.")
@click.option("--drift-every", type=int, default=0, show_default=True, metavar="ROWS",
              help="With --drift-at: flip between the two concepts every ROWS rows after it (0 = drift once).")
@click.option("--report-dir", type=click.Path(file_okay=False), default=None,
              help="Write summary.json and the plots the run has data for (e.g. stream.png) into this directory.")
def train(engine: str, json_out: str | None, json_stdout: bool, progress: bool, stream: bool, eval_every: int,
          max_examples: int, stream_window: int, segment_batches: int, drift_at: int, drift_every: int,
          report_dir: str | None, **kw) -> None:
    """Train a DLRM and report progressive (online) and held-out AUC and logloss.

    By default it trains on 1M synthetic Criteo-like rows with 2 parameter-server shards and 2 workers on a local
    Ray instance, evaluates on 200k held-out rows, and prints the synthetic teacher's own AUC beside the model's.
    Give --data FILE for your own data.
    """
    from shark.train.run import format_summary, run_local

    config = run_user_errors(train_config, kw, settings=True)
    spec = run_user_errors(data_spec, kw, settings=True)
    cluster = run_user_errors(cluster_config, kw, settings=True)
    if report_dir:  # before the run: a directory that cannot be made fails now, not after hours of training
        from pathlib import Path

        try:
            Path(report_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            fail(f"--report-dir {report_dir}: {exc.strerror or exc}")
    stream_cfg = None
    if stream:
        from dataclasses import replace

        from shark.coordinator.config import StreamConfig

        if not spec.synthetic:
            fail("--stream supports --data synthetic for now (tailing a file or watching a directory is not "
                 "implemented yet)")
        if engine == "local":
            fail("--stream runs on the parameter-server cluster: use --engine ray (the default)")
        spec = run_user_errors(replace, spec, stream=True, drift_at=drift_at, drift_every=drift_every,
                               settings=True)
        segment = segment_batches or cluster.checkpoint_every or 200
        stream_cfg = run_user_errors(StreamConfig, segment_batches=segment,
                                     eval_every=eval_every, max_examples=max_examples, window=stream_window,
                                     settings=True)
    elif max_examples or drift_at or drift_every or segment_batches:
        fail("--max-examples, --segment-batches, --drift-at and --drift-every need --stream")
    if engine == "local":
        if config.quant != "none":
            fail("F-Quantization runs on the parameter-server shards: use --engine ray (the default)")
        summary = run_user_errors(run_local, config, spec, progress=progress).summary
    else:
        summary = _run_ray(config, spec, cluster, progress, train=True, stream=stream_cfg)
    click.echo(format_summary(summary), err=json_stdout)  # with --json, stdout carries only the JSON
    drift = (summary.get("stream") or {}).get("drift")
    if drift:
        click.echo(format_drift(drift), err=json_stdout)
    emit_json(summary, json_out, json_stdout)
    if report_dir:
        from shark.report.writer import write_report

        written = run_user_errors(write_report, summary, report_dir, settings=True)
        click.echo(f"report written to {written[0].parent} ({', '.join(p.name for p in written)})", err=True)


def format_drift(drift: dict) -> str:
    """The drift section in a few lines: AUC before / at the dip / at the end, and the hot rows' tiers."""
    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    lines = [f"drift at row {drift['drift_at']:,}: window AUC {f(drift['pre_auc'])} before, {f(drift['dip_auc'])} "
             f"at the dip, {f(drift['end_auc'])} at the end"
             + (f" ({drift['recovered']:.0%} of the dip recovered)" if drift.get("recovered") is not None else "")]
    for group, tiers in (drift.get("high_tier") or {}).items():
        lines.append(f"  {group} hot rows in fp32+fp16: {tiers['at_drift']:.0%} at the drift -> {tiers['end']:.0%}")
    return "\n".join(lines)


@click.command()
@config_option
@click.option("--checkpoint", "checkpoint_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="A checkpoint directory written by `shark train --checkpoint-dir`.")
@click.option("--tag", default=None, help="Checkpoint tag (default: the newest complete one).")
@click.option("--address", default=None, help="Ray cluster to join (default: a local Ray instance on loopback).")
@click.option("--workers", type=int, default=2, show_default=True, help="Worker actors that score the held-out rows.")
@click.option("--shards", type=int, default=None,
              help="Shard actors (default: as many as wrote the checkpoint; another count reshards it on restore).")
@data_options
@json_options
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress output on stderr.")
def evaluate(checkpoint_dir: str, tag: str | None, address: str | None, workers: int, shards: int | None,
             json_out: str | None, json_stdout: bool, progress: bool, **kw) -> None:
    """Start a cluster from a checkpoint and score the held-out rows (the model configuration comes from the
    checkpoint; give the same data options as the training run)."""
    import os

    from ps.checkpoint import CheckpointError
    from shark.coordinator.config import ClusterConfig
    from shark.coordinator.run_manifest import latest_run_tag, read_run_manifest
    from shark.train.config import train_config_from_dict
    from shark.train.run import format_summary

    try:
        tag = tag or latest_run_tag(checkpoint_dir)
        if tag is None:
            fail(f"{checkpoint_dir}: no complete checkpoint (no tag with a valid RUN.json)")
        doc = read_run_manifest(checkpoint_dir, tag)
    except CheckpointError as exc:
        fail(str(exc))
    config = run_user_errors(train_config_from_dict, doc["train_config"], settings=True)
    spec = run_user_errors(data_spec, kw, settings=True)
    cluster = run_user_errors(ClusterConfig, address=address or os.environ.get("RAY_ADDRESS") or None,
                              shards=doc["num_shards"] if shards is None else shards, workers=workers,
                              restore_from=checkpoint_dir,
                              restore_tag=tag, settings=True)
    summary = _run_ray(config, spec, cluster, progress, train=False)
    click.echo(format_summary(summary), err=json_stdout)
    emit_json(summary, json_out, json_stdout)
