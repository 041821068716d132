"""Save with 4 shards, restore with 3 and with 5 (`shark evaluate --shards N`): every row present once, the same
values, so the held-out AUC is the saved run's exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from shark.cli.main import cli


def _run(args: list[str], out: Path) -> dict:
    res = CliRunner().invoke(cli, [*args, "--no-progress", "--json-out", str(out)])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def _rows(summary: dict) -> dict[str, int]:
    """Rows per table summed over the shards, the dense table included."""
    tables = {name: t["rows"] for name, t in summary["model"]["embedding_memory"]["tables"].items()}
    return {**tables, "__dense__": summary["model"]["dense_table"]["rows"]}


@pytest.mark.parametrize("quant", [
    # F-Q with a short retier period: rows in all three tiers, priorities at different epochs on each shard
    ["--quant", "fq", "--retier-every", "7"],
    # MPE: int8 rows, the most pushed also in the fp32 cache (both copies move with the row)
    ["--quant", "mpe", "--mpe-cache", "0.2", "--retier-every", "7"]], ids=["fq", "mpe"])
def test_save_with_4_restore_with_3_and_5(ray_session, tmp_path: Path, quant: list[str]) -> None:
    ckpt = tmp_path / "ckpt"
    common = ["--train-rows", "8000", "--test-rows", "3000", "--workers", "1"]  # one torch actor per run: fast
    saved = _run(["train", *common, "--shards", "4", *quant, "--checkpoint-dir", str(ckpt)], tmp_path / "t.json")
    tag = saved["checkpoints"][-1]["tag"]
    tiers = saved["model"]["embedding_memory"]["rows_by_tier"]
    assert sum(v > 0 for v in tiers.values()) == (3 if quant[1] == "fq" else 2), tiers
    for shards in (3, 5):
        got = _run(["evaluate", "--checkpoint", str(ckpt), "--shards", str(shards), *common],
                   tmp_path / f"e{shards}.json")
        assert got["restored_from"]["tag"] == tag and len(got["cluster"]["addresses"]) == shards
        assert all(i["restored_tag"] == tag for i in got["cluster"]["shards_info"])
        assert got["test"]["examples"] == saved["test"]["examples"]
        assert got["test"]["auc"] == saved["test"]["auc"]  # exactly: every row and dense weight as saved
        assert got["test"]["logloss"] == saved["test"]["logloss"]
        assert _rows(got) == _rows(saved)
        assert got["model"]["embedding_memory"]["rows_by_tier"] == tiers  # each row kept its stored tier
