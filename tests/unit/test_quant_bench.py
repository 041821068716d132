"""`shark bench quant`'s pure parts: method parsing, the per-seed pairing with fp32, and its plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from shark.bench.quant_bench import QuantBenchSpec, QuantMethod, at_budget, format_table, summarise
from shark.report.quant_plots import plot_quant


def test_methods_parse_and_bad_ones_are_named() -> None:
    assert QuantMethod.parse("fq:0.4") == QuantMethod("fq:0.4", "fq", 0.4)
    assert QuantMethod.parse("fp32") == QuantMethod("fp32", "none", 0.0)
    for bad, msg in (("fp8", "unknown method"), ("int8:0.5", "only fq"), ("fq:x", "number"), ("fq:1.5", "in")):
        with pytest.raises(ValueError, match=msg):
            QuantMethod.parse(bad)
    with pytest.raises(ValueError, match="include fp32"):
        QuantBenchSpec(methods=(QuantMethod.parse("fq:0.5"),))
    with pytest.raises(ValueError, match="twice"):
        QuantBenchSpec(methods=(QuantMethod.parse("fp32"), QuantMethod.parse("fp32")))


def _run(method: str, quant: str, seed: int, auc: float, total: int, payload: int) -> dict:
    return {"method": method, "quant": quant, "budget": 0.0, "seed": seed, "auc": auc, "logloss": 0.45,
            "bytes": total, "payload_bytes": payload, "rows": 10, "rows_by_tier": {}, "bytes_by_kind": {},
            "examples_per_s": 1000.0, "seconds": 1.0}


def test_summary_pairs_each_seed_with_its_fp32_run(tmp_path: Path) -> None:
    methods = (QuantMethod.parse("fp32"), QuantMethod.parse("fq:0.5"))
    runs = [_run("fp32", "none", 0, 0.790, 1000, 640), _run("fp32", "none", 1, 0.780, 2000, 1280),
            _run("fq:0.5", "fq", 0, 0.789, 500, 200), _run("fq:0.5", "fq", 1, 0.7805, 900, 320)]
    fp32, fq = summarise(runs, methods)
    assert fp32["auc_delta_vs_fp32_mean"] == 0 and fp32["memory_fraction_mean"] == 1
    assert fq["auc_delta_vs_fp32_mean"] == pytest.approx((-0.001 + 0.0005) / 2)
    assert fq["auc_delta_vs_fp32_min"] == pytest.approx(-0.001)
    assert fq["memory_fraction_mean"] == pytest.approx((0.5 + 0.45) / 2)
    assert fq["payload_fraction_mean"] == pytest.approx((200 / 640 + 320 / 1280) / 2)
    result = {"runs": runs, "methods": [fp32, fq]}
    assert "fq:0.5" in format_table(result)
    plot_quant(result, tmp_path / "q.png")
    assert (tmp_path / "q.png").stat().st_size > 10_000


def test_at_budget_compares_fq_with_every_method_that_fits() -> None:
    methods = tuple(QuantMethod.parse(m) for m in ("fp32", "fp16", "int8", "fq:0.5", "fq:0.4", "mpe:0.4"))
    runs = [_run("fp32", "none", 0, 0.790, 1000, 640), _run("fp16", "fp16", 0, 0.7899, 550, 320),
            _run("int8", "int8", 0, 0.7895, 343, 160), _run("fq:0.5", "fq", 0, 0.7898, 498, 240),
            _run("fq:0.4", "fq", 0, 0.7894, 399, 170), _run("mpe:0.4", "mpe", 0, 0.7890, 401, 180)]
    for r in runs:
        r["budget"] = float(r["method"].split(":")[1]) if ":" in r["method"] else 0.0
    rows = {r["budget"]: r for r in at_budget(summarise(runs, methods))}
    assert set(rows) == {0.5, 0.4}
    assert set(rows[0.5]["methods"]) == {"int8", "fq:0.5", "fq:0.4", "mpe:0.4"}  # fp16 (55%) does not fit
    assert rows[0.5]["fq_at_least"] == {"int8": True, "fq:0.4": True, "mpe:0.4": True}
    assert rows[0.4]["fq_at_least"] == {"int8": False, "mpe:0.4": True}  # 0.7894 < int8's 0.7895
