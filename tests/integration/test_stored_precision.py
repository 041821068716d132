"""Pulls in stored precision: fp16/int8 rows travel as such and decode to exactly the floats a float32 pull gives,
for at most half the bytes per row."""

from __future__ import annotations

import numpy as np

from ps.server import start_server, stop_server
from ps.store import RowStore, TableConfig
from shark.quant.stored import TIER_ABSENT
from shark.quant.tiers import TIER_FP32, TIER_INT8
from worker.client import PSClient


def test_stored_precision_pulls_equal_fp32_pulls_at_fewer_bytes() -> None:
    stores = [RowStore(), RowStore()]
    servers = [start_server(s) for s in stores]
    addrs = [f"127.0.0.1:{port}" for _, port in servers]
    try:
        cfgs = [TableConfig("q8", 16, 10_000, quant="int8"), TableConfig("q16", 16, 10_000, quant="fp16"),
                TableConfig("f32", 16, 10_000)]
        rng = np.random.default_rng(0)
        ids = {c.name: np.unique(rng.integers(0, 10_000, 3000)) for c in cfgs}
        with PSClient(addrs, "w", staleness=0) as plain, PSClient(addrs, "s", stored_precision=True) as packed:
            plain.create_tables(cfgs)
            for step in range(3):  # trained rows: updates written back into fp16/int8 with stochastic rounding
                plain.push({t: (i, rng.standard_normal((i.size, 16)).astype(np.float32), np.ones(i.size, np.uint32),
                                np.zeros(i.size, np.uint32)) for t, i in ids.items()})
            plain.flush()
            for read_only in (False, True):
                more = {t: np.union1d(i, np.arange(20)) for t, i in ids.items()}  # some absent rows as well
                a = plain.pull(more, read_only=read_only)
                b = packed.pull(more, read_only=read_only)
                for t in more:
                    assert np.array_equal(a[t], b[t]), t
            per_table = {}
            for c in cfgs:
                with PSClient(addrs, f"m-{c.name}", stored_precision=True) as one:
                    one.pull({c.name: ids[c.name]})
                    per_table[c.name] = one.stats()["pull_bytes_per_row"]
        fp32 = per_table["f32"]
        assert fp32 >= 64  # 16 float32 per row
        assert per_table["q8"] <= 0.5 * fp32 and per_table["q16"] <= 0.6 * fp32, per_table
    finally:
        for server, _ in servers:
            stop_server(server)


def test_pull_tiers_reports_each_rows_tier_and_absent_rows_without_creating_them() -> None:
    stores = [RowStore(), RowStore()]
    servers = [start_server(s) for s in stores]
    try:
        with PSClient([f"127.0.0.1:{port}" for _, port in servers], "tiers-w", stored_precision=True) as client:
            client.create_tables([TableConfig("q8", 16, 10_000, quant="int8"), TableConfig("f32", 16, 10_000)])
            made = np.arange(0, 200, 2)
            client.pull({"q8": made, "f32": made})  # creates these rows
            asked = np.arange(200)
            rows_before = sum(s.stats(t)["rows"] for s in stores for t in ("q8", "f32"))
            tiers = client.pull_tiers({"q8": asked, "f32": asked})
            assert sum(s.stats(t)["rows"] for s in stores for t in ("q8", "f32")) == rows_before  # none created
        created = np.isin(asked, made)
        assert (tiers["q8"][created] == TIER_INT8).all() and (tiers["q8"][~created] == TIER_ABSENT).all()
        assert (tiers["f32"][created] == TIER_FP32).all() and (tiers["f32"][~created] == TIER_ABSENT).all()
    finally:
        for server, _ in servers:
            stop_server(server)
