"""Algorithm 1's decisions, without a cluster."""

from __future__ import annotations

import pytest

from shark.coordinator.pruning import CompressConfig, PruningPolicy


def test_policy_deletes_the_lowest_and_stops_at_the_memory_target() -> None:
    p = PruningPolicy(CompressConfig(memory_target=0.6, fields_per_round=2), base_auc=0.8, base_memory=1000)
    assert p.stop_reason(memory=1000, n_fields=27) is None
    assert p.victims(["dense", "C1", "C2", "C3"]) == ["C3", "C2"]  # least important first
    assert "memory target" in p.stop_reason(memory=600, n_fields=25)
    assert "two" in p.stop_reason(memory=900, n_fields=3)  # 3 - 2 < 2 fields left


def test_policy_floor_is_relative_and_rounds_are_bounded() -> None:
    p = PruningPolicy(CompressConfig(auc_floor=0.0015, max_rounds=2), base_auc=0.8, base_memory=1000)
    assert p.auc_floor == pytest.approx(0.8 * (1 - 0.0015))
    assert p.accept(0.7989) and not p.accept(0.7987)
    p.victims(["a", "b", "c"])
    p.victims(["a", "b"])
    assert "max_rounds" in p.stop_reason(memory=999, n_fields=10)


@pytest.mark.parametrize("bad", [dict(memory_target=0), dict(memory_target=1.5), dict(auc_floor=-0.1),
                                 dict(fields_per_round=0), dict(score_rows=0)])
def test_compress_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        CompressConfig(**bad)
