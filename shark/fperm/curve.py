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
from shark.model import DenseDLRM


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


def drop_order(scores: FieldScores, min_fields: int = 2) -> tuple[str, ...]:
    """The fields in the order a curve drops them: lowest score first, until min_fields remain."""
    if not 2 <= min_fields <= len(scores.fields):
        raise ValueError(f"min_fields must be in [2, {len(scores.fields)}], got {min_fields}")
    return tuple(scores.ranking()[::-1][: len(scores.fields) - min_fields])


@torch.no_grad()
def drop_predictions(model: DenseDLRM, order: Sequence[str], batches: Sequence[ScoringBatch]) -> np.ndarray:
    """(len(order) + 1, N) float32 probabilities of the batches' rows: the whole model, then after each drop of
    `order` in turn (on a copy; `model` is not changed). batches hold rows for every table of `model`."""
    unknown = [f for f in order if f not in model.fields]
    if unknown or len(set(order)) != len(order) or len(order) > len(model.fields) - 2:
        raise ValueError(f"a drop order names distinct active fields and leaves two: got {list(order)}, active "
                         f"{list(model.fields)}")
    m = copy.deepcopy(model)
    m.eval()
    column = {t: i for i, t in enumerate(model.tables)}  # column of each table in the batches' emb

    def predict() -> np.ndarray:
        cols = torch.tensor([column[t] for t in m.tables], dtype=torch.int64)
        return np.concatenate([torch.sigmoid(m(b.dense, b.emb.index_select(1, cols))).numpy() for b in batches])

    out = [predict()]
    for name in order:
        m.drop_field(name)
        out.append(predict())
    return np.stack(out).astype(np.float32, copy=False)


def kept_curve(method: str, order: Sequence[str], n_fields: int, labels: np.ndarray, probs: np.ndarray
               ) -> KeptCurve:
    """The curve from (len(order) + 1, N) probabilities (drop_predictions', possibly gathered from several
    workers) and the (N,) labels."""
    if probs.shape != (len(order) + 1, labels.size):
        raise ValueError(f"expected ({len(order) + 1}, {labels.size}) probabilities, got {probs.shape}")
    k = n_fields - np.arange(len(order) + 1)
    a = np.array([auc(labels, p) for p in probs])
    area = float(np.trapezoid(a[::-1], k[::-1]) / (k[0] - k[-1])) if k.size > 1 else float(a[0])
    return KeptCurve(method, tuple(order), k, a, area)


def auc_vs_fields_kept(model: DenseDLRM, scores: FieldScores, batches: Sequence[ScoringBatch],
                       min_fields: int = 2) -> KeptCurve:
    """batches hold rows for every table of `model` (as scored). The model itself is not changed."""
    if tuple(model.fields) != scores.fields:
        raise ValueError(f"scores are for {scores.fields}, the model has {tuple(model.fields)}")
    order = drop_order(scores, min_fields)
    labels = np.concatenate([b.labels.numpy() for b in batches])
    return kept_curve(scores.method, order, len(model.fields), labels, drop_predictions(model, order, batches))
