"""`shark train`."""

from __future__ import annotations

import click

from shark.cli.common import config_option, emit_json, run_user_errors
from shark.cli.options import data_options, data_spec, model_options, train_config


@click.command()
@config_option
@click.option("--engine", type=click.Choice(["local"]), default="local", show_default=True,
              help="'local': the single-process trainer (the reference). The distributed parameter-server "
                   "engine arrives with the parameter-server work.")
@data_options
@model_options
@click.option("--json-out", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON summary to this file.")
@click.option("--json", "json_stdout", is_flag=True, help="Print the JSON summary to stdout (the table then goes to stderr).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr.")
def train(engine: str, json_out: str | None, json_stdout: bool, progress: bool, **kw) -> None:
    """Train a DLRM and report progressive (online) and held-out AUC and logloss.

    By default it trains on 1M synthetic Criteo-like rows and evaluates on 200k held-out rows, and prints the
    synthetic teacher's own AUC beside the model's. Give --data FILE for your own data.
    """
    from shark.train.run import format_summary, run_local

    config = run_user_errors(train_config, kw, settings=True)
    spec = run_user_errors(data_spec, kw, settings=True)
    result = run_user_errors(run_local, config, spec, progress=progress)
    click.echo(format_summary(result.summary), err=json_stdout)  # with --json, stdout carries only the JSON
    emit_json(result.summary, json_out, json_stdout)
