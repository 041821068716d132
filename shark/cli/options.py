"""Option groups shared by `shark train` and `shark bench train`, and their conversion to config objects."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from ps.security import SecurityConfig, SecurityError
from shark.cli.common import parse_ints
from shark.coordinator.config import ClusterConfig
from shark.data.bad_lines import BadLinePolicy
from shark.data.schema import Schema
from shark.train.config import TrainConfig
from shark.train.data_plan import DataSpec

_DEFAULT = TrainConfig()


def _apply(options: list[Callable]) -> Callable:
    def decorate(fn: Callable) -> Callable:
        for opt in reversed(options):
            fn = opt(fn)
        return fn
    return decorate


model_options = _apply([
    click.option("--batch-size", type=int, default=_DEFAULT.batch_size, show_default=True,
                 help="Examples per training step."),
    click.option("--epochs", type=int, default=_DEFAULT.epochs, show_default=True,
                 help="Passes over the training data. 1 is online learning; a second pass over the same rows usually "
                      "overfits rare ids (held-out AUC falls)."),
    click.option("--embedding-dim", type=int, default=_DEFAULT.embedding_dim, show_default=True,
                 help="Embedding vector size of every table (and of the bottom MLP's output)."),
    click.option("--bottom", default=",".join(map(str, _DEFAULT.bottom)), show_default=True,
                 help="Bottom-MLP hidden sizes, comma-separated; it always ends in --embedding-dim."),
    click.option("--top", default=",".join(map(str, _DEFAULT.top)), show_default=True,
                 help="Top-MLP hidden sizes, comma-separated; it always ends in one logit."),
    click.option("--lr-dense", type=float, default=_DEFAULT.lr_dense, show_default=True,
                 help="Adam learning rate of the MLPs."),
    click.option("--lr-embedding", type=float, default=_DEFAULT.lr_embedding, show_default=True,
                 help="Row-wise Adagrad learning rate of the embedding tables."),
    click.option("--capacity", type=int, default=_DEFAULT.capacity, show_default=True,
                 help="Rows per embedding table: categorical values are hashed into this many rows."),
    click.option("--table-capacity", multiple=True, metavar="TABLE=ROWS",
                 help="Capacity of one table, overriding --capacity (repeatable), e.g. C3=1048576."),
    click.option("--seed", type=int, default=_DEFAULT.seed, show_default=True,
                 help="Seed of model initialisation and hashing."),
    click.option("--threads", type=int, default=_DEFAULT.threads, show_default=True,
                 help="torch threads for the training step."),
])

rounding_option = click.option(
    "--rounding", type=click.Choice(["stochastic", "nearest"]), default=_DEFAULT.rounding, show_default=True,
    help="How updates are written back into fp16/int8 rows (every low-precision method: the uniform baselines, "
         "F-Q and MPE); 'nearest' is the paper's deterministic rounding.")

quant_options = _apply([
    click.option("--quant", type=click.Choice(["none", "fq", "fp16", "int8", "mpe"]), default=_DEFAULT.quant,
                 show_default=True,
                 help="How the shards store embedding rows: 'fq' = F-Quantization (fp32/fp16/int8 per row by a "
                      "click-frequency priority, the paper's); 'fp16'/'int8' = uniform baselines; 'mpe' = every row "
                      "in --mpe-low plus an fp32 cache of the most pushed rows (the MPE baseline); 'none' = fp32."),
    click.option("--memory-budget", type=float, default=_DEFAULT.memory_budget, show_default=True,
                 help="With --quant fq or mpe: keep each table within this share of its all-fp32 bytes (every byte "
                      "counted), e.g. 0.5; fq: 0 = fixed thresholds --t8/--t16."),
    click.option("--mpe-cache", type=float, default=_DEFAULT.mpe_cache, show_default=True,
                 help="With --quant mpe and no budget: share of each table's rows cached in fp32."),
    click.option("--mpe-low", type=click.Choice(["int8", "fp16"]), default=_DEFAULT.mpe_low, show_default=True,
                 help="With --quant mpe: the precision every row is stored in."),
    click.option("--t8", type=float, default=_DEFAULT.t8, show_default=True,
                 help="With --quant fq and no budget: rows with priority below this are int8."),
    click.option("--t16", type=float, default=_DEFAULT.t16, show_default=True,
                 help="With --quant fq and no budget: rows with priority below this (and >= t8) are fp16."),
    click.option("--retier-every", type=int, default=_DEFAULT.retier_every, show_default=True,
                 help="Pushes to a table between two re-tierings of its rows (mpe: two cache refreshes)."),
    rounding_option,
])

data_options = _apply([
    click.option("--data", "data_source", default="synthetic", show_default=True,
                 help="'synthetic' (the built-in Criteo-like generator) or a file: Criteo TSV "
                      "(label, I1-I13, C1-C26, no header), CSV/TSV with a header, or Parquet; .gz is fine."),
    click.option("--format", "fmt", type=click.Choice(["auto", "criteo", "csv", "tsv", "parquet"]), default="auto",
                 show_default=True, help="File format; 'auto' looks at the extension and the first line."),
    click.option("--label", default=None, help="Label column (CSV/TSV/Parquet). Default: 'label'."),
    click.option("--dense", default=None, help="Dense (numeric) columns, comma-separated. Default: none."),
    click.option("--categorical", default=None,
                 help="Categorical columns, comma-separated. Default: every column but the label and dense ones."),
    click.option("--test-data", default=None, help="A separate held-out file (same format) instead of a split."),
    click.option("--test-fraction", type=float, default=0.2, show_default=True,
                 help="Share of a file's rows held out, chosen by a seeded hash of the line number."),
    click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the train/held-out split."),
    click.option("--train-rows", type=int, default=1_000_000, show_default=True,
                 help="Synthetic data: training rows."),
    click.option("--test-rows", type=int, default=200_000, show_default=True,
                 help="Synthetic data: held-out rows."),
    click.option("--synth-seed", type=int, default=0, show_default=True, help="Synthetic data: generator seed."),
    click.option("--on-bad-line", type=click.Choice(["skip", "stop"]), default="skip", show_default=True,
                 help="Malformed lines: skip them (counted, reported with line numbers) or stop at the first."),
    click.option("--max-bad-fraction", type=float, default=0.01, show_default=True,
                 help="With --on-bad-line skip: stop when more than this share of lines is malformed."),
])


def train_config(kw: dict[str, Any]) -> TrainConfig:
    caps = []
    for item in kw.pop("table_capacity", ()) or ():
        name, sep, rows = str(item).partition("=")
        if not sep or not rows.strip().isdigit():
            raise click.BadParameter(f"--table-capacity expects TABLE=ROWS, got {item!r}")
        caps.append((name.strip(), int(rows)))
    return TrainConfig(
        batch_size=kw.pop("batch_size"), epochs=kw.pop("epochs"), embedding_dim=kw.pop("embedding_dim"),
        bottom=parse_ints(kw.pop("bottom"), "--bottom"), top=parse_ints(kw.pop("top"), "--top"),
        lr_dense=kw.pop("lr_dense"), lr_embedding=kw.pop("lr_embedding"), capacity=kw.pop("capacity"),
        capacities=tuple(caps), seed=kw.pop("seed"), threads=kw.pop("threads"),
        **{k: kw.pop(k) for k in ("quant", "memory_budget", "t8", "t16", "retier_every", "rounding", "mpe_cache",
                                    "mpe_low") if k in kw},
    )


def data_spec(kw: dict[str, Any]) -> DataSpec:
    label, dense, categorical = kw.pop("label"), kw.pop("dense"), kw.pop("categorical")
    schema = None
    if label or dense or categorical:
        schema = _schema_from_options(kw["data_source"], kw["fmt"], label, dense, categorical)
    return DataSpec(
        source=kw.pop("data_source"), fmt=kw.pop("fmt"), schema=schema, test_path=kw.pop("test_data"),
        test_fraction=kw.pop("test_fraction"), split_seed=kw.pop("split_seed"), train_rows=kw.pop("train_rows"),
        test_rows=kw.pop("test_rows"), synth_seed=kw.pop("synth_seed"),
        bad_lines=BadLinePolicy(on_error=kw.pop("on_bad_line"), max_fraction=kw.pop("max_bad_fraction")),
    )


def _schema_from_options(path: str, fmt: str, label: str | None, dense: str | None,
                         categorical: str | None) -> Schema:
    from shark.data.source import infer_schema

    def split(text: str | None) -> tuple[str, ...]:
        return tuple(c.strip() for c in (text or "").split(",") if c.strip())

    label = label or "label"
    dense_cols = split(dense)
    if categorical:
        cat_cols = split(categorical)
    else:
        header = infer_schema(path, fmt)
        cols = [header.label, *header.dense, *header.categorical]
        cat_cols = tuple(c for c in cols if c != label and c not in dense_cols)
    return Schema(label=label, dense=dense_cols, categorical=cat_cols)


_CLUSTER = ClusterConfig()

cluster_options = _apply([
    click.option("--address", default=None,
                 help="Ray cluster to join ('auto' or host:port; RAY_ADDRESS works too). Default: start a local Ray "
                      "instance on loopback for this run."),
    click.option("--shards", type=int, default=_CLUSTER.shards, show_default=True,
                 help="Parameter-server shard actors."),
    click.option("--workers", type=int, default=_CLUSTER.workers, show_default=True, help="Training worker actors."),
    click.option("--staleness", type=int, default=_CLUSTER.staleness, show_default=True,
                 help="Push steps a worker may have in flight before it waits for a reply (0 = synchronous)."),
    click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
                 help="Write checkpoints here (every shard, then RUN.json last)."),
    click.option("--checkpoint-every", type=int, default=_CLUSTER.checkpoint_every, show_default=True,
                 help="Batches per worker between checkpoints; 0 = one checkpoint at the end."),
    click.option("--score-fields", "score_rows", type=int, default=_CLUSTER.score_rows, show_default=True,
                 metavar="ROWS",
                 help="After evaluation, rank the fields with F-Permutation's one-pass Taylor score over this many "
                      "held-out rows, computed across the workers (0 = off)."),
    click.option("--worker-threads", type=int, default=_CLUSTER.worker_threads, show_default=True,
                 help="torch threads per worker actor."),
    click.option("--shard-cpus", type=float, default=_CLUSTER.shard_cpus, show_default=True,
                 help="Ray CPUs requested per shard actor."),
    click.option("--worker-cpus", type=float, default=_CLUSTER.worker_cpus, show_default=True,
                 help="Ray CPUs requested per worker actor."),
    click.option("--placement", type=click.Choice(["spread", "pack"]), default=_CLUSTER.placement,
                 show_default=True,
                 help="How the placement group lays shards and workers on the cluster's nodes: 'spread' across nodes "
                      "(soft: a one-node cluster still works) or 'pack' onto as few nodes as possible."),
    click.option("--shard-resources", default=None, metavar="JSON",
                 help='Custom Ray resources per shard actor, e.g. \'{"ps": 1}\' to put shards only on nodes started '
                      'with `ray start --resources \'{"ps": 4}\'`.'),
    click.option("--worker-resources", default=None, metavar="JSON",
                 help="Custom Ray resources per worker actor (like --shard-resources)."),
    # Data-plane security (ps.security.SecurityConfig). Paths are read on the node where each actor runs.
    click.option("--ps-token-file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
                 help="Shards accept only calls carrying this bearer token (a file holding it, >= 16 printable "
                      "characters; readable at this path on every node); workers send it."),
    click.option("--ps-token-env", default=None, metavar="NAME",
                 help="Like --ps-token-file, from the environment variable NAME on each node (the name, not "
                      "the token)."),
    click.option("--ps-tls-cert", type=click.Path(dir_okay=False), default=None, metavar="PATH",
                 help="Shards serve TLS with this PEM certificate (chain); its SANs must cover the shard node "
                      "addresses, or use --ps-tls-server-name. Needs --ps-tls-key and --ps-tls-ca."),
    click.option("--ps-tls-key", type=click.Path(dir_okay=False), default=None, metavar="PATH",
                 help="Private key (PEM) of --ps-tls-cert."),
    click.option("--ps-tls-ca", type=click.Path(dir_okay=False), default=None, metavar="PATH",
                 help="CA bundle (PEM): workers verify the shards against it, and with --ps-client-cert the "
                      "shards accept only client certificates it signed (mutual TLS)."),
    click.option("--ps-client-cert", type=click.Path(dir_okay=False), default=None, metavar="PATH",
                 help="Mutual TLS: the certificate (PEM) workers and the coordinator present; shards then "
                      "require one signed by --ps-tls-ca. Needs --ps-client-key."),
    click.option("--ps-client-key", type=click.Path(dir_okay=False), default=None, metavar="PATH",
                 help="Private key (PEM) of --ps-client-cert."),
    click.option("--ps-tls-server-name", default=None, metavar="NAME",
                 help="The name workers expect in the shard certificate instead of the shard's IP."),
])


def security_config(kw: dict[str, Any]) -> SecurityConfig:
    """The --ps-* options -> SecurityConfig (mutual TLS exactly when a client certificate is given)."""
    def path(key: str) -> str | None:
        value = kw.pop(key, None)
        return os.path.abspath(value) if value else None

    client_cert = path("ps_client_cert")
    try:
        return SecurityConfig(token_file=path("ps_token_file"), token_env=kw.pop("ps_token_env", None) or None,
                              tls_cert=path("ps_tls_cert"), tls_key=path("ps_tls_key"), tls_ca=path("ps_tls_ca"),
                              require_client_cert=client_cert is not None, client_cert=client_cert,
                              client_key=path("ps_client_key"),
                              tls_server_name=kw.pop("ps_tls_server_name", None) or None)
    except SecurityError as exc:
        raise click.BadParameter(str(exc)) from None


def _resources(text: str | None, option: str) -> dict[str, float]:
    import json

    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{option} expects a JSON object like '{{\"ps\": 1}}': {exc}") from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"{option} expects a JSON object like '{{\"ps\": 1}}', got {text!r}")
    return value


def cluster_config(kw: dict[str, Any], **extra: Any) -> ClusterConfig:
    security = security_config(kw)
    try:
        security.check_cluster()
    except SecurityError as exc:
        raise click.BadParameter(str(exc)) from None
    return ClusterConfig(security=security,
        address=kw.pop("address") or os.environ.get("RAY_ADDRESS") or None, shards=kw.pop("shards"),
        workers=kw.pop("workers"), staleness=kw.pop("staleness"), checkpoint_dir=kw.pop("checkpoint_dir"),
        checkpoint_every=kw.pop("checkpoint_every"), worker_threads=kw.pop("worker_threads"),
        score_rows=kw.pop("score_rows"),
        shard_cpus=kw.pop("shard_cpus"), worker_cpus=kw.pop("worker_cpus"), placement=kw.pop("placement"),
        shard_resources=_resources(kw.pop("shard_resources"), "--shard-resources"),
        worker_resources=_resources(kw.pop("worker_resources"), "--worker-resources"), **extra)
