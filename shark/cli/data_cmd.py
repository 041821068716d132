"""`shark data ...`: make and inspect datasets."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shark.cli.common import config_option, run_user_errors


@click.group()
def data() -> None:
    """Make and inspect datasets."""


@data.command()
@config_option
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--rows", type=int, default=1_000_000, show_default=True, help="Rows to write.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True,
              help="Which of the generator's two disjoint streams to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Generator seed (same seed, same data).")
@click.option("--truth", type=click.Path(dir_okay=False), default=None,
              help="Also write the ground truth as JSON: field roles, the true field ranking, teacher AUC.")
@click.option("--teacher-rows", type=int, default=200_000, show_default=True,
              help="Held-out rows used to measure the teacher's AUC for --truth.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def synth(out: str, rows: int, split: str, seed: int, truth: str | None, teacher_rows: int, progress: bool) -> None:
    """Write synthetic Criteo-like data to OUT in the Criteo TSV format (gzip if OUT ends in .gz).

    Label, 13 integer counts, 26 categorical values as 8 hex characters; empty = missing. Labels come from a
    hidden teacher with known field importances (some strong, some weak, some pure noise, some duplicates).
    """
    from shark.data.synthetic import SynthConfig, SyntheticCriteo

    if rows < 1:
        raise click.BadParameter("--rows must be >= 1")
    gen = run_user_errors(SyntheticCriteo, SynthConfig(seed=seed), settings=True)
    written = gen.write_tsv(out, rows, split=split, progress=progress)
    click.echo(f"wrote {written:,} rows to {out}")
    if truth:
        doc = {"seed": seed, "teacher_auc": gen.teacher_auc(teacher_rows, split="test"),
               "teacher_auc_rows": teacher_rows,
               "fields": [f.to_dict() if hasattr(f, "to_dict") else vars(f) for f in gen.field_ranking()]}
        Path(truth).write_text(json.dumps(doc, indent=2) + "\n")
        click.echo(f"ground truth written to {truth}")
