"""F-Permutation plots: each function writes a non-empty PNG from the bench/score JSON dicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shark.fperm import FieldScores, KeptCurve
from shark.report.fperm_plots import cost_plot, kept_curves_plot, ranking_plot, write_fperm_plots

PNG = b"\x89PNG\r\n\x1a\n"


def _curve(method: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    kept = np.arange(6, 1, -1)
    auc = np.sort(rng.uniform(0.6, 0.8, kept.size))[::-1]
    return KeptCurve(method, tuple(f"C{i}" for i in range(4)), kept, auc, float(auc.mean())).to_json()


def _result() -> dict:
    fields = ("dense", "C1", "C2", "C3", "C4", "C5")
    scores = {m: FieldScores(m, fields, np.array([5.0, 4, 3, 2, 1, 0]) + s).to_json()
              for s, m in enumerate(("fperm-abs", "permutation-T1"))}
    roles = ("strong", "strong", "weak", "duplicate", "noise", "noise")
    return {"data": {"source": "synthetic"}, "scores": scores,
            "truth": {f: {"role": r, "importance": 0.1} for f, r in zip(fields, roles)},
            "spearman_with_teacher": {"fperm-abs": 0.9},
            "curves": {m: _curve(m, i) for i, m in enumerate(scores)},
            "random_curves": [_curve("random-0", 7), _curve("random-1", 8)]}


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


def test_ranking_and_curve_plots_write_pngs(tmp_path: Path):
    r = _result()
    assert _is_png(ranking_plot(r, tmp_path / "a" / "ranking.png"))
    del r["truth"]  # a file's result: no teacher, one colour
    assert _is_png(ranking_plot(r, tmp_path / "ranking_plain.png", "permutation-T1"))
    assert _is_png(kept_curves_plot(r, tmp_path / "curves.png"))
    with pytest.raises(KeyError, match="no scores"):
        ranking_plot(r, tmp_path / "x.png", "exact")
    assert not (tmp_path / "x.png").exists()


def test_cost_plot_and_dispatch(tmp_path: Path):
    bench = {"fields": {"1": 27, "4": 105}, "spec": {"rows": 2048},
             "seconds_median": {"fperm-abs": {"1": 0.1, "4": 1.0}, "permutation-T1": {"1": 0.8, "4": 30.0},
                                "forward-backward": {"1": 0.09, "4": 0.9}}}
    assert _is_png(cost_plot(bench, tmp_path / "cost.png"))
    bench["cost_in_forward_backward_passes"] = {k: {m: t / bench["seconds_median"]["forward-backward"][m]
                                                    for m, t in per.items()}
                                                for k, per in bench["seconds_median"].items()}
    assert _is_png(cost_plot(bench, tmp_path / "cost_two_panels.png"))
    bench["fields_scored_on_one_model"] = {
        "model_fields": 105, "fields_scored": {"1": 27, "4": 105},
        "seconds_median": {"fperm-abs": {"1": 1.0, "4": 1.02}, "permutation-T1": {"1": 8.0, "4": 30.0},
                           "forward-backward": {"1": 0.9, "4": 0.9}}}
    assert _is_png(cost_plot(bench, tmp_path / "cost_three_panels.png"))
    written = write_fperm_plots({**_result(), **bench}, tmp_path / "all")
    assert set(written) == {"ranking", "auc_vs_fields_kept", "cost"}
    assert all(_is_png(Path(p)) for p in written.values())
