"""`shark bench ...`."""

from __future__ import annotations

import click

from shark.cli.common import config_option, emit_json, fail, json_options, run_user_errors
from shark.cli.options import data_options, data_spec, model_options, quant_options, train_config


@click.group()
def bench() -> None:
    """Benchmarks: each runs a baseline side by side and prints ratios, a table and JSON."""


@bench.command("train")
@config_option
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="'local': the single-process engine against stock PyTorch. 'ray': the distributed engine "
                   "(--shards x --workers on a local Ray, or --address) against the single-process engine.")
@click.option("--shards", type=int, default=2, show_default=True, help="With --engine ray: shard actors.")
@click.option("--workers", type=int, default=2, show_default=True, help="With --engine ray: worker actors.")
@click.option("--staleness", type=int, default=2, show_default=True, help="With --engine ray: push window.")
@click.option("--address", default=None, help="With --engine ray: a Ray cluster to use instead of a local one.")
@click.option("--vs-fp32", is_flag=True,
              help="With --engine ray and --quant: compare the distributed engine with that row precision against "
                   "the same engine with every row fp32 (alternating runs), instead of against the local engine.")
@click.option("--rows", type=int, default=200_000, show_default=True, help="Synthetic training rows per repeat.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Alternating repeats; medians are reported.")
@click.option("--warmup-batches", type=int, default=5, show_default=True, help="Untimed batches per repeat.")
@model_options
@quant_options
@json_options
def train(engine: str, shards: int, workers: int, staleness: int, address: str | None, vs_fp32: bool, rows: int,
          repeats: int, warmup_batches: int, json_out: str | None, json_stdout: bool, **kw) -> None:
    """Training throughput (examples/s) on synthetic data against a baseline on the same rows: stock PyTorch for
    the local engine, the single-process engine for the distributed one."""
    from shark.bench.train_bench import BenchSpec, bench_train, format_bench

    config = run_user_errors(train_config, kw, settings=True)
    if vs_fp32 and engine != "ray":
        fail("--vs-fp32 needs --engine ray")
    if engine == "ray":
        from shark.bench.engine_bench import bench_engines, format_engine_bench
        from shark.coordinator.config import ClusterConfig

        cluster = run_user_errors(ClusterConfig, address=address, shards=shards, workers=workers,
                                  staleness=staleness, settings=True)
        from shark.coordinator.errors import RunError

        from shark.bench.quant_train_bench import bench_quant_vs_fp32, format_quant_bench

        run, fmt = (bench_quant_vs_fp32, format_quant_bench) if vs_fp32 else (bench_engines, format_engine_bench)
        try:
            result = run_user_errors(run, config, cluster, rows, repeats, settings=True)
        except RunError as exc:
            fail(str(exc))
        click.echo(fmt(result), err=json_stdout)
        emit_json(result, json_out, json_stdout)
        return
    spec = run_user_errors(BenchSpec, rows=rows, repeats=repeats, warmup_batches=warmup_batches, settings=True)
    result = bench_train(config, spec, engine=engine)
    click.echo(format_bench(result), err=json_stdout)  # with --json, stdout carries only the JSON
    emit_json(result, json_out, json_stdout)


@bench.command("ps")
@config_option
@click.option("--rows", type=int, default=4096, show_default=True, help="Unique row ids per pull/push call.")
@click.option("--dim", type=int, default=16, show_default=True, help="Row width (float32).")
@click.option("--calls", type=int, default=200, show_default=True, help="Timed calls per side, op and repeat.")
@click.option("--repeats", type=int, default=3, show_default=True,
              help="Repeats (the order of the sides rotates); medians are reported.")
@click.option("--warmup-calls", type=int, default=3, show_default=True, help="Untimed calls before each timing.")
@click.option("--ids", "variant", type=click.Choice(["dense", "random", "both"]), default="both", show_default=True,
              help="'dense': the same ids 0..rows-1 every call; 'random': fresh sorted unique ids each call, "
                   "drawn from --id-space (rows are created on first touch); 'both'.")
@click.option("--id-space", type=int, default=10_000_000, show_default=True,
              help="Table capacity of the 'random' variant (ids drawn from [0, id-space)).")
