"""`shark`: train, make data, benchmark."""

from __future__ import annotations

import click

from shark import __version__
from shark.cli.bench_cmd import bench
from shark.cli.bench_load_cmd import load
from shark.cli.bench_quant_cmd import quant
from shark.cli.compress_cmd import compress
from shark.cli.data_cmd import data
from shark.cli.status_cmd import status
from shark.cli.train_cmd import evaluate, train


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="shark")
def cli() -> None:
    """SHARK-PS: train recommendation models (DLRM) that compress themselves while they train.

    Start with `shark train`: it trains on synthetic Criteo-like data and prints held-out AUC beside the
    synthetic teacher's own AUC (the best any model can do).
    """


cli.add_command(train)
cli.add_command(evaluate)
cli.add_command(compress)
cli.add_command(data)
bench.add_command(quant)
bench.add_command(load)
cli.add_command(bench)
cli.add_command(status)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
