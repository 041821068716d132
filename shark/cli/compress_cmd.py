"""`shark compress`: train on Ray, then prune fields with F-Permutation (Algorithm 1) and report."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from shark.cli.common import config_option, emit_json, fail, run_user_errors
from shark.cli.options import (
    cluster_config,
    cluster_options,
    data_options,
    data_spec,
    model_options,
    quant_options,
    train_config,
)


@click.command(context_settings={"default_map": {"quant": "fq"}})  # the whole SHARK pipeline: F-Q on by default
@config_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="shark-compress", show_default=True,
              help="Report directory: report.json, the plots (compression.png, fields_kept.png, tiers.png), "
                   "and checkpoints/ unless --checkpoint-dir is given.")
@click.option("--checkpoint", "from_checkpoint", type=click.Path(file_okay=False, exists=True), default=None,
              help="Prune this trained checkpoint (a --checkpoint-dir of `shark train` or `shark compress`) instead "
                   "of training first. The model comes from it; the data options default to what it records.")
@click.option("--tag", default=None, help="With --checkpoint: the checkpoint tag (default: the newest complete one).")
@click.option("--memory-target", type=float, default=0.6, show_default=True,
              help="Stop once the embedding memory is at or below this share of the unpruned model's.")
@click.option("--auc-floor", type=float, default=0.0015, show_default=True,
              help="Largest relative held-out AUC drop accepted (0.0015 = the paper's 0.15%).")
@click.option("--fields-per-round", type=int, default=1, show_default=True, help="Fields deleted per round (f).")
@click.option("--finetune-rows", type=int, default=100_000, show_default=True,
              help="Training rows each round fine-tunes on after a deletion (the support set).")
@click.option("--score-rows", "prune_score_rows", type=int, default=50_000, show_default=True,
              help="Held-out rows F-Permutation scores the fields on, each round.")
@click.option("--max-rounds", type=int, default=40, show_default=True, help="Upper bound on rounds.")
@click.option("--curve-rows", type=int, default=30_000, show_default=True,
              help="Held-out rows (after the scoring rows) for the paper's Figure 2 on the unpruned model: AUC "
                   "against fields kept when fields are dropped in F-P's, Permutation's and random orders, no "
                   "fine-tuning (fields_kept.png). 0: skip it.")
@click.option("--random-orders", type=int, default=3, show_default=True,
              help="Random drop orders on that plot (the floor an informed order must beat).")
@click.option("--control/--no-control", default=True, show_default=True,
              help="Afterwards, fine-tune the unpruned model on the same fresh rows and compare (fine-tuning data "
                   "alone raises AUC; the control separates that from the pruning).")
@cluster_options
@data_options
@model_options
@quant_options
@click.option("--json", "json_stdout", is_flag=True, help="Print the JSON report to stdout.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress output on stderr.")
def compress(out_dir: str, from_checkpoint: str | None, tag: str | None, memory_target: float, auc_floor: float,
             fields_per_round: int, finetune_rows: int, prune_score_rows: int, max_rounds: int, curve_rows: int,
             random_orders: int, control: bool, json_stdout: bool, progress: bool, **kw) -> None:
    """The SHARK pipeline: train with F-Quantization on the shards (--quant fq by default), then run
    F-Permutation's pruning loop: score the fields in one pass across the workers, delete the least important
    tables on every shard and worker, fine-tune, evaluate; until the memory target or the AUC floor. A round below
    the floor is rolled back: the result is the last model that met it. Writes report.json and plots to --out.
    With --checkpoint, a trained model is pruned without training it again."""
    from shark.coordinator.errors import RunError
    from shark.coordinator.pruning import CompressConfig
    from shark.train.ray_run import run_ray
    from shark.train.run import format_summary

    out = Path(out_dir)
    ctx = click.get_current_context()
    explicit = {name for name in ctx.params if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    config = run_user_errors(train_config, kw, settings=True)
    spec = run_user_errors(data_spec, kw, settings=True)
    restore: dict = {}
    if from_checkpoint:  # the model and its data from the checkpoint; training is skipped
        from shark.cli.from_checkpoint import data_from_checkpoint, model_from_checkpoint, read_checkpoint_run

        try:
            doc = read_checkpoint_run(from_checkpoint, tag)
            config = model_from_checkpoint(doc, config, explicit)
            spec = data_from_checkpoint(doc, spec, explicit)
        except ValueError as exc:
            fail(str(exc))
        if (doc.get("data") or {}).get("stream") and finetune_rows:
            fail(f"{from_checkpoint} holds a stream's checkpoint: which synthetic rows its stream had read is not "
                 "recorded, so fresh fine-tuning rows cannot be chosen; use --finetune-rows 0")
        restore = {"restore_from": from_checkpoint, "restore_tag": doc["tag"]}
        if "shards" not in explicit:
            kw["shards"] = doc["num_shards"]
    elif tag:
        fail("--tag needs --checkpoint")
    if not spec.synthetic and finetune_rows:  # checked now, not after training
        fail("fine-tuning after pruning needs fresh rows, which only the synthetic source can supply here: use "
             "--finetune-rows 0 with a file")
    if not kw.get("checkpoint_dir"):  # rollback needs a checkpoint before every round
        kw["checkpoint_dir"] = str(out / "checkpoints")
    cluster = run_user_errors(cluster_config, kw, settings=True, **restore)
    cc = run_user_errors(CompressConfig, memory_target=memory_target, auc_floor=auc_floor,
                         fields_per_round=fields_per_round, finetune_rows=finetune_rows, score_rows=prune_score_rows,
                         max_rounds=max_rounds, curve_rows=curve_rows, random_orders=random_orders, control=control,
                         settings=True)
    try:
        summary = run_user_errors(run_ray, config, spec, cluster, progress=progress, compress=cc,
                                  train=not from_checkpoint)
    except RunError as exc:
        fail(str(exc))
    click.echo(format_summary(summary), err=json_stdout)
    click.echo(format_compression(summary["compression"]), err=json_stdout)
    from shark.report.writer import write_report

    try:
        written = write_report(summary, out, name="report.json")
    except ValueError as exc:
        fail(str(exc))
    if json_stdout:
        emit_json(summary, None, True)
    click.echo(f"report: {', '.join(str(p) for p in written)}", err=True)


def format_compression(c: dict) -> str:
    lines = [f"{'round':>5}  {'deleted':24}{'score':>10}{'AUC':>9}{'memory':>9}  kept"]
    for r in c["rounds"]:
        lines.append(f"{r['round']:>5}  {', '.join(r['deleted'])[:23]:24}{min(r['scores'].values()):>10.2e}"
                     f"{r['auc']:>9.4f}{r['memory_fraction']:>8.1%}  {'yes' if r['accepted'] else 'no (rolled back)'}")
    lines.append(f"stopped: {c['stop_reason']}")
    lines.append(f"result: {len(c['fields_kept'])} fields, embedding memory {c['memory_fraction']:.1%} of the unpruned "
                 f"model, held-out AUC {c['final_test']['auc']:.4f} ({c['auc_relative_change']:+.3%} vs "
                 f"{c['base']['auc']:.4f}); deleted: {', '.join(c['deleted']) or 'none'}")
    k = c.get("kept_curves") or {}
    if k.get("areas"):
        a = k["areas"]
        rnd = (f", random {a['random_mean']:.4f} (mean of {len(k['random_curves'])} orders)"
               if "random_mean" in a else "")
        lines.append(f"AUC vs fields kept on the unpruned model, no fine-tuning ({k['rows']:,} rows, "
                     f"{k['evaluated_on']}), area: F-P {a['fperm-abs']:.4f}, Permutation T=1 "
                     f"{a['permutation-T1']:.4f}{rnd}")
    elif k.get("skipped"):
        lines.append(f"AUC vs fields kept: skipped ({k['skipped']})")
    if c.get("control"):
        k = c["control"]
        lines.append(f"control: the unpruned model fine-tuned on the same {k['finetune_rows']:,} fresh rows: held-out "
                     f"AUC {k['auc']:.4f}; the compressed model is {c['auc_relative_change_vs_control']:+.3%} from it")
    return "\n".join(lines)