@click.option("--address", default=None,
              help="Ray cluster to join (else RAY_ADDRESS, else a local loopback-only Ray is started and stopped).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@json_options
def ps(rows: int, dim: int, calls: int, repeats: int, warmup_calls: int, variant: str, id_space: int,
       address: str | None, progress: bool, json_out: str | None, json_stdout: bool) -> None:
    """PS shard data plane: pull/push rows/s over gRPC against Ray actor calls to the same shard actor, with an
    in-process RowStore as the ceiling."""
    from shark.bench.ps_bench import VARIANTS, PsBenchSpec, bench_ps, format_bench

    variants = VARIANTS if variant == "both" else (variant,)
    spec = run_user_errors(PsBenchSpec, rows=rows, dim=dim, calls=calls, repeats=repeats, warmup_calls=warmup_calls,
                           variants=variants, id_space=id_space, settings=True)
    result = bench_ps(spec, address=address, progress=progress)
    click.echo(format_bench(result), err=json_stdout)  # with --json, stdout carries only the JSON
    emit_json(result, json_out, json_stdout)


@bench.command("fperm")
@config_option
@click.option("--rows", type=int, default=2048, show_default=True, help="Scoring rows (the same for every method).")
@click.option("--scoring-batch-size", type=int, default=2048, show_default=True, help="Rows per scoring batch.")
@click.option("--multiples", default="1,2,4", show_default=True,
              help="Table-count multiples of Criteo's 26 tables (must include 1).")
@click.option("--perm-repeats", default="1,5", show_default=True,
              help="Permutation's T values (shuffles per field; must include 1).")
@click.option("--repeats", type=int, default=1, show_default=True,
              help="Timing repeats of Permutation; medians are reported.")
@click.option("--fast-repeats", type=int, default=5, show_default=True,
              help="Timing repeats of F-P and of the references (plain forward; forward + backward), in rounds "
                   "alternating with the other methods; medians are reported.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write the JSON (fperm_bench.json) and the cost plot (fperm_cost.png) into this directory.")
@model_options
@json_options
def fperm(rows: int, scoring_batch_size: int, multiples: str, perm_repeats: str, repeats: int, fast_repeats: int,
          out_dir: str | None, json_out: str | None, json_stdout: bool, **kw) -> None:
    """Field-scoring time of F-Permutation against Permutation (T=1, T=5) on the same model and rows, at the
    Criteo field count and with the field count doubled and quadrupled; each method's time is also given in units
    of the model's own forward + backward pass (a DLRM's cost grows with the square of the field count)."""
    from shark.bench.fperm_bench import FPermBenchSpec, bench_fperm, format_fperm_bench
    from shark.cli.common import parse_ints

    config = run_user_errors(train_config, kw, settings=True)
    spec = run_user_errors(FPermBenchSpec, rows=rows, batch_size=scoring_batch_size,
                           multiples=parse_ints(multiples, "--multiples"),
                           perm_repeats=parse_ints(perm_repeats, "--perm-repeats"), repeats=repeats,
                           fast_repeats=fast_repeats, seed=config.seed, settings=True)
    result = bench_fperm(config, spec)
    click.echo(format_fperm_bench(result), err=json_stdout)  # with --json, stdout carries only the JSON
    _write_out(result, out_dir, "fperm_bench.json")
    emit_json(result, json_out, json_stdout)


@bench.command("fperm-curve")
@config_option
@click.option("--score-rows", type=int, default=50_000, show_default=True,
              help="Rows every method scores (synthetic: held-out rows; a file: training rows).")
@click.option("--eval-rows", type=int, default=30_000, show_default=True,
              help="Synthetic: further held-out rows for the AUC after each drop (a file uses all its held-out rows).")
@click.option("--random-orders", type=int, default=5, show_default=True, help="Seeded random field orders.")
@click.option("--draws", type=int, default=4, show_default=True, help="F-P 'abs': in-batch shuffles per batch.")
@click.option("--scoring-batch-size", type=int, default=8192, show_default=True, help="Rows per scoring batch.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write the JSON (fperm_curve.json) and the plots (fperm_ranking.png, "
                   "fperm_auc_vs_fields_kept.png) into this directory.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr.")
@model_options
@data_options
@json_options
def fperm_curve(score_rows: int, eval_rows: int, random_orders: int, draws: int, scoring_batch_size: int,
                out_dir: str | None, progress: bool, json_out: str | None, json_stdout: bool, **kw) -> None:
    """The paper's Figure 2: train a model, score the fields with F-P and Permutation (T=1), drop fields lowest
    score first and evaluate held-out AUC after each drop, against random orders; prints each curve's area."""
    from shark.bench.fperm_curve import CurveSpec, format_fperm_curves, fperm_curves

    config = run_user_errors(train_config, kw, settings=True)
    data = run_user_errors(data_spec, kw, settings=True)
    spec = run_user_errors(CurveSpec, score_rows=score_rows, eval_rows=eval_rows, random_orders=random_orders,
                           draws=draws, scoring_batch_size=scoring_batch_size, seed=config.seed, settings=True)
    result = run_user_errors(fperm_curves, config, data, spec, progress=progress)
    click.echo(format_fperm_curves(result), err=json_stdout)
    _write_out(result, out_dir, "fperm_curve.json")
    emit_json(result, json_out, json_stdout)


def _write_out(result: dict, out_dir: str | None, name: str) -> None:
    """--out DIR: the JSON and every plot the result supports."""
    if out_dir is None:
        return
    from pathlib import Path

    from shark.report.fperm_plots import write_fperm_plots

    plots = write_fperm_plots(result, out_dir)
    result["plots"] = plots
    emit_json(result, str(Path(out_dir) / name), False)
    for what, path in plots.items():
        click.echo(f"{what} plot written to {path}", err=True)
