"""`shark bench fperm-curve`: the paper's Figure 2 on synthetic data or a file. Train a model (the local engine),
score every field with F-P ("abs" and "signed") and with Permutation (T=1), then drop fields lowest score first
(no fine-tuning) and evaluate held-out AUC after each drop; random orders are the floor. The area under each
AUC-vs-fields-kept curve is the comparison (larger: the method's order removed less useful fields first).

Rows: scores and AUCs come from different rows. Synthetic: scored on held-out rows [0, score_rows), evaluated on
held-out rows [score_rows, score_rows + eval_rows). A file: scored on (up to score_rows of) the training rows,
evaluated on every held-out row (a small file has too few held-out rows to split again).
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from shark.data.batch import first_rows
from shark.fperm import (FieldScores, KeptCurve, PermutationConfig, TaylorConfig, auc_vs_fields_kept, materialise,
                         permutation_scores, random_scores, spearman_with, taylor_scores)
from shark.train.config import TrainConfig
from shark.train.data_plan import DataPlan, DataSpec
from shark.train.run import run_local

BEST = "fperm-abs"


@dataclass(frozen=True)
class CurveSpec:
    score_rows: int = 50_000  # rows every method scores on (the same rows)
    eval_rows: int = 30_000  # synthetic: held-out rows for the AUC after each drop (a file: all its held-out rows)
    random_orders: int = 5  # seeded random field orders (the floor)
    draws: int = 4  # F-P "abs": in-batch shuffles per batch
    scoring_batch_size: int = 8192
    min_fields: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("score_rows", "eval_rows", "random_orders", "scoring_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.min_fields < 2:
            raise ValueError(f"min_fields must be >= 2, got {self.min_fields}")
        TaylorConfig("abs", self.draws, self.seed)


def _timed(fn, *args) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def fperm_curves(config: TrainConfig, data: DataSpec, spec: CurveSpec, progress: bool = True) -> dict[str, Any]:
    """Train, score, drop, evaluate. Returns a JSON-able dict (see `format_fperm_curves` for the fields)."""
    if data.synthetic:  # the run's held-out rows are exactly the scoring rows followed by the evaluation rows
        data = replace(data, test_rows=spec.score_rows + spec.eval_rows)
    run = run_local(replace(config, eval_batch_size=spec.scoring_batch_size), data, progress=progress)
    trainer, summary = run.trainer, run.summary
    plan = DataPlan(data, spec.scoring_batch_size, spec.scoring_batch_size)
    if plan.generator is not None:
        gen = plan.generator
        score_raw = gen.batches(spec.score_rows, spec.scoring_batch_size, split="test")
        eval_raw = gen.batches(spec.eval_rows, spec.scoring_batch_size, split="test", start=spec.score_rows)
    else:
        score_raw = first_rows(plan.train_batches(), spec.score_rows)
        eval_raw = plan.test_batches()
    score_batches = materialise(trainer, score_raw)
    eval_batches = materialise(trainer, eval_raw)
    model = trainer.model
    scores: dict[str, FieldScores] = {}
    seconds: dict[str, float] = {}
    taylor_scores(model, score_batches[:1], TaylorConfig("abs", spec.draws))  # untimed warm-up (kernels, allocator)
    for variant in ("abs", "signed"):
        scores[f"fperm-{variant}"], seconds[f"fperm-{variant}"] = _timed(
            taylor_scores, model, score_batches, TaylorConfig(variant, spec.draws, spec.seed))
    scores["permutation-T1"], seconds["permutation-T1"] = _timed(
        permutation_scores, model, score_batches, PermutationConfig(repeats=1, seed=spec.seed))
    if progress:
        print("scored: " + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()), file=sys.stderr, flush=True)
    curves: dict[str, KeptCurve] = {name: auc_vs_fields_kept(model, s, eval_batches, spec.min_fields)
                                    for name, s in scores.items()}
    randoms = [auc_vs_fields_kept(model, random_scores(model.fields, seed=spec.seed + k), eval_batches,
                                  spec.min_fields) for k in range(spec.random_orders)]
    areas = {name: c.area for name, c in curves.items()}
    random_areas = [c.area for c in randoms]
    result: dict[str, Any] = {
        "benchmark": "fperm-curve",
        "data": {"source": data.source, "score_rows": sum(len(b) for b in score_batches),
                 "eval_rows": sum(len(b) for b in eval_batches),
                 "scored_on": "held-out rows" if plan.generator is not None else "training rows"},
        "spec": asdict(spec), "config": config.to_dict(),
        "test": summary["test"], "fields": list(model.fields),
        "scores": {name: s.to_json() for name, s in scores.items()},
        "scoring_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "curves": {name: c.to_json() for name, c in curves.items()},
        "random_curves": [c.to_json() for c in randoms],
        "areas": {**{k: round(v, 6) for k, v in areas.items()},
                  "random_mean": round(statistics.fmean(random_areas), 6), "random_max": round(max(random_areas), 6)},
    }
    teacher = summary.get("teacher")
    if teacher is not None:
        truth = {f["field"]: f["importance"] for f in teacher["field_ranking"]}
        result["truth"] = {f["field"]: {"role": f["role"], "importance": f["importance"]}
                           for f in teacher["field_ranking"]}
        result["spearman_with_teacher"] = {name: round(spearman_with(s, truth), 4) for name, s in scores.items()}
    result["targets"] = {
        f"{BEST} area >= permutation-T1 area": areas[BEST] >= areas["permutation-T1"],
        f"{BEST} area > every random order's": all(areas[BEST] > a for a in random_areas),
    }
    return result



def format_fperm_curves(result: dict[str, Any]) -> str:
    d, areas = result["data"], result["areas"]
    lines = [(f"bench fperm-curve: {d['source']}, {d['score_rows']:,} scoring rows ({d['scored_on']}), "
              f"{d['eval_rows']:,} evaluation rows; held-out AUC with every field {result['test']['auc']:.4f}"),
             "area under AUC-vs-fields-kept (mean AUC over the fields-kept range; larger is better):"]
    for name in result["curves"]:
        extra = ""
        if "spearman_with_teacher" in result:
            extra = f"   Spearman with the teacher's ranking {result['spearman_with_teacher'][name]:.3f}"
        lines.append(f"  {name:16} {areas[name]:.4f}   scoring {result['scoring_seconds'][name]:.2f} s{extra}")
    rnd = [c["area"] for c in result["random_curves"]]
    lines.append(f"  {'random':16} {areas['random_mean']:.4f} mean of {len(rnd)} orders "
                 f"({', '.join(f'{a:.4f}' for a in rnd)})")
    lines.append(f"  {BEST} drop order: {', '.join(result['curves'][BEST]['dropped'])}")
    lines += [f"target {k}: {'met' if ok else 'NOT met'}" for k, ok in result["targets"].items()]
    return "\n".join(lines)

