"""The paper's Figure 2 inside `shark compress`: held-out AUC against the number of fields kept when fields are
dropped (no fine-tuning) in F-Permutation's order, in Permutation's (T = 1) and in random orders, all on the
unpruned model, across the workers.

F-P's order is round 1's distributed scores. Permutation's scores are plain sums over the same held-out rows, so
every worker sums its share and the coordinator divides. The curves are evaluated on held-out rows after the
scoring rows (each worker skips the rows it scored), so no order is judged on the rows that chose it; when the
held-out split has no rows beyond the scoring rows (a small file), on the scoring rows, and the report says so.
Each worker returns its rows' probabilities after each drop of every order; AUC is not additive, so the
coordinator stacks them and takes the AUCs over all rows (shark.fperm.kept_curve).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from shark.coordinator.worker_restarts import call_workers
from shark.fperm import FieldScores, drop_order, kept_curve, random_scores

BEST = "fperm-abs"


def kept_curves(coord: Any, fp_scores: dict[str, float], score_rows: int, curve_rows: int, random_orders: int
                ) -> dict[str, Any]:
    """The curves on the coordinator's current (unpruned) model. fp_scores: F-P's scores of every field."""
    t0 = time.perf_counter()
    fields = tuple(coord.fields)
    n_workers = len(coord.workers)
    share = -(-score_rows // n_workers)
    parts = call_workers(coord, "permutation_sums", share, where="Permutation scores for the curves")
    if any(tuple(p["fields"]) != fields for p in parts):
        raise RuntimeError(f"a worker scored other fields than the coordinator's {fields}")
    n = sum(p["n"] for p in parts)
    perm = FieldScores("permutation-T1", fields, sum(np.asarray(p["sum"], np.float64) for p in parts) / max(n, 1))
    scored = {BEST: FieldScores(BEST, fields, np.array([fp_scores[f] for f in fields], np.float64)),
              "permutation-T1": perm}
    scored.update({f"random-{s}": random_scores(fields, seed=s) for s in range(random_orders)})
    orders = {name: list(drop_order(s)) for name, s in scored.items()}
    eval_share = -(-curve_rows // n_workers)
    evaluated_on = "held-out rows after the scoring rows"
    labels, probs = _gather(coord, orders, share, eval_share)
    if labels.size == 0 or labels.min() == labels.max():  # AUC needs both classes
        evaluated_on = "the scoring rows (the held-out split has no rows of both classes beyond them)"
        labels, probs = _gather(coord, orders, 0, eval_share)
    if labels.size == 0 or labels.min() == labels.max():
        return {"skipped": "no held-out rows of both classes to evaluate the curves on"}
    curves = {name: kept_curve(name, order, len(fields), labels, probs[name]) for name, order in orders.items()}
    main = {k: c for k, c in curves.items() if not k.startswith("random-")}
    randoms = [c for k, c in curves.items() if k.startswith("random-")]
    areas: dict[str, float] = {k: round(c.area, 6) for k, c in main.items()}
    if randoms:
        areas.update(random_mean=round(statistics.fmean(c.area for c in randoms), 6),
                     random_max=round(max(c.area for c in randoms), 6))
    return {"rows": int(labels.size), "evaluated_on": evaluated_on, "permutation_rows": n,
            "permutation_scores": perm.as_dict(),
            "curves": {k: c.to_json() for k, c in main.items()}, "random_curves": [c.to_json() for c in randoms],
            "areas": areas, "seconds": round(time.perf_counter() - t0, 2)}


def _gather(coord: Any, orders: dict[str, list[str]], skip: int, rows: int
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    parts = call_workers(coord, "drop_predictions", orders, skip, rows, where="AUC vs fields kept")
    labels = np.concatenate([np.asarray(p["labels"]) for p in parts])
    probs = {name: np.concatenate([np.asarray(p["probs"][name]) for p in parts], axis=1) for name in orders}
    return labels, probs
