"""F-Permutation acceptance on synthetic data with a known field ranking, and `shark bench fperm`.

Setup: the DEFAULT synthetic config (what `shark train` uses), the local engine (TrainConfig defaults, batch 512)
trained on 1M rows (as the main job trains), scored on 50k held-out rows. The truth is the teacher's permutation
importance (nats).

Measured here: Spearman with the truth 0.908 (F-P abs), 0.895 (abs-mean), -0.195 (signed), 0.807 (Permutation
T=1); F-P abs against Permutation T=1: 0.921. Over model seeds 0/1/2, F-P abs: 0.908/0.854/0.873 (1M rows),
0.872/0.839/0.878 (500k rows).

Bottom group: the k lowest positions of the ranking, k = 6, the fields the teacher ignores whose values and
missingness are independent of the label and of every other field (the noise fields C8, C15, C20, C21, C22, C26).
The teacher gives the four duplicates importance 0 as well, but a duplicate carries its source's information (the
model may lean on it instead of its source), so it is not required to rank low; with them the truth's zero group
is the bottom 10. Every noise field ranks in the bottom 6 for this test's model (seed 0; the lowest other field's
score / the highest noise field's: 1.08) and for seed 2; for seed 1 C21 ranks one place above C3 (position 6 from
the bottom). The fields that come between are the faintest weak fields (C3, C4, C24: 0.0012, 0.0004, 0.0002 nats,
with 5M, 2M and 286k values) and the duplicates: the trained model barely uses them, so its own permutation
importance (Permutation with T = 5, the quantity F-P estimates) ranks them among the noise too (the highest noise
field at position 6/5/6 for seeds 0/1/2). At 500k rows the highest noise field is at position 7/9/6 (F-P abs) and
6/6/7 (Permutation T=5): every noise field stays within the truth's zero group (the bottom 10) in all six cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from shark.data.synthetic import SynthConfig, SyntheticCriteo
from shark.fperm import (FieldScoreAccumulator, FieldSums, PermutationConfig, TaylorConfig, auc_vs_fields_kept,
                         bottom_positions, field_means, materialise, permutation_scores, random_scores, spearman,
                         spearman_with, taylor_scores)
from shark.train.config import TrainConfig
from shark.train.local import LocalTrainer

TRAIN_ROWS, SCORE_ROWS, EVAL_ROWS = 1_000_000, 50_000, 30_000


@pytest.fixture(scope="module")
def scored():
    gen = SyntheticCriteo(SynthConfig(seed=0))
    truth = gen.field_ranking(group_dense=True)
    trainer = LocalTrainer(TrainConfig(), 13, [f"C{i}" for i in range(1, 27)])
    trainer.fit(gen.batches(TRAIN_ROWS, 512, split="train"))
    batches = materialise(trainer, gen.batches(SCORE_ROWS, 8192, split="test"))
    scores = {
        "fperm-abs": taylor_scores(trainer.model, batches, TaylorConfig("abs")),
        "fperm-abs-mean": taylor_scores(trainer.model, batches, TaylorConfig("abs-mean")),
        "fperm-signed": taylor_scores(trainer.model, batches, TaylorConfig("signed")),
        "permutation-T1": permutation_scores(trainer.model, batches, PermutationConfig(repeats=1)),
        "random": random_scores(trainer.model.fields, seed=0),
    }
    held_out = materialise(trainer, gen.batches(EVAL_ROWS, 8192, split="test", start=SCORE_ROWS))
    return trainer, batches, truth, scores, held_out


def test_fperm_ranking_matches_the_true_ranking(scored):
    _, _, truth, scores, _ = scored
    importance = {f.name: f.importance for f in truth}
    noise = [f.name for f in truth if f.role == "noise"]
    rho = {name: spearman_with(s, importance) for name, s in scores.items()}
    best = scores["fperm-abs"]
    agree = spearman(best.scores, scores["permutation-T1"].scores)
    print("spearman vs true importance:", json.dumps({k: round(v, 3) for k, v in rho.items()}),
          "F-P abs vs Permutation T=1:", round(agree, 3))
    print("fperm-abs ranking:", best.ranking())
    assert rho["fperm-abs"] >= 0.8
    assert rho["fperm-abs"] > rho["fperm-signed"] and rho["fperm-abs"] > rho["fperm-abs-mean"]  # picks the default
    assert rho["fperm-abs"] > rho["random"] and agree > 0.8
    k = len(noise)
    positions = bottom_positions(best, noise)
    by_score = dict(zip(best.fields, best.scores))
    ratio = min(v for f, v in by_score.items() if f not in noise) / max(by_score[f] for f in noise)
    print(f"noise fields' positions from the bottom (bottom group: < {k}):", positions,
          f"lowest other field's score / highest noise field's: {ratio:.3f}")
    assert k == 6 and all(p < k for p in positions.values()), f"noise fields outside the bottom {k}: {positions}"


def test_worker_partial_sums_finish_to_the_single_process_scores(scored):
    trainer, batches, _, scores, _ = scored
    model, dim = trainer.model, trainer.model.config.embedding_dim
    mean = field_means(model, batches)  # what the coordinator fixes after pass 1 (sum e / n over all workers)
    parts = []
    for share in (batches[0::3], batches[1::3], batches[2::3]):
        acc = FieldScoreAccumulator(model.fields, dim, mean=mean)
        for b in share:
            acc.add(model, b.dense, b.emb, b.labels)
        parts.append(FieldSums.from_dict(acc.partial().to_dict()))
    total = parts[0] + parts[1] + parts[2]
    for variant in ("abs", "abs-mean", "signed"):
        np.testing.assert_allclose(total.finish(variant).scores, scores[f"fperm-{variant}"].scores,
                                   rtol=1e-6, atol=1e-10)


def test_auc_vs_fields_kept_area_fperm_beats_permutation_and_random(scored):
    """Figure 2 on synthetic data: drop fields lowest score first (no fine-tuning), held-out AUC after each drop
    on rows that were not used for scoring. Random order: three seeds, F-P must beat each."""
    trainer, _, _, scores, held_out = scored
    curves = {name: auc_vs_fields_kept(trainer.model, scores[name], held_out)
              for name in ("fperm-abs", "permutation-T1")}
    randoms = [auc_vs_fields_kept(trainer.model, random_scores(trainer.model.fields, seed=s), held_out)
               for s in range(3)]
    print("area under AUC-vs-fields-kept:", {k: round(c.area, 4) for k, c in curves.items()},
          "random:", [round(c.area, 4) for c in randoms])
    assert curves["fperm-abs"].fields_kept.tolist() == list(range(27, 1, -1))
    assert curves["fperm-abs"].area >= curves["permutation-T1"].area
    assert all(curves["fperm-abs"].area > r.area for r in randoms)
    assert trainer.model.fields[0] == "dense" and len(trainer.model.fields) == 27  # the model was not changed


def test_bench_fperm_cli_reports_table_and_json(tmp_path: Path):
    from shark.cli.main import cli

    out = tmp_path / "fperm.json"
    res = CliRunner().invoke(cli, ["bench", "fperm", "--rows", "512", "--scoring-batch-size", "256",
                                   "--multiples", "1,2", "--perm-repeats", "1,2", "--fast-repeats", "2", "--json-out", str(out)])
    assert res.exit_code == 0, res.output
    assert "permutation-T1" in res.output and "T1/fperm-abs" in res.output
    result = json.loads(out.read_text())
    assert result["fields"] == {"1": 27, "2": 53}
    assert set(result["seconds_median"]) == {"forward", "forward-backward", "fperm-abs", "fperm-signed",
                                             "permutation-T1", "permutation-T2"}
    assert result["cost_in_forward_backward_passes"]["forward-backward"]["1"] == 1.0
    assert result["speedup_vs_permutation_T1"]["fperm-abs"]["1"] > 1.0
    scored = result["fields_scored_on_one_model"]  # the 53-field model asked to score 27, then 53 of its fields
    assert scored["model_fields"] == 53 and scored["fields_scored"] == {"1": 27, "2": 53}
    assert set(scored["seconds_median"]) == {"forward-backward", "fperm-abs", "permutation-T1"}
    assert "one 53-field model, scoring the first 27, 53 of its fields" in res.output
    assert any("fields to score x1 -> x2" in k for k in result["targets"])
    bad = CliRunner().invoke(cli, ["bench", "fperm", "--multiples", "2,4"])
    assert bad.exit_code == 2 and "include 1" in bad.output


def test_bench_fperm_curve_cli_writes_json_and_plots(tmp_path: Path):
    from shark.cli.main import cli

    out = tmp_path / "curve"
    res = CliRunner().invoke(cli, ["bench", "fperm-curve", "--train-rows", "20000", "--score-rows", "4000",
                                   "--eval-rows", "4000", "--random-orders", "2", "--scoring-batch-size", "2000",
                                   "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "fperm-abs" in res.output and "random" in res.output and "area" in res.output
    result = json.loads((out / "fperm_curve.json").read_text())
    assert result["data"]["score_rows"] == 4000 and result["data"]["eval_rows"] == 4000
    assert set(result["curves"]) == {"fperm-abs", "fperm-signed", "permutation-T1"}
    assert len(result["random_curves"]) == 2 and result["curves"]["fperm-abs"]["fields_kept"][0] == 27
    assert -1 <= result["spearman_with_teacher"]["fperm-abs"] <= 1 and result["truth"]["C1"]["role"] == "strong"
    for name in ("fperm_ranking.png", "fperm_auc_vs_fields_kept.png"):
        assert (out / name).stat().st_size > 1000
    bad = CliRunner().invoke(cli, ["bench", "fperm-curve", "--score-rows", "0"])
    assert bad.exit_code == 2 and "score_rows" in bad.output
