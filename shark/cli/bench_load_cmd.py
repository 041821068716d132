"""`shark bench load`: N worker processes against S shard processes on loopback for a fixed time."""

from __future__ import annotations

import sys

import click

from shark.cli.common import config_option, emit_json, fail, json_options, run_user_errors


@click.command("load")
@config_option
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds of load (after start-up).")
@click.option("--clients", type=int, default=8, show_default=True,
              help="Client processes, each a PSClient with its own worker id running pull-then-push steps.")
@click.option("--shards", type=int, default=2, show_default=True, help="Shard processes (Ray shard actors).")
@click.option("--tables", type=int, default=4, show_default=True, help="Embedding tables (every step uses all).")
@click.option("--dim", type=int, default=16, show_default=True, help="Row width (float32).")
@click.option("--ids", type=int, default=1024, show_default=True,
              help="Lookups per table per step (a batch); deduplicated before they are sent, as a worker does.")
@click.option("--id-space", type=int, default=1_000_000, show_default=True, help="Rows per table (capacity).")
@click.option("--zipf", type=float, default=1.05, show_default=True,
              help="Popularity exponent of the ids (P(rank k) ~ k^-zipf: hot ids and a long tail); 0 = uniform.")
@click.option("--read-fraction", type=float, default=0.0, show_default=True,
              help="Share of steps that only pull (serving-like); the others pull, then push a gradient.")
@click.option("--staleness", type=int, default=2, show_default=True, help="Push steps in flight per client.")
@click.option("--token", is_flag=True,
              help="Bearer-token authentication on shards and clients (a fresh random token for the run, in a "
                   "private temporary file); also checks that a client without it is refused.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the clients' id and label draws.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@json_options
def load(duration: float, clients: int, shards: int, tables: int, dim: int, ids: int, id_space: int, zipf: float,
         read_fraction: float, staleness: int, token: bool, seed: int, no_progress: bool, json_out: str | None,
         json_stdout: bool) -> None:
    """Load test of the parameter server: --clients worker processes (closed loop: pull a batch's rows, push its
    gradient) against --shards shard processes on a local loopback Ray, for --duration seconds. Prints
    requests/s, rows/s, MB/s on the wire, latency percentiles per RPC, errors by gRPC status and retries, then
    checks the shards (every table's rows = the distinct ids pulled) and that no process is left.
    Exit code 1 if any request failed, the shards disagree, or a process was left behind."""
    from shark.bench.load_bench import LoadSpec, format_load, run_load

    spec = run_user_errors(LoadSpec, duration_s=duration, clients=clients, shards=shards, tables=tables, dim=dim,
                           ids=ids, id_space=id_space, zipf=zipf, read_fraction=read_fraction, staleness=staleness,
                           token=token, seed=seed, settings=True)
    try:
        result = run_load(spec, progress=not no_progress)
    except RuntimeError as exc:
        fail(str(exc), code=1)
    click.echo(format_load(result), err=json_stdout)  # with --json, stdout carries only the JSON
    emit_json(result, json_out, json_stdout)
    if not result["ok"]:
        click.echo(f"bench load: FAILED ({result['errors']} errors, {result['failed_steps']} failed steps, "
                   f"shards consistent: "
                   f"{result['consistency']['ok']}, processes left: {len(result['processes_left'])})", err=True)
        sys.exit(1)
