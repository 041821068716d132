"""`shark bench quant`: the F-Quantization experiment (methods x seeds on the cluster) -> table, JSON and a plot."""

from __future__ import annotations

import itertools
from pathlib import Path

import click

from shark.cli.common import config_option, emit_json, fail, run_user_errors
from shark.cli.options import cluster_config, cluster_options, model_options, rounding_option, train_config


@click.command("quant")
@config_option
@click.option("--methods", default="fp32,fp16,int8,fq:0.5,fq:0.4,mpe:0.5,mpe:0.4", show_default=True,
              help="Comma-separated: fp32 (required: the reference), fp16, int8 (uniform, with --rounding), "
                   "fq (F-Quantization with its thresholds), fq:BUDGET (a share of fp32's bytes, e.g. fq:0.5) or "
                   "mpe:BUDGET (the MPE baseline: int8 rows plus an fp32 cache of the most pushed rows, as large "
                   "as the same budget allows).")
@click.option("--seeds", default="0,1,2", show_default=True,
              help="Comma-separated seeds: each seeds both the synthetic data and the model.")
@click.option("--train-rows", type=int, default=1_000_000, show_default=True, help="Synthetic training rows per run.")
@click.option("--test-rows", type=int, default=200_000, show_default=True, help="Synthetic held-out rows per run.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="shark-bench-quant", show_default=True,
              help="Directory for quant.json and quant.png.")
@click.option("--json", "json_stdout", is_flag=True, help="Print the JSON result to stdout.")
@rounding_option
@cluster_options
@model_options
def quant(methods: str, seeds: str, train_rows: int, test_rows: int, out_dir: str, json_stdout: bool, **kw) -> None:
    """Train every method on the same synthetic data and cluster, for each seed, and compare held-out AUC with
    the shards' embedding memory (every byte counted, and the row values alone) against fp32 on the same seed.
    Each run takes about as long as `shark train` (about a minute per 1M rows on 2 cores)."""
    from shark.bench.quant_bench import QuantBenchSpec, QuantMethod, format_table, run_quant_bench
    from shark.coordinator.errors import RunError
    from shark.report.quant_plots import plot_quant

    try:
        parsed = tuple(QuantMethod.parse(m) for m in methods.split(",") if m.strip())
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    spec = run_user_errors(QuantBenchSpec, methods=parsed, seeds=seed_list, train_rows=train_rows,
                           test_rows=test_rows, settings=True)
    base = run_user_errors(train_config, kw, settings=True)
    cluster = run_user_errors(cluster_config, kw, settings=True)
    total = len(spec.methods) * len(spec.seeds)

    counter = itertools.count(1)

    def done(r: dict) -> None:
        click.echo(f"[{next(counter)}/{total}] seed {r['seed']} {r['method']:8} AUC {r['auc']:.4f}  "
                   f"{r['bytes'] / 2**20:.1f} MiB  ({r['seconds']:.0f} s)", err=True)

    try:
        result = run_user_errors(run_quant_bench, spec, base, cluster, on_run=done)
    except RunError as exc:
        fail(str(exc))
    click.echo(format_table(result), err=json_stdout)
    out = Path(out_dir)
    emit_json(result, str(out / "quant.json"), json_stdout)
    plot_quant(result, out / "quant.png")
    click.echo(f"plot written to {out / 'quant.png'}", err=True)
