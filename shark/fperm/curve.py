"""AUC against the number of fields kept (the paper's Figure 2): drop fields one at a time in a method's order
(lowest score first) from a copy of the model and evaluate held-out AUC after each drop.

No fine-tuning between drops: dropping a field removes its vector, its interaction terms and the top-MLP weights
that read them (`DenseDLRM.drop_field`), which for the remaining inputs is the model with that field's vector set
to zero. The evaluation rows should not be the rows the scores were computed on.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shark.fperm.inputs import ScoringBatch
from shark.fperm.scores import FieldScores
from shark.metrics import auc
from shark.model import DENSE_FIELD, DenseDLRM


@dataclass(frozen=True)
class KeptCurve:
    method: str
    dropped: tuple[str, ...]  # drop order, least important first
    fields_kept: np.ndarray  # (K,) int, from all fields down to min_fields
    auc: np.ndarray  # (K,) held-out AUC with that many fields kept
    area: float  # normalised area under the curve: mean AUC over the fields-kept range (trapezoid)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "dropped": list(self.dropped), "fields_kept": self.fields_kept.tolist(),
                "auc": [round(float(a), 6) for a in self.auc], "area": round(self.area, 6)}


@torch.no_grad()
def _auc(model: DenseDLRM, batches: Sequence[ScoringBatch], columns: list[int]) -> float:
    model.eval()
    cols = torch.tensor(columns, dtype=torch.int64)
    probs = [torch.sigmoid(model(b.dense, b.emb.index_select(1, cols))).numpy() for b in batches]
    labels = np.concatenate([b.labels.numpy() for b in batches])
    return auc(labels, np.concatenate(probs))


def auc_vs_fields_kept(model: DenseDLRM, scores: FieldScores, batches: Sequence[ScoringBatch],
                       min_fields: int = 2) -> KeptCurve:
    """batches hold rows for every table of `model` (as scored). The model itself is not changed."""
    if tuple(model.fields) != scores.fields:
        raise ValueError(f"scores are for {scores.fields}, the model has {tuple(model.fields)}")
    if not 2 <= min_fields <= len(model.fields):
        raise ValueError(f"min_fields must be in [2, {len(model.fields)}], got {min_fields}")
    m = copy.deepcopy(model)
    tables = list(model.tables)  # column order of the batches' emb
    order = scores.ranking()[::-1][: len(model.fields) - min_fields]
    kept, aucs = [len(m.fields)], [_auc(m, batches, list(range(len(tables))))]
    for name in order:
        m.drop_field(name)
        if name != DENSE_FIELD:
            tables.remove(name)
        kept.append(len(m.fields))
        aucs.append(_auc(m, batches, [list(model.tables).index(t) for t in tables]))
    k, a = np.array(kept), np.array(aucs)
    area = float(np.trapezoid(a[::-1], k[::-1]) / (k[0] - k[-1])) if k.size > 1 else float(a[0])
    return KeptCurve(scores.method, tuple(order), k, a, area)
