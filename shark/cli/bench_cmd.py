"""`shark bench ...`."""

from __future__ import annotations

import click

from shark.cli.common import config_option, emit_json, run_user_errors
from shark.cli.options import model_options, train_config


@click.group()
def bench() -> None:
    """Benchmarks: each runs a baseline side by side and prints ratios, a table and JSON."""


@bench.command("train")
@config_option
@click.option("--engine", type=click.Choice(["local"]), default="local", show_default=True,
              help="Engine to measure against the stock-PyTorch baseline.")
@click.option("--rows", type=int, default=200_000, show_default=True, help="Synthetic training rows per repeat.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Alternating repeats; medians are reported.")
@click.option("--warmup-batches", type=int, default=5, show_default=True, help="Untimed batches per repeat.")
@model_options
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, help="Write the JSON result here.")
@click.option("--json", "json_stdout", is_flag=True, help="Print the JSON result to stdout (the table then goes to stderr).")
def train(engine: str, rows: int, repeats: int, warmup_batches: int, json_out: str | None, json_stdout: bool,
          **kw) -> None:
    """Training throughput (examples/s) on synthetic data, against stock PyTorch on the same batches."""
    from shark.bench.train_bench import BenchSpec, bench_train, format_bench

    config = run_user_errors(train_config, kw, settings=True)
    spec = run_user_errors(BenchSpec, rows=rows, repeats=repeats, warmup_batches=warmup_batches, settings=True)
    result = bench_train(config, spec, engine=engine)
    click.echo(format_bench(result), err=json_stdout)  # with --json, stdout carries only the JSON
    emit_json(result, json_out, json_stdout)
