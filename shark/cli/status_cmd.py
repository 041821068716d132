"""`shark status`: the training runs on a Ray cluster right now (phase, layout, examples/s, rows per tier)."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from shark.cli.common import fail

TIER_ORDER = ("fp32", "fp16", "int8")


def collect_status(timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Status of every named SHARK coordinator on the connected cluster (namespace "shark"). A coordinator
    that does not answer within timeout_s is listed with an error instead."""
    import ray

    from shark.train.ray_run import COORDINATOR_PREFIX, NAMESPACE

    runs = []
    names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                   if a.get("namespace") == NAMESPACE and a["name"].startswith(COORDINATOR_PREFIX))
    for name in names:
        entry: dict[str, Any] = {"actor": name}
        try:
            actor = ray.get_actor(name, namespace=NAMESPACE)
            try:
                entry.update(ray.get(actor.status.remote(), timeout=timeout_s))
            except AttributeError:  # a coordinator from a version without status(): progress only
                entry.update(ray.get(actor.progress.remote(), timeout=timeout_s))
        except Exception as exc:  # noqa: BLE001 - a dying run: say so, keep listing the others
            entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        runs.append(entry)
    return runs


def format_status(runs: list[dict[str, Any]], address: str) -> str:
    if not runs:
        return f"no SHARK training runs on the Ray cluster at {address}"
    lines = []
    for r in runs:
        lines.append(f"run {r.get('run_id', '?')} ({r['actor']})")
        if "error" in r:
            lines.append(f"  unreachable: {r['error']}")
            continue
        note = f" ({r['note']})" if r.get("note") else ""
        lines.append(f"  phase      {r.get('phase', '?')}{note}   epoch {r.get('epoch', 0)}")
        if "shards" in r:
            nodes = sorted({n for n in r.get("shard_nodes", []) if n})
            lines.append(f"  shards     {r['shards']} at {', '.join(r.get('addresses', [])) or '-'}"
                         f"  (nodes: {', '.join(nodes) or '-'})")
            lines.append(f"  workers    {r['workers']} on {len({n for n in r.get('worker_nodes', []) if n})} "
                         f"node(s), placement {r.get('placement', '?')}")
        eps = r.get("examples_per_second")
        rate = f"   {eps:,.0f} examples/s" if eps is not None else ""  # 0 early in training is still a figure
        auc = f"   recent AUC {r['recent_auc']:.4f}" if "recent_auc" in r else ""
        lines.append(f"  examples   {int(r.get('examples', 0)):,}{rate}{auc}")
        tables = r.get("tables")
        if tables:
            total = sum(t["rows"] for t in tables.values())
            tiers: dict[str, int] = {}
            for t in tables.values():
                for k, v in t["rows_by_tier"].items():
                    tiers[k] = tiers.get(k, 0) + v
            lines.append(f"  rows       {total:,} in {len(tables)} tables   by tier: {_tiers(tiers)}")
            for name in sorted(tables, key=lambda n: -tables[n]["rows"]):
                t = tables[name]
                lines.append(f"    {name:<10} {t['rows']:>12,}   {_tiers(t['rows_by_tier'])}")
    return "\n".join(lines)


def _tiers(by_tier: dict[str, int]) -> str:
    keys = [k for k in TIER_ORDER if k in by_tier] + sorted(k for k in by_tier if k not in TIER_ORDER)
    return "  ".join(f"{k} {by_tier[k]:,}" for k in keys) or "-"


@click.command()
@click.option("--address", default=None,
              help="The Ray cluster (host:port of the head's GCS, or 'auto'; RAY_ADDRESS works too).")
@click.option("--json", "json_stdout", is_flag=True, help="Print the status as JSON.")
def status(address: str | None, json_stdout: bool) -> None:
    """Show the SHARK training runs on a Ray cluster: phase, shards and workers (and their nodes), examples/s,
    per-table rows and rows per tier. Token auth: the same RAY_AUTH_TOKEN (or ~/.ray/auth_token) as the cluster."""
    from shark.cluster.ray_runtime import RayUnreachable, start_ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address or address == "local":
        fail("shark status needs --address host:port (or RAY_ADDRESS) of a running Ray cluster")
    try:
        handle = start_ray(address)
    except RayUnreachable as exc:
        fail(str(exc))
    try:
        runs = collect_status()
    finally:
        handle.shutdown()
    if json_stdout:
        click.echo(json.dumps(runs, indent=2, default=str))
    else:
        click.echo(format_status(runs, address))
